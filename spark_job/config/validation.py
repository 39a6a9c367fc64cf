"""Loading and validating a pipeline config, reporting every problem at once.

:func:`load_config` reads the config, and the :class:`Validator` takes it in passes: the vars and
every string are substituted, then each entry is parsed into a typed draft (``spark_job.config.drafts``)
and checked before the next (so problems come in the order of the config, also for a config given as
data, which has no lines to sort them by), then the pipeline is checked as a whole: what each query
reads, cycles, vars passed in, values in SQL, overlapping places. A config without problems is built
(``spark_job.config.build``) into the ``PipelineConfig`` the driver runs. The input is never changed.

Nothing here imports pyspark: the Airflow provider validates configs at DAG parse time with it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from spark_job.config.build import VARIABLE_SUBSTITUTE, CheckedPipeline, build_config, conf_value
from spark_job.config.document import Document, check_depth, child_path, collection_paused, parse_text, read_document
from spark_job.config.drafts import Parser, PipelineDraft, Problems, SequenceDraft, SourceDraft, TargetDraft
from spark_job.config.expectations import parse_expectations
from spark_job.config.fields import Field, describe_value
from spark_job.config.graph import SequenceGraph
from spark_job.config.incremental import incremental_specs
from spark_job.config.lakehouse import check_uses, pipeline_entries, table_uses
from spark_job.config.masking import masked_problems
from spark_job.config.model import (
    LISTED_SOURCE_ID,
    SEQUENCE_FIELDS,
    TOP_FIELDS,
    PipelineConfig,
    SequenceSpec,
    SourceSpec,
)
from spark_job.config.overlaps import check_overlaps, pipeline_uses, target_identity
from spark_job.config.paths import PathResolver
from spark_job.config.sql import analyse_query
from spark_job.config.urls import strip_credentials
from spark_job.config.variables import (
    MAX_SUGGESTIONS,
    ExpansionLimit,
    Substitution,
    check_values_in_sql,
    resolve_vars,
    sql_places,
    suggest,
)
from spark_job.errors import ConfigError, Problem
from spark_job.io import readers, writers

__all__ = ["PipelineConfig", "SequenceSpec", "SourceSpec", "load_config", "parse_text"]


@collection_paused()
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
        unknown_vars=unknown_vars,
        vars_from=vars_from,
    )
    try:
        return build_config(validator.validate(), validator.sub, document.file)
    except ExpansionLimit:
        raise ConfigError(masked_problems(validator.problems.found, validator.sub.secrets, document.data)) from None
    except ConfigError as exc:
        raise ConfigError(masked_problems(exc.problems, validator.sub.secrets, document.data)) from None
    except RecursionError:
        raise ConfigError([Problem("", "the config is nested too deeply", document.file)]) from None


class Validator:
    """Checks a config entry by entry and as a whole, collecting problems instead of stopping at one.

    Args:
        document: the parsed config.
        overrides: the vars passed in (``--var``, the operator's ``vars``).
        base_dir: the folder ``query_file`` paths are relative to.
        resolve_env: resolve ``${env:}``, ``${file:}`` and ``${secret:}`` (False: kept for the driver).
        environ: where ``${env:NAME}`` is looked up.
        connections: resolves ``connection: ID`` (see :func:`load_config`).
        unknown_vars: accept vars passed in that the config neither declares nor uses.
        vars_from: where the vars passed in come from, named in errors (None: trusted, not checked in SQL).
    """

    def __init__(
        self,
        document: Document,
        overrides: Mapping[str, Any],
        base_dir: Path,
        resolve_env: bool,
        environ: Mapping[str, str],
        connections: Callable[[str], Mapping[str, Any]] | None = None,
        *,
        unknown_vars: bool = False,
        vars_from: str | None = "vars passed in",
    ) -> None:
        self.doc = document
        self.overrides = overrides
        self.problems = Problems(document)
        self.report = self.problems.report
        self.sub = Substitution({}, environ, resolve_env, self.report)
        self.parser = Parser(self.problems, self.sub, base_dir, connections)
        self.unknown_vars = unknown_vars
        self.vars_from = vars_from
        self.suggestions = [MAX_SUGGESTIONS]  # budget of "did you mean" searches (each compares with every name)

    def validate(self) -> CheckedPipeline:
        """The config parsed and checked; raises ``ConfigError`` with every problem found."""
        data = self.doc.data
        if not isinstance(data, Mapping):
            self.report(
                "",
                f"the config must be a mapping with app_name, sources and sequences, got {describe_value(data)}",
            )
            raise ConfigError(self.problems.found)
        raw_vars = data.get("vars")
        declared: Mapping[str, Any] = raw_vars if isinstance(raw_vars, Mapping) else {}
        resolve_vars(declared, self.overrides, self.sub)
        body = self.sub.tree({k: v for k, v in data.items() if k != "vars"}, "")
        top = {**body, **({"vars": raw_vars} if "vars" in data else {})}
        keys = {k: v for k, v in self.parser.typed(top, TOP_FIELDS, "", "the pipeline").items() if k != "vars"}
        spark_conf: Mapping[str, Any] = keys["spark_conf"] if isinstance(keys.get("spark_conf"), Mapping) else {}
        substitute = spark_conf.get(VARIABLE_SUBSTITUTE)
        if substitute is not None and conf_value(substitute).strip().lower() != "false":
            self.report(
                f"spark_conf.{VARIABLE_SUBSTITUTE}",
                "Spark's own substitution would expand ${env:...} and ${system:...} in the SQL text, values "
                "of vars included: remove the key (the driver sets it to false) and use vars",
            )
        paths = PathResolver.for_conf(spark_conf, remember_links=True)
        source_drafts, sources = self.sources(keys.get("sources"))
        sequence_drafts, sequences = self.sequences(keys.get("sequences"), sources, paths)
        if not self.unknown_vars:
            self.check_overrides(declared)
        draft = PipelineDraft(keys, spark_conf, tuple(source_drafts), tuple(sequence_drafts))
        if self.vars_from is not None and self.sub.placed:
            check_values_in_sql(self.sub, sql_places(draft.document(), _fields_of), self.vars_from, self.report)
        warehouse = spark_conf.get("spark.sql.warehouse.dir")
        read_files = [("the config file", str(self.doc.file))] if self.doc.file else []
        uses = pipeline_uses(
            sources,
            sequences,
            paths,
            warehouse if isinstance(warehouse, str) else None,
            [*read_files, *self.parser.query_files],
        )
        check_overlaps(uses, self.report)
        check_uses(table_uses(pipeline_entries(sources, sequences)), spark_conf, self.report)
        if isinstance(keys.get("max_parallel"), int) and keys["max_parallel"] < 1:
            self.report("max_parallel", "must be at least 1 (1 runs the sequences one after the other)")
        if self.problems:
            raise ConfigError(self.problems.in_file_order())
        return CheckedPipeline(draft, tuple(sources), tuple(sequences))

    def check_overrides(self, declared: Mapping[str, Any]) -> None:
        """A var passed (``--var``, the operator's ``vars``) that the config neither declares nor uses is a
        mistake (a misspelt name would otherwise be ignored silently)."""
        unknown = [str(n) for n in self.overrides if str(n) not in declared and str(n) not in self.sub.used]
        known = sorted({*map(str, declared), *self.sub.used})
        for name in unknown:
            self.problems.add(
                Problem(
                    f"--var {name}",
                    f"the config neither declares {name!r} under 'vars' nor uses it as ${{{name}}}"
                    f"{suggest(name, known, self.suggestions)}: remove it or fix its name",
                    self.doc.file,
                )
            )

    def sources(self, raw: Any) -> tuple[list[SourceDraft], list[SourceSpec]]:
        """Each source parsed and checked (its type's checks, its alias); the specs of those with a known
        type and a usable alias."""
        if raw is None:
            return [], []
        if isinstance(raw, Mapping):
            entries = [(str(k), child_path("sources", k), k, v) for k, v in raw.items()]
        elif isinstance(raw, list):
            entries = []
            for i, item in enumerate(raw):
                ident = item.get("alias") or item.get("id") if isinstance(item, Mapping) else None
                entries.append((str(ident or f"#{i}"), f"sources[{i}]", i, item))
        else:
            self.report("sources", f"must be a mapping of id to source or a list of sources, got {describe_value(raw)}")
            return [], []
        drafts: list[SourceDraft] = []
        specs: list[SourceSpec] = []
        aliases: dict[str, str] = {}
        for ident, path, key, value in entries:
            if not isinstance(value, Mapping):
                self.report(path, f"a source must be a mapping with at least 'type', got {describe_value(value)}")
                continue
            settings, cls = self.parser.entry(value, path, readers, "reader")
            fields = {**cls.all_fields()} if cls else {}
            if isinstance(raw, list):
                fields["id"] = LISTED_SOURCE_ID
                if "alias" not in settings:
                    self.report(path, "a source in a list needs an 'alias' (the view name used in SQL)")
            if cls is None:
                drafts.append(SourceDraft(ident, path, key, settings))
                continue
            if "expectations" in settings:
                self.report(
                    child_path(path, "expectations"),
                    "a source has no expectations: put the rules on the sequence that reads it "
                    "(SELECT * FROM the source), where its write counts them",
                )
                fields["expectations"] = Field("expectations")
            settings = self.parser.typed(settings, fields, path, f"a {settings['type']} source")
            drafts.append(SourceDraft(ident, path, key, settings, cls))
            cls.check(settings, lambda k, msg, p=path: self.report(child_path(p, k) if k else p, msg))
            alias = settings.get("alias", ident)
            if not isinstance(alias, str) or not alias:
                continue
            if not _is_identifier(alias):
                self.report(
                    child_path(path, "alias"), f"{alias!r} is not a valid view name: use ASCII letters, digits and _"
                )
            if alias.lower() in aliases:
                self.report(child_path(path, "alias"), f"alias {alias!r} is already used by {aliases[alias.lower()]}")
                continue
            aliases[alias.lower()] = path
            specs.append(SourceSpec(id=ident, alias=alias, spec=settings, path=path))
        return drafts, specs

    def sequences(
        self, raw: Any, sources: list[SourceSpec], paths: PathResolver
    ) -> tuple[list[SequenceDraft], list[SequenceSpec]]:
        """Each sequence parsed and checked (its name, target and quality rules), then what each query
        reads and the dependency cycles; the specs of the sequences complete enough to run."""
        if raw is None:
            return [], []
        if not isinstance(raw, list):
            self.report("sequences", f"must be a list of sequences, got {describe_value(raw)}")
            return [], []
        if not raw:
            self.report("sequences", "is empty: a pipeline needs at least one sequence")
            return [], []
        views = ViewNames({s.alias.lower(): s.path for s in sources}, self.suggestions)
        identities: dict[str, str] = {}
        drafts: list[SequenceDraft] = []
        for i, item in enumerate(raw):
            path = f"sequences[{i}]"
            if not isinstance(item, Mapping):
                self.report(
                    path, f"a sequence must be a mapping with name, query and target, got {describe_value(item)}"
                )
                continue
            keys = self.parser.typed(item, SEQUENCE_FIELDS, path, "a sequence")
            name = keys.get("name") if isinstance(keys.get("name"), str) else None
            if name is not None and (problem := views.claim(name, path)):
                self.report(f"{path}.name", problem)
            query = self.parser.query(keys, path)
            target, raw_target = None, keys.get("target")
            if "target" in keys and not isinstance(raw_target, Mapping):
                self.report(
                    f"{path}.target", f"must be a mapping with at least 'type', got {describe_value(raw_target)}"
                )
            elif isinstance(raw_target, Mapping):
                target = self.target(raw_target, f"{path}.target", path, identities, paths)
            drafts.append(
                self.quality(SequenceDraft(i, keys, name, query, "query_file" in keys, target), identities, paths)
            )
        # A sequence is built only with a writer of a known type (an unknown one is reported already).
        complete = [
            d
            for d in drafts
            if d.name is not None and d.query is not None and d.target and d.target.cls and d.quality_ok
        ]
        specs = incremental_specs([self.sequence_spec(d, views) for d in complete], sources, self.report)
        graph = SequenceGraph([s.name for s in specs], {s.name: s.depends_on for s in specs})
        cycle = graph.find_cycle()
        if cycle:
            first = next(s for s in specs if s.name == cycle[0])
            self.report(f"{first.path}.query", f"dependency cycle: {' -> '.join(cycle)}")
        return drafts, specs

    def target(
        self, raw: Mapping[str, Any], path: str, sequence: str, identities: dict[str, str], paths: PathResolver
    ) -> TargetDraft:
        """A target (a sequence's, or its quarantine) parsed and checked; a sound one claims its canonical
        identity (one per place however spelt): no two outputs may write one target."""
        settings, cls = self.parser.entry(raw, path, writers, "writer")
        if cls is None:
            return TargetDraft(path, settings)
        before = len(self.problems)
        settings = self.parser.typed(settings, cls.all_fields(), path, f"a {settings['type']} target")
        cls.check(settings, lambda key, msg, p=path: self.report(child_path(p, key) if key else p, msg))
        required = [k for k, f in cls.all_fields().items() if f.required]
        sound = len(self.problems) == before and all(k in settings for k in required)
        if sound:
            identity = target_identity(cls(settings), paths)
            if identity in identities:
                self.report(
                    path,
                    f"writes the same target as {identities[identity]} ({strip_credentials(identity)}): two outputs "
                    "cannot write one target",
                )
            identities.setdefault(identity, path if path.endswith(".quarantine") else sequence)
        return TargetDraft(path, settings, cls, sound)

    def quality(self, draft: SequenceDraft, identities: dict[str, str], paths: PathResolver) -> SequenceDraft:
        """``draft`` with its ``expectations``, ``quarantine`` and ``min_rows``/``max_rows`` parsed and checked."""
        keys, path = draft.keys, draft.path
        before = len(self.problems)
        rules, listed = parse_expectations(
            keys.get("expectations"), f"{path}.expectations", self.report, self.parser.typed
        )
        uses = [r for r in rules if r.on_fail == "quarantine"]
        raw, quarantine = keys.get("quarantine"), None
        if "quarantine" in keys and not isinstance(raw, Mapping):
            self.report(f"{path}.quarantine", f"must be a target mapping with 'type', got {describe_value(raw)}")
        elif isinstance(raw, Mapping):
            quarantine = self.target(raw, f"{path}.quarantine", path, identities, paths)
            if not uses and not any(isinstance(r, Mapping) and r.get("on_fail") == "quarantine" for r in listed or []):
                self.report(
                    f"{path}.quarantine",
                    "no expectation of this sequence has on_fail: quarantine: remove quarantine, "
                    "or give a rule on_fail: quarantine",
                )
        if uses and "quarantine" not in keys:
            self.report(
                f"{path}.expectations",
                f"rule {uses[0].name!r} has on_fail: quarantine but the sequence has no 'quarantine' target: "
                "add quarantine: {type: parquet, path: ...}",
            )
        low, high = keys.get("min_rows"), keys.get("max_rows")
        if isinstance(low, int) and isinstance(high, int) and low > high:
            self.report(f"{path}.max_rows", f"is {high}, below min_rows {low}: no row count could pass")
        ok = len(self.problems) == before
        return dataclasses.replace(draft, quarantine=quarantine, rules=rules, listed_rules=listed, quality_ok=ok)

    def sequence_spec(self, draft: SequenceDraft, views: ViewNames) -> SequenceSpec:
        """The spec of a complete sequence, with the views its query reads."""
        assert draft.name is not None and draft.query is not None and draft.target is not None
        keys = draft.keys
        relations = views.read_by(draft.query, draft.path, self.doc.styles.get(f"{draft.path}.query"), self.report)
        low, high = keys.get("min_rows"), keys.get("max_rows")
        return SequenceSpec(
            draft.name,
            draft.query,
            dict(draft.target.settings),
            tuple(views.sequences[r][1] for r in relations if r in views.sequences),
            draft.path,
            cache=keys["cache"] if isinstance(keys.get("cache"), bool) else None,
            reads_sources=tuple(r for r in relations if r in views.sources),
            expectations=draft.rules,
            min_rows=low if isinstance(low, int) else None,
            max_rows=high if isinstance(high, int) else None,
            quarantine=draft.quarantine.settings if draft.quarantine is not None else None,
            incremental=keys.get("incremental") if isinstance(keys.get("incremental"), Mapping) else None,
        )


class ViewNames:
    """The view names of a pipeline: source aliases and sequence names, one namespace (lower-cased)."""

    def __init__(self, sources: dict[str, str], suggestions: list[int]) -> None:
        self.sources = sources
        """alias → the source's config path."""
        self.suggestions = suggestions
        """The budget of "did you mean" searches (shared with the rest of the validation)."""
        self.sequences: dict[str, tuple[str, str]] = {}
        """name → (the sequence's config path, the name as written)."""

    def claim(self, name: str, path: str) -> str | None:
        """Take ``name`` for the sequence at ``path``; what is wrong with it, if anything."""
        if not _is_identifier(name):
            return f"{name!r} is not a valid view name: use ASCII letters, digits and _"
        if name.lower() in self.sequences:
            return f"sequence name {name!r} is already used by {self.sequences[name.lower()][0]}"
        if name.lower() in self.sources:
            return f"{name!r} is also the alias of {self.sources[name.lower()]}: views share one namespace, rename one"
        self.sequences[name.lower()] = (path, name)
        return None

    def __iter__(self) -> Any:  # the names a misspelt one is compared with, listed only when a suggestion is searched
        yield from self.sources
        yield from self.sequences

    def read_by(self, query: str, path: str, style: str | None, report: Callable[[str, str], None]) -> list[str]:
        """The views the query of the sequence at ``path`` reads (lower-cased); reports what cannot be known
        (``style``: the YAML scalar style of the query) and the names that are no view."""
        analysis = analyse_query(query)
        where = f"{path}.query"
        if problem := _unreadable(analysis, query, style):
            report(where, problem)
            return []
        if not analysis.parsed:
            return []
        if analysis.statements > 1:
            report(where, f"holds {analysis.statements} statements: a sequence runs exactly one")
        found: list[str] = []
        for relation in sorted(analysis.relations):
            if self.sequences.get(relation, ("",))[0] == path:
                report(where, f"reads its own result {relation!r}: dependency cycle")
            elif relation in self.sequences or relation in self.sources:
                found.append(relation)
            else:
                hint = suggest(relation, self, self.suggestions)
                advice = hint.strip()[1:-1] + " " if hint else ""
                report(
                    where,
                    f"reads {relation!r}, which is neither a source alias nor a sequence "
                    f"({advice}qualify catalog tables as database.table)",
                )
        return found


def _unreadable(analysis: Any, query: str, style: str | None) -> str | None:
    """Why what a query reads cannot be known (not a query, an unclosed quote, a dynamic name, a folded
    YAML scalar holding a comment), or None."""
    if analysis.not_query:
        return (
            f"is a {analysis.not_query} statement, not a query: a sequence's SQL is one query (SELECT, WITH, "
            "VALUES, TABLE, FROM ...) whose result the driver writes to the target"
        )
    if analysis.unclosed:
        return f"{analysis.unclosed}: Spark cannot parse the query, and what follows hides what it reads"
    if analysis.dynamic:
        return (
            "names a table with IDENTIFIER(...) whose argument is not a string literal: what it reads "
            "cannot be known before it runs; write the name, or IDENTIFIER('name')"
        )
    if style == ">" and "--" in query:
        return (
            "is a folded YAML scalar (>): its lines are joined into one, so a -- comment swallows the rest "
            "of the query; write the query as a literal block (query: |)"
        )
    return None


def _fields_of(role: str, kind: str) -> Mapping[str, Field]:
    """The fields of the reader (``source``) or writer (``target``) type ``kind`` (none when unknown)."""
    cls = (readers if role == "source" else writers).get(kind)
    return cls.all_fields() if cls is not None else {}


_UNQUOTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _is_identifier(name: str) -> bool:
    """Spark's parser reads unquoted names of ASCII letters, digits and _ only (not é, not ²)."""
    return bool(_UNQUOTED_NAME.match(name))
