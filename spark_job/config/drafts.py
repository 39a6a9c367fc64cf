"""The parse pass: the substituted config read into typed drafts, its input never changed.

A :class:`Parser` reads one entry at a time (the pipeline's own keys, a source, a target, a sequence's
keys, its query) into new, typed objects: keys checked against their ``Field`` declarations (unknown
keys with a suggestion, types, the fields' own rules), values typed (``"4"`` → ``4``), ``connection:``
expanded, query files read. What is wrong is reported to :class:`Problems`; the checks across entries
are ``spark_job.config.validation``'s, the staged document and ``PipelineConfig`` are
``spark_job.config.build``'s.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spark_job.config.document import Document, UnreadableFile, child_path, read_text_file
from spark_job.config.expectations import Expectation
from spark_job.config.fields import Field, describe_value
from spark_job.config.variables import Substitution
from spark_job.errors import Problem
from spark_job.registry import Registry

NESTED_KINDS = ("sources", "sequences", "target", "expectations")
"""Field kinds read by a parser of their own, not by :meth:`Parser.typed`."""


class Problems:
    """The problems found in one config, each with the line of its config path (or of the nearest
    enclosing path the file has a line for)."""

    def __init__(self, document: Document) -> None:
        self.document = document
        self.found: list[Problem] = []

    def report(self, path: str, message: str) -> None:
        lines = self.document.lines
        probe, line = path, lines.get(path)
        while line is None and probe:
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[: max(cut, 0)]
            line = lines.get(probe)
        self.found.append(Problem(path, message, self.document.file, line))

    def add(self, problem: Problem) -> None:
        self.found.append(problem)

    def __len__(self) -> int:
        return len(self.found)

    def in_file_order(self) -> list[Problem]:
        """The problems by line; those of one line (or of a config without lines) in the order found."""
        return sorted(self.found, key=lambda p: p.line or 0)


@dataclass(frozen=True)
class SourceDraft:
    """A source as written, typed.

    Attributes:
        id: its key in the ``sources`` mapping, or for a list of sources its alias (``id``, ``#<i>``).
        path: its config path (``sources.events``, ``sources[2]``).
        key: its key in the ``sources`` mapping or its index in the list.
        settings: its keys after ``connection:`` expansion, typed when its type is known.
        cls: its reader type (None: not given or unknown, already reported).
    """

    id: str
    path: str
    key: Any
    settings: dict[str, Any]
    cls: Any = None


@dataclass(frozen=True)
class TargetDraft:
    """A target (a sequence's, or its quarantine) as written, typed.

    Attributes:
        path: its config path (``sequences[0].target``, ``sequences[0].quarantine``).
        settings: its keys after ``connection:`` expansion, typed when its type is known.
        cls: its writer type (None: not given or unknown, already reported).
        sound: whether its keys were found right (then it has an identity to compare).
    """

    path: str
    settings: dict[str, Any]
    cls: Any = None
    sound: bool = False


@dataclass(frozen=True)
class SequenceDraft:
    """A sequence as written, typed.

    Attributes:
        index: its position in ``sequences``.
        keys: its own keys, typed (``target``, ``quarantine`` and ``expectations`` as written).
        name: its name, when a string.
        query: its SQL after substitution (a ``query_file``'s text), None when missing or unreadable.
        from_file: whether the query came from ``query_file``.
        target: its target, when a mapping.
        quarantine: its quarantine target, when a mapping.
        rules: its expectations that parsed.
        listed_rules: ``expectations`` as written with each rule's keys typed (None: not a list).
        quality_ok: whether its expectations, ``quarantine`` and row bounds were found right.
    """

    index: int
    keys: dict[str, Any]
    name: str | None = None
    query: str | None = None
    from_file: bool = False
    target: TargetDraft | None = None
    quarantine: TargetDraft | None = None
    rules: tuple[Expectation, ...] = ()
    listed_rules: list[Any] | None = None
    quality_ok: bool = False

    @property
    def path(self) -> str:
        return f"sequences[{self.index}]"

    def document(self) -> dict[str, Any]:
        """The sequence as the staged document holds it: typed keys, expanded targets."""
        out = dict(self.keys)
        if self.target is not None:
            out["target"] = self.target.settings
        if self.quarantine is not None:
            out["quarantine"] = self.quarantine.settings
        if self.listed_rules is not None:
            out["expectations"] = self.listed_rules
        return out


@dataclass(frozen=True)
class PipelineDraft:
    """The config as parsed.

    Attributes:
        keys: the pipeline's own keys after substitution, typed (``sources`` and ``sequences`` as written).
        spark_conf: ``spark_conf`` when a mapping (else empty).
        sources: the sources given as mappings.
        sequences: the sequences given as mappings.
    """

    keys: dict[str, Any]
    spark_conf: Mapping[str, Any] = field(default_factory=dict)
    sources: tuple[SourceDraft, ...] = ()
    sequences: tuple[SequenceDraft, ...] = ()

    def document(self) -> dict[str, Any]:
        """The config with each source and sequence as parsed (what is staged, before escaping); the
        entries that are not mappings as they were written."""
        out = dict(self.keys)
        raw_sources = self.keys.get("sources")
        if isinstance(raw_sources, Mapping):
            out["sources"] = {**raw_sources, **{s.key: s.settings for s in self.sources}}
        elif isinstance(raw_sources, list):
            listed = list(raw_sources)
            for source in self.sources:
                listed[source.key] = source.settings
            out["sources"] = listed
        raw_sequences = self.keys.get("sequences")
        if isinstance(raw_sequences, list):
            items = list(raw_sequences)
            for seq in self.sequences:
                items[seq.index] = seq.document()
            out["sequences"] = items
        return out


class Parser:
    """Reads the entries of one config into drafts, reporting what is wrong to ``problems``.

    Args:
        problems: where problems go.
        substitution: the config's substitution (a query file's text and a connection's settings are
            substituted like the config's own text).
        base_dir: the folder ``query_file`` paths are relative to.
        connections: resolves ``connection: ID`` into settings (None: outside Airflow, not allowed).
    """

    def __init__(
        self,
        problems: Problems,
        substitution: Substitution,
        base_dir: Path,
        connections: Callable[[str], Mapping[str, Any]] | None = None,
    ) -> None:
        self.problems = problems
        self.report = problems.report
        self.sub = substitution
        self.base_dir = base_dir
        self.connections = connections
        self.query_files: list[tuple[str, str]] = []
        """(what, file) of each query file read: no target may replace one."""

    def typed(self, data: Mapping[str, Any], fields: Mapping[str, Field], path: str, what: str) -> dict[str, Any]:
        """A typed copy of ``data``: unknown keys (with a suggestion), missing required keys, per-key types
        and the fields' own rules reported; integers and booleans written as text typed."""
        out = dict(data)
        for key, value in data.items():
            sub = child_path(path, key)
            spec = fields.get(key) if isinstance(key, str) else None
            if spec is None:
                hint = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
                advice = f"did you mean {hint[0]!r}?" if hint else f"valid keys: {', '.join(sorted(fields))}"
                self.report(sub, f"unknown key for {what} ({advice})")
            elif spec.kind not in NESTED_KINDS:
                value = out[key] = spec.coerce(value)
                if problem := spec.check(value):
                    self.report(sub, problem)
        for key, spec in fields.items():
            if spec.required and key not in data:
                self.report(path, f"missing required key {key!r} ({spec.doc})")
        return out

    def entry(
        self, raw: Mapping[str, Any], path: str, registry: Registry[Any], kind: str
    ) -> tuple[dict[str, Any], Any]:
        """A source's or target's settings with ``connection:`` expanded, and its type (None: reported)."""
        settings = self.expand_connection(dict(raw), path)
        typ = settings.get("type")
        if not isinstance(typ, str):
            if "type" not in settings:
                self.report(path, f"missing required key 'type' (one of {', '.join(registry.names())})")
            else:
                self.report(child_path(path, "type"), f"must be a string, got {describe_value(typ)}")
            return settings, None
        cls = registry.get(typ)
        if cls is None:
            hint = difflib.get_close_matches(typ, registry.names(), n=1, cutoff=0.5)
            advice = f"did you mean {hint[0]!r}? " if hint else ""
            self.report(
                child_path(path, "type"),
                f"unknown {kind} type {typ!r} ({advice}known types: {', '.join(registry.names())})",
            )
        return settings, cls

    def expand_connection(self, spec: dict[str, Any], path: str) -> dict[str, Any]:
        """``spec`` with ``connection: ID`` replaced by the settings the connection resolver gives."""
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

    def query(self, keys: Mapping[str, Any], path: str) -> str | None:
        """The sequence's SQL: ``query``, or the substituted text of ``query_file``; None when missing,
        empty or unreadable (reported)."""
        has_query, has_file = "query" in keys, "query_file" in keys
        if has_query and has_file:
            self.report(f"{path}.query_file", "give either 'query' or 'query_file', not both")
            return None
        if not has_query and not has_file:
            self.report(path, "missing required key 'query' (or 'query_file')")
            return None
        if has_query:
            query = keys["query"]
            if isinstance(query, str) and not query.strip():
                self.report(f"{path}.query", "is empty: write one SELECT statement")
                return None
            return query if isinstance(query, str) else None
        rel = keys["query_file"]
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
