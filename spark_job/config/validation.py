"""Loading and validating a pipeline config into a ``PipelineConfig``, reporting every problem at once.

Nothing here imports pyspark: the Airflow provider validates configs at DAG parse time with it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spark_job.config.document import (
    Document,
    UnreadableFile,
    check_depth,
    child_path,
    collection_paused,
    parse_text,
    read_document,
    read_text_file,
)
from spark_job.config.expectations import Expectation, parse_expectations
from spark_job.config.fields import Field, describe_value
from spark_job.config.graph import SequenceGraph
from spark_job.config.sql import analyse_query
from spark_job.config.targets import check_overlaps, default_filesystem, links_remembered
from spark_job.config.urls import is_credential_key, port_problem, strip_credentials, url_credentials
from spark_job.config.variables import (
    ExpansionLimit,
    Substitution,
    check_values_in_sql,
    escape,
    resolve_vars,
    sql_places,
    suggest,
)
from spark_job.errors import ConfigError, Problem
from spark_job.io import BaseReader, BaseWriter, readers, writers

# Spark's own default for ``spark.redaction.regex``: kept in what the driver sets, then extended.
SPARK_REDACTION_DEFAULT = "(?i)secret|password|token|access[.]?key"
# Spark expands ${env:NAME}, ${system:...} in SQL text unless told not to: the config's text (and the vars
# passed in) is substituted once, by the driver, and never again by Spark.
VARIABLE_SUBSTITUTE = "spark.sql.variable.substitute"
# Integer keys whose 0 would silently mean "not set" at run time.
_AT_LEAST = {"coalesce": 1}

__all__ = ["PipelineConfig", "SequenceSpec", "SourceSpec", "load_config", "parse_text"]

TOP_FIELDS: dict[str, Field] = {
    "app_name": Field("str", required=True, doc="Spark application name"),
    "description": Field("str", doc="free text"),
    "spark_conf": Field("map", doc="Spark configuration set on the session (spark.* keys)"),
    "vars": Field("map", doc="variables substituted as ${name} in every string"),
    "sources": Field("sources", doc="id -> source, or a list of sources with an alias"),
    "sequences": Field("sequences", required=True, doc="SQL steps, each writing one target"),
    "fail_fast": Field("bool", doc="stop at the first failed sequence (default: run independent ones)"),
    "max_parallel": Field("int", doc="most sequences running at once (default 4; 1 runs them one by one)"),
}
SEQUENCE_FIELDS: dict[str, Field] = {
    "name": Field("str", required=True, doc="name; also the temp view later sequences read"),
    "query": Field("str", doc="one Spark SQL SELECT statement"),
    "query_file": Field("str", doc="file holding the query, relative to the config file"),
    "target": Field("target", required=True, doc="where the result is written"),
    "description": Field("str", doc="free text"),
    "cache": Field("bool", doc="keep the result in memory for the sequences that read it (default: when read)"),
    "expectations": Field("expectations", doc="data-quality rules checked on every row the sequence writes"),
    "min_rows": Field("int", doc="the sequence fails when it writes fewer rows"),
    "max_rows": Field("int", doc="the sequence fails when it writes more rows"),
    "quarantine": Field("target", doc="where rows failing an on_fail: quarantine rule are written"),
}


@dataclass(frozen=True)
class SourceSpec:
    """A source: registered as a temp view named ``alias``.

    Attributes:
        id: the key in the ``sources`` map (or the alias for a list of sources).
        alias: view name used in SQL.
        spec: the source's settings after substitution.
        path: the config path, e.g. ``sources.events``.
    """

    id: str
    alias: str
    spec: dict[str, Any]
    path: str

    reader: BaseReader = field(init=False, repr=False, compare=False)
    """The source's reader, built once from ``spec``."""

    def __post_init__(self) -> None:
        cls = readers.get(self.type)
        assert cls is not None, f"no reader type {self.type!r}: the config was not validated"
        object.__setattr__(self, "reader", cls(self.spec))

    @property
    def type(self) -> str:
        return str(self.spec["type"])


@dataclass(frozen=True)
class SequenceSpec:
    """One step: a SQL query whose result is written to one target and registered as view ``name``.

    Attributes:
        name: the step's name and view name.
        query: the SQL text after substitution (``query_file`` inlined).
        target: the target's settings after substitution.
        depends_on: the sequences this one reads.
        path: the config path, e.g. ``sequences[2]``.
        reads_sources: aliases (lower-cased) of the sources the query reads.
        cache: whether to keep the result for the sequences reading it (None: when it is read).
        expectations: the data-quality rules checked on the rows written (``spark_job.quality``).
        min_rows: the sequence fails when it writes fewer rows.
        max_rows: the sequence fails when it writes more rows.
        quarantine: the target of the rows failing an ``on_fail: quarantine`` rule.
    """

    name: str
    query: str
    target: dict[str, Any]
    depends_on: tuple[str, ...]
    path: str
    cache: bool | None = None
    reads_sources: tuple[str, ...] = ()
    expectations: tuple[Expectation, ...] = ()
    min_rows: int | None = None
    max_rows: int | None = None
    quarantine: dict[str, Any] | None = None

    writer: BaseWriter = field(init=False, repr=False, compare=False)
    """The target's writer, built once from ``target``."""
    quarantine_writer: BaseWriter | None = field(init=False, repr=False, compare=False)
    """The quarantine's writer, built once from ``quarantine`` (None without one)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "writer", _writer(self.target))
        object.__setattr__(self, "quarantine_writer", None if self.quarantine is None else _writer(self.quarantine))


def _writer(target: Mapping[str, Any]) -> BaseWriter:
    cls = writers.get(str(target["type"]))
    assert cls is not None, f"no writer type {target['type']!r}: the config was not validated"
    return cls(target)


@dataclass(frozen=True)
class PipelineConfig:
    """A validated pipeline, ready to run.

    Attributes:
        app_name: Spark application name.
        spark_conf: Spark configuration for the session.
        sources: sources in config order.
        sequences: sequences in execution order (dependencies first).
        fail_fast: stop at the first failure instead of running independent sequences.
        max_parallel: the most sequences running at once (None: the driver's default).
        document: the config after substitution, JSON-serialisable (what the provider stages).
        file: the config file, if any.
        secrets: values resolved from the environment, masked in logs and metrics.
    """

    app_name: str
    spark_conf: dict[str, str]
    sources: tuple[SourceSpec, ...]
    sequences: tuple[SequenceSpec, ...]
    fail_fast: bool = False
    max_parallel: int | None = None
    document: dict[str, Any] = field(default_factory=dict, repr=False)
    file: str | None = None
    secrets: frozenset[str] = field(default_factory=frozenset, repr=False)

    def to_document(self) -> dict[str, Any]:
        return self.document

    def graph(self) -> SequenceGraph:
        return SequenceGraph([s.name for s in self.sequences], {s.name: s.depends_on for s in self.sequences})

    def targets(self) -> list[dict[str, Any]]:
        return [seq.writer.describe() for seq in self.sequences]

    def mask(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***``."""
        return mask_text(text, sorted(self.secrets, key=len, reverse=True))


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` (longest first, so none is left half shown) replaced by ``***``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def credentials_in(roots: Iterable[tuple[str, Any]], skip: frozenset[str] = frozenset()) -> set[str]:
    """The secret values written in config data: values of credential keys (``password: ...``, numbers
    too) and credentials inside URLs (user info, Oracle ``user/password@``, ``key=value`` parameters).
    ``roots`` are (key, value) pairs to walk; values under a key in ``skip`` are not scanned for URLs."""
    found: set[str] = set()
    stack = list(roots)
    while stack:
        key, value = stack.pop()
        if type(value) is dict or isinstance(value, Mapping):
            stack.extend((str(k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((key, v) for v in value)
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            text = str(value)
            if is_credential_key(key):
                found.add(text)
            if isinstance(value, str) and key not in skip and ("@" in text or "=" in text):
                found.update(url_credentials(text))
    return {f for f in found if len(f) >= 4 and "${" not in f}


@collection_paused()
@links_remembered()
def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any],
    vars: Mapping[str, Any] | None = None,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    resolve_env: bool = True,
    environ: Mapping[str, str] | None = None,
    connections: Callable[[str], Mapping[str, Any]] | None = None,
    unknown_vars: bool = False,
    vars_from: str | None = "vars passed in",
) -> PipelineConfig:
    """Load, substitute and validate a config; raise ``ConfigError`` listing every problem.

    Args:
        source: a YAML or JSON file, or already-parsed config data.
        vars: variable values overriding the config's ``vars``.
        base_dir: folder ``query_file`` paths are relative to (default: the config file's folder, else
            the working directory).
        resolve_env: resolve ``${env:NAME}``; when False such references are kept for the driver.
        environ: where ``${env:NAME}`` is looked up (default ``os.environ``).
        connections: resolves ``connection: ID`` of a source or target into its settings (the Airflow
            operator passes one; without it such a reference is a config error).
        unknown_vars: accept ``vars`` the config neither declares nor uses (the operator: one dict shared
            by several pipelines); by default such a var (a misspelt ``--var``) is a config error.
        vars_from: where ``vars`` come from, named in errors (``--var``, ``the operator's vars``): such
            values are data, and one that would change the SQL it is placed in is a config error. None:
            they are the author's own (a test file's), as trusted as the config's ``vars``.
    """
    if isinstance(source, Mapping):
        check_depth(source)
        document = Document(dict(source))
    else:
        document = read_document(source)
        if base_dir is None:
            base_dir = Path(source).parent
    validator = Validator(
        document,
        vars or {},
        Path(base_dir or "."),
        resolve_env,
        os.environ if environ is None else environ,
        connections,
    )
    validator.unknown_vars = unknown_vars
    validator.vars_from = vars_from
    try:
        return validator.build()
    except ExpansionLimit:
        raise ConfigError(validator.masked(validator.problems)) from None
    except ConfigError as exc:
        raise ConfigError(validator.masked(exc.problems)) from None
    except RecursionError:
        raise ConfigError([Problem("", "the config is nested too deeply", document.file)]) from None


class Validator:
    """Builds a ``PipelineConfig`` from a document, collecting problems instead of stopping at one."""

    def __init__(
        self,
        document: Document,
        overrides: Mapping[str, Any],
        base_dir: Path,
        resolve_env: bool,
        environ: Mapping[str, str],
        connections: Callable[[str], Mapping[str, Any]] | None = None,
    ) -> None:
        self.doc = document
        self.connections = connections
        self.overrides = overrides
        self.base_dir = base_dir
        self.problems: list[Problem] = []
        self.sub = Substitution({}, environ, resolve_env, self.report)
        self.unknown_vars = False
        self.vars_from: str | None = "vars passed in"
        self.query_files: list[tuple[str, str]] = []
        """(config path, file) of each query file read: no target may replace one."""
        self.suggestions = [50]  # budget of "did you mean" searches (each compares with every name)

    def masked(self, problems: list[Problem]) -> list[Problem]:
        """``problems`` with every secret value a message quotes replaced by ``***``: values of secret
        references, values of credential keys the config holds literally (``password: ...``), and
        credentials inside the URLs the config or the message holds."""
        # Queries are not scanned for URLs: a SQL text is long and its "=" are comparisons.
        secrets = set(self.sub.secrets) | credentials_in([("", self.doc.data)], frozenset({"query"}))
        known = sorted((f for f in secrets if len(f) >= 4 and "${" not in f), key=len, reverse=True)
        out = []
        for problem in problems:
            message = problem.message
            found = known
            if "@" in message or "://" in message:  # a URL quoted with its credentials
                extra = [f for f in url_credentials(message) if len(f) >= 4 and "${" not in f]
                found = sorted({*known, *extra}, key=len, reverse=True) if extra else known
            message = mask_text(message, found)
            out.append(problem if message == problem.message else dataclasses.replace(problem, message=message))
        return out

    def report(self, path: str, message: str) -> None:
        probe, line = path, self.doc.lines.get(path)
        while line is None and probe:
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[: max(cut, 0)]
            line = self.doc.lines.get(probe)
        self.problems.append(Problem(path, message, self.doc.file, line))

    def check_fields(self, data: dict[str, Any], fields: Mapping[str, Field], path: str, what: str) -> None:
        """Unknown keys (with a suggestion), missing required keys and per-key types."""
        for key, value in data.items():
            sub = child_path(path, key)
            spec = fields.get(key) if isinstance(key, str) else None
            if spec is None:
                hint = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
                advice = f"did you mean {hint[0]!r}?" if hint else f"valid keys: {', '.join(sorted(fields))}"
                self.report(sub, f"unknown key for {what} ({advice})")
            elif spec.kind not in ("sources", "sequences", "target", "expectations"):
                value = data[key] = spec.coerce(value)
                if problem := spec.check(value):
                    self.report(sub, problem)
                elif key in _AT_LEAST and isinstance(value, int) and value < _AT_LEAST[key]:
                    self.report(sub, f"must be at least {_AT_LEAST[key]}, got {value} (leave it out to keep Spark's)")
                elif key == "url" and isinstance(value, str) and (problem := port_problem(value)):
                    self.report(sub, f"{problem}: {strip_credentials(value)}")
        for key, spec in fields.items():
            if spec.required and key not in data:
                self.report(path, f"missing required key {key!r} ({spec.doc})")

    def build(self) -> PipelineConfig:
        data = self.doc.data
        if not isinstance(data, Mapping):
            self.report(
                "",
                f"the config must be a mapping with app_name, sources and sequences, got {describe_value(data)}",
            )
            raise ConfigError(self.problems)
        raw_vars = data.get("vars")
        declared: Mapping[str, Any] = raw_vars if isinstance(raw_vars, Mapping) else {}
        resolve_vars(declared, self.overrides, self.sub)
        body = self.sub.tree({k: v for k, v in data.items() if k != "vars"}, "")
        top = {**body, **({"vars": raw_vars} if "vars" in data else {})}
        self.check_fields(top, TOP_FIELDS, "", "the pipeline")  # also types substituted values
        body = {k: v for k, v in top.items() if k != "vars"}
        raw_conf = body.get("spark_conf")
        spark_conf: Mapping[str, Any] = raw_conf if isinstance(raw_conf, Mapping) else {}
        substitute = spark_conf.get(VARIABLE_SUBSTITUTE)
        if substitute is not None and _conf_value(substitute).strip().lower() != "false":
            self.report(
                f"spark_conf.{VARIABLE_SUBSTITUTE}",
                "Spark's own substitution would expand ${env:...} and ${system:...} in the SQL text, values "
                "of vars included: remove the key (the driver sets it to false) and use vars",
            )
        default_fs = spark_conf.get("spark.hadoop.fs.defaultFS", spark_conf.get("spark.hadoop.fs.default.name"))
        with default_filesystem(default_fs if isinstance(default_fs, str) else None):
            sources = self.build_sources(body.get("sources"))
            sequences = self.build_sequences(body.get("sequences"), sources)
            if not self.unknown_vars:
                self.check_overrides(declared)
            if self.vars_from is not None and self.sub.placed:
                check_values_in_sql(self.sub, sql_places(body, _fields_of), self.vars_from, self.report)
            warehouse = spark_conf.get("spark.sql.warehouse.dir")
            read_files = [("the config file", str(self.doc.file))] if self.doc.file else []
            check_overlaps(
                sources,
                sequences,
                self.report,
                warehouse if isinstance(warehouse, str) else None,
                [*read_files, *self.query_files],
            )
        if isinstance(body.get("max_parallel"), int) and body["max_parallel"] < 1:
            self.report("max_parallel", "must be at least 1 (1 runs the sequences one after the other)")
        if self.problems:
            raise ConfigError(sorted(self.problems, key=lambda p: p.line or 0))
        document = {**body}
        for seq in sequences:
            i = int(seq.path[len("sequences[") : -1])
            document["sequences"][i] = {**document["sequences"][i], "query": seq.query}
            if "query_file" in document["sequences"][i]:
                document["sequences"][i].pop("query_file")
                self.sub.resolved[f"{seq.path}.query"] = seq.query
                self.sub.staged[f"{seq.path}.query"] = self.sub.staged.get(f"{seq.path}.query_file", escape(seq.query))
        document = self.staged(document)
        # Staged vars come back as the same text from the driver's substitution: data, never re-expanded.
        document["vars"] = {name: escape(value) for name, value in self.sub.values.items()}
        graph = SequenceGraph([s.name for s in sequences], {s.name: s.depends_on for s in sequences})
        by_name = {s.name: s for s in sequences}
        secrets = self.literal_secrets(sources, sequences, spark_conf)
        return PipelineConfig(
            app_name=str(body["app_name"]),
            spark_conf=self.redacted_conf(
                {VARIABLE_SUBSTITUTE: "false", **{str(k): _conf_value(v) for k, v in spark_conf.items()}}
            ),
            sources=tuple(sources),
            sequences=tuple(by_name[n] for n in graph.order()),
            fail_fast=bool(body.get("fail_fast", False)),
            max_parallel=body.get("max_parallel"),
            document=document,
            file=self.doc.file,
            secrets=frozenset(secrets),
        )

    def check_overrides(self, declared: Mapping[str, Any]) -> None:
        """A var passed (``--var``, the operator's ``vars``) that the config neither declares nor uses is a
        mistake (a misspelt name would otherwise be ignored silently)."""
        unknown = [str(n) for n in self.overrides if str(n) not in declared and str(n) not in self.sub.used]
        known = sorted({*map(str, declared), *self.sub.used})
        for name in unknown:
            self.problems.append(
                Problem(
                    f"--var {name}",
                    f"the config neither declares {name!r} under 'vars' nor uses it as ${{{name}}}"
                    f"{suggest(name, known, self.suggestions)}: remove it or fix its name",
                    self.doc.file,
                )
            )

    def staged(self, document: dict[str, Any]) -> dict[str, Any]:
        """The document as the driver must receive it: its substitution gives back exactly these values.

        Every string is written with literal ``${`` escaped as ``$${``; only the secret references kept
        for the driver (``resolve_env=False``) stay live. Iterative: depth costs no stack.
        """
        root: dict[str, Any] = {}
        stack: list[tuple[Any, str, Any, Any]] = [(document, "", root, "")]
        while stack:
            node, where, parent, key = stack.pop()
            if isinstance(node, str):
                staged = self.sub.staged.get(where)
                parent[key] = staged if staged is not None and self.sub.resolved.get(where) == node else escape(node)
            elif type(node) is dict or isinstance(node, Mapping):
                copy: dict[Any, Any] = {}
                parent[key] = copy
                for k, v in node.items():
                    copy[k] = v
                    stack.append((v, child_path(where, k), copy, k))
            elif isinstance(node, list):
                items = list(node)
                parent[key] = items
                stack.extend((v, child_path(where, i), items, i) for i, v in enumerate(node))
            else:
                parent[key] = node
        return dict(root[""])

    def literal_secrets(
        self, sources: list[SourceSpec], sequences: list[SequenceSpec], spark_conf: Mapping[str, Any]
    ) -> set[str]:
        """Every value to mask: resolved references, credential keys (``password:``), credentials inside
        URLs and the values of sensitive ``spark_conf`` keys."""
        roots: list[tuple[str, Any]] = [("", s.spec) for s in sources] + [("", q.target) for q in sequences]
        roots.extend(("", q.quarantine) for q in sequences if q.quarantine is not None)
        roots.extend((str(k), v) for k, v in spark_conf.items())
        return set(self.sub.secrets) | credentials_in(roots)

    def redacted_conf(self, conf: dict[str, str]) -> dict[str, str]:
        """``conf`` with ``spark.redaction.regex`` extended to every key whose value is a secret (it came
        from a reference, or the key or value is a credential), so the Spark UI and event log hide it."""
        keys = [
            key
            for key, value in conf.items()
            if key != "spark.redaction.regex"
            and (f"spark_conf.{key}" in self.sub.secret_paths or is_credential_key(key) or bool(url_credentials(value)))
        ]
        if not keys:
            return conf
        current = conf.get("spark.redaction.regex") or SPARK_REDACTION_DEFAULT
        # ``spark.hadoop.X`` is shown as ``X`` among the Hadoop properties too: the unanchored pattern of
        # ``X`` covers both.
        patterns = dict.fromkeys(_java_literal(k.removeprefix("spark.hadoop.")) for k in keys)
        return {**conf, "spark.redaction.regex": current + "|" + "|".join(patterns)}

    def build_sources(self, raw: Any) -> list[SourceSpec]:
        if raw is None:
            return []
        entries: list[tuple[str, str, Any, Any]] = []  # id, config path, key in raw, source
        if isinstance(raw, Mapping):
            entries = [(str(k), child_path("sources", k), k, v) for k, v in raw.items()]
        elif isinstance(raw, list):
            for i, item in enumerate(raw):
                ident = item.get("alias") or item.get("id") if isinstance(item, Mapping) else None
                entries.append((str(ident or f"#{i}"), f"sources[{i}]", i, item))
        else:
            self.report(
                "sources",
                f"must be a mapping of id to source or a list of sources, got {describe_value(raw)}",
            )
            return []
        sources: list[SourceSpec] = []
        aliases: dict[str, str] = {}
        for ident, path, key_in_raw, spec in entries:
            if not isinstance(spec, Mapping):
                self.report(path, f"a source must be a mapping with at least 'type', got {describe_value(spec)}")
                continue
            spec = self.expand_connection(dict(spec), path)
            raw[key_in_raw] = spec  # the document carries the expanded source
            cls = self.type_class(spec, path, readers, "reader")
            fields = {**cls.all_fields()} if cls else {}
            if isinstance(raw, list):
                fields["id"] = Field("str", doc="identifier (default: the alias)")
                if "alias" not in spec:
                    self.report(path, "a source in a list needs an 'alias' (the view name used in SQL)")
            if cls is None:
                continue
            if "expectations" in spec:
                self.report(
                    child_path(path, "expectations"),
                    "a source has no expectations: put the rules on the sequence that reads it "
                    "(SELECT * FROM the source), where its write counts them",
                )
                fields["expectations"] = Field("expectations")
            self.check_fields(spec, fields, path, f"a {spec['type']} source")
            cls.check(spec, lambda key, msg, p=path: self.report(child_path(p, key) if key else p, msg))
            alias = spec.get("alias", ident)
            if not isinstance(alias, str) or not alias:
                continue
            if not _is_identifier(alias):
                self.report(
                    child_path(path, "alias"),
                    f"{alias!r} is not a valid view name: use ASCII letters, digits and _",
                )
            key = alias.lower()
            if key in aliases:
                self.report(child_path(path, "alias"), f"alias {alias!r} is already used by {aliases[key]}")
                continue
            aliases[key] = path
            sources.append(SourceSpec(id=ident, alias=alias, spec=spec, path=path))
        return sources

    def expand_connection(self, spec: dict[str, Any], path: str) -> dict[str, Any]:
        """Replace ``connection: ID`` by the settings the connection resolver gives (url, user, ...)."""
        conn_id = spec.get("connection")
        if conn_id is None:
            return spec
        where = child_path(path, "connection")
        if not isinstance(conn_id, str) or not conn_id:
            self.report(where, f"must be the id of an Airflow connection, got {describe_value(conn_id)}")
            return spec
        if self.connections is None:
            self.report(
                where,
                f"{conn_id!r}: Airflow connection ids are resolved by SparkPipelineOperator; outside Airflow "
                "give url, user and password (${env:NAME}) instead",
            )
            return spec
        try:
            settings = dict(self.connections(conn_id))
        except Exception as exc:
            self.report(where, f"{conn_id!r}: {exc}")
            return spec
        # The settings are references the driver resolves (``${env:...}`` for the connection's password):
        # substituted like the config's own text, so they stay live in what is staged.
        settings = {k: self.sub.text(v, child_path(path, k)) if isinstance(v, str) else v for k, v in settings.items()}
        clash = sorted(k for k in settings if k in spec)
        if clash:
            self.report(where, f"the connection gives {', '.join(clash)}: remove them or the connection")
        return {**{k: v for k, v in spec.items() if k != "connection"}, **settings}

    def type_class(self, spec: dict[str, Any], path: str, registry: Any, kind: str) -> Any:
        typ = spec.get("type")
        if not isinstance(typ, str):
            if "type" not in spec:
                self.report(path, f"missing required key 'type' (one of {', '.join(registry.names())})")
            else:
                self.report(child_path(path, "type"), f"must be a string, got {describe_value(typ)}")
            return None
        cls = registry.get(typ)
        if cls is None:
            hint = difflib.get_close_matches(typ, registry.names(), n=1, cutoff=0.5)
            advice = f"did you mean {hint[0]!r}? " if hint else ""
            self.report(
                child_path(path, "type"),
                f"unknown {kind} type {typ!r} ({advice}known types: {', '.join(registry.names())})",
            )
        return cls

    def build_sequences(self, raw: Any, sources: list[SourceSpec]) -> list[SequenceSpec]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.report("sequences", f"must be a list of sequences, got {describe_value(raw)}")
            return []
        if not raw:
            self.report("sequences", "is empty: a pipeline needs at least one sequence")
            return []
        aliases = {s.alias.lower(): s for s in sources}
        names: dict[str, str] = {}
        original: dict[str, str] = {}
        pending: list[tuple[str, str, str, dict[str, Any], dict[str, Any]]] = []
        targets: dict[str, str] = {}
        for i, item in enumerate(raw):
            path = f"sequences[{i}]"
            if not isinstance(item, Mapping):
                self.report(
                    path,
                    f"a sequence must be a mapping with name, query and target, got {describe_value(item)}",
                )
                continue
            item = raw[i] = dict(item)  # checked and typed in place: the document carries the result
            self.check_fields(item, SEQUENCE_FIELDS, path, "a sequence")
            name = item.get("name")
            if isinstance(name, str):
                if not _is_identifier(name):
                    self.report(
                        f"{path}.name",
                        f"{name!r} is not a valid view name: use ASCII letters, digits and _",
                    )
                elif name.lower() in names:
                    self.report(f"{path}.name", f"sequence name {name!r} is already used by {names[name.lower()]}")
                elif name.lower() in aliases:
                    self.report(
                        f"{path}.name",
                        f"{name!r} is also the alias of {aliases[name.lower()].path}: "
                        "views share one namespace, rename one",
                    )
                else:
                    names[name.lower()] = path
                    original[name.lower()] = name
            query = self.query_text(item, path)
            target = item.get("target")
            if "target" in item and not isinstance(target, Mapping):
                self.report(f"{path}.target", f"must be a mapping with at least 'type', got {describe_value(target)}")
            elif isinstance(target, Mapping):
                target = item["target"] = self.build_target(target, f"{path}.target", path, targets)
            quality = self.build_quality(item, path, targets)
            # A sequence is built only with writers of known types (an unknown one is reported already).
            known = isinstance(target, Mapping) and writers.get(str(target.get("type"))) is not None
            if isinstance(name, str) and query is not None and isinstance(target, Mapping) and known and quality:
                quality["cache"] = item.get("cache") if isinstance(item.get("cache"), bool) else None
                pending.append((name, path, query, dict(target), quality))
        sequences: list[SequenceSpec] = []
        for name, path, query, target, extra in pending:
            relations = self.relations(query, path, aliases, names)
            depends = tuple(original[r] for r in relations if r in names)
            read_sources = tuple(r for r in relations if r in aliases)
            sequences.append(SequenceSpec(name, query, target, depends, path, reads_sources=read_sources, **extra))
        graph = SequenceGraph([s.name for s in sequences], {s.name: s.depends_on for s in sequences})
        cycle = graph.find_cycle()
        if cycle:
            first = next(s for s in sequences if s.name == cycle[0])
            self.report(f"{first.path}.query", f"dependency cycle: {' -> '.join(cycle)}")
        return sequences

    def build_target(
        self, target: Mapping[str, Any], tpath: str, seq_path: str, targets: dict[str, str]
    ) -> dict[str, Any]:
        """Check a target (a sequence's, or its quarantine) and claim its canonical identity."""
        spec = self.expand_connection(dict(target), tpath)
        cls = self.type_class(spec, tpath, writers, "writer")
        if cls is None:
            return spec
        before = len(self.problems)
        self.check_fields(spec, cls.all_fields(), tpath, f"a {spec['type']} target")
        cls.check(spec, lambda key, msg, p=tpath: self.report(child_path(p, key) if key else p, msg))
        if len(self.problems) == before and all(k in spec for k, f in cls.all_fields().items() if f.required):
            key = cls(spec).target_key()  # canonical: one key per place however spelt
            if key in targets:
                self.report(
                    tpath,
                    f"writes the same target as {targets[key]} ({strip_credentials(key)}): two outputs cannot write "
                    "one target",
                )
            targets.setdefault(key, tpath if tpath.endswith(".quarantine") else seq_path)
        return spec

    def build_quality(self, item: dict[str, Any], path: str, targets: dict[str, str]) -> dict[str, Any] | None:
        """A sequence's ``expectations``, ``min_rows``/``max_rows`` and ``quarantine`` (None: invalid)."""
        before = len(self.problems)
        rules = parse_expectations(item.get("expectations"), f"{path}.expectations", self.report, self.check_fields)
        uses = [r for r in rules if r.on_fail == "quarantine"]
        raw = item.get("quarantine")
        quarantine: dict[str, Any] | None = None
        if "quarantine" in item and not isinstance(raw, Mapping):
            self.report(f"{path}.quarantine", f"must be a target mapping with 'type', got {describe_value(raw)}")
        elif isinstance(raw, Mapping):
            quarantine = item["quarantine"] = self.build_target(raw, f"{path}.quarantine", path, targets)
            listed = item.get("expectations")
            if not uses and not any(
                isinstance(r, Mapping) and r.get("on_fail") == "quarantine"
                for r in (listed if isinstance(listed, list) else [])
            ):
                self.report(
                    f"{path}.quarantine",
                    "no expectation of this sequence has on_fail: quarantine: remove quarantine, "
                    "or give a rule on_fail: quarantine",
                )
        if uses and "quarantine" not in item:
            self.report(
                f"{path}.expectations",
                f"rule {uses[0].name!r} has on_fail: quarantine but the sequence has no 'quarantine' target: "
                "add quarantine: {type: parquet, path: ...}",
            )
        low, high = item.get("min_rows"), item.get("max_rows")
        if isinstance(low, int) and isinstance(high, int) and low > high:
            self.report(f"{path}.max_rows", f"is {high}, below min_rows {low}: no row count could pass")
        if len(self.problems) != before:
            return None
        return {
            "expectations": rules,
            "min_rows": low if isinstance(low, int) else None,
            "max_rows": high if isinstance(high, int) else None,
            "quarantine": quarantine,
        }

    def query_text(self, item: Mapping[str, Any], path: str) -> str | None:
        has_query, has_file = "query" in item, "query_file" in item
        if has_query and has_file:
            self.report(f"{path}.query_file", "give either 'query' or 'query_file', not both")
            return None
        if not has_query and not has_file:
            self.report(path, "missing required key 'query' (or 'query_file')")
            return None
        if has_query:
            query = item["query"]
            if isinstance(query, str) and not query.strip():
                self.report(f"{path}.query", "is empty: write one SELECT statement")
                return None
            return query if isinstance(query, str) else None
        rel = item["query_file"]
        if not isinstance(rel, str):
            return None
        if not rel.strip():
            self.report(f"{path}.query_file", "is empty: give the file holding the query, relative to the config")
            return None
        file = Path(rel) if os.path.isabs(rel) else self.base_dir / rel
        self.query_files.append((f"the query file of {path}", str(file)))
        try:
            text = read_text_file(file, "a query file")
        except UnreadableFile as exc:
            reason = f"file not found: {file}" if exc.reason.startswith("not found") else f"{file} {exc.reason}"
            if exc.reason.startswith(("not UTF-8", "the file is")):
                reason = f"{file}: {exc.reason}" + (f" (line {exc.line})" if exc.line else "")
            self.report(f"{path}.query_file", reason)
            return None
        if not text.strip():
            self.report(f"{path}.query_file", f"{file} is empty: write one SELECT statement")
            return None
        return self.sub.text(text, f"{path}.query_file")

    def relations(
        self, query: str, path: str, aliases: Mapping[str, SourceSpec], names: Mapping[str, str]
    ) -> list[str]:
        """The known views the query reads (lower-cased); reports unknown ones and self-reads."""
        analysis = analyse_query(query)
        if analysis.not_query:
            self.report(
                f"{path}.query",
                f"is a {analysis.not_query} statement, not a query: a sequence's SQL is one query (SELECT, WITH, "
                "VALUES, TABLE, FROM ...) whose result the driver writes to the target",
            )
            return []
        if analysis.unclosed:
            self.report(
                f"{path}.query",
                f"{analysis.unclosed}: Spark cannot parse the query, and what follows hides what it reads",
            )
            return []
        if analysis.dynamic:
            self.report(
                f"{path}.query",
                "names a table with IDENTIFIER(...) whose argument is not a string literal: what it reads "
                "cannot be known before it runs; write the name, or IDENTIFIER('name')",
            )
            return []
        if self.doc.styles.get(f"{path}.query") == ">" and "--" in query:
            self.report(
                f"{path}.query",
                "is a folded YAML scalar (>): its lines are joined into one, so a -- comment swallows the rest "
                "of the query; write the query as a literal block (query: |)",
            )
            return []
        if not analysis.parsed:
            return []
        if analysis.statements > 1:
            self.report(f"{path}.query", f"holds {analysis.statements} statements: a sequence runs exactly one")
        found: list[str] = []
        for relation in sorted(analysis.relations):
            if names.get(relation) == path:
                self.report(f"{path}.query", f"reads its own result {relation!r}: dependency cycle")
            elif relation in names or relation in aliases:
                found.append(relation)
            else:
                hint = suggest(relation, _Names(aliases, names), self.suggestions)
                advice = hint.strip()[1:-1] + " " if hint else ""
                self.report(
                    f"{path}.query",
                    f"reads {relation!r}, which is neither a source alias nor a sequence "
                    f"({advice}qualify catalog tables as database.table)",
                )
        return found


class _Names:
    """The view names a relation may be compared with, listed only when a suggestion is searched."""

    def __init__(self, *groups: Mapping[str, Any]) -> None:
        self.groups = groups

    def __iter__(self) -> Any:
        for group in self.groups:
            yield from group


def _fields_of(role: str, kind: str) -> Mapping[str, Field]:
    """The fields of the reader (``source``) or writer (``target``) type ``kind`` (none when unknown)."""
    cls = (readers if role == "source" else writers).get(kind)
    return cls.all_fields() if cls is not None else {}


def _java_literal(text: str) -> str:
    """``text`` as a Java regular expression matching it literally (ASCII punctuation escaped)."""
    return "".join("\\" + c if c.isascii() and not (c.isalnum() or c == "_") else c for c in text)


_UNQUOTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _is_identifier(name: str) -> bool:
    """Spark's parser reads unquoted names of ASCII letters, digits and _ only (not é, not ²)."""
    return bool(_UNQUOTED_NAME.match(name))


def _conf_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
