"""The config's model: the keys of a pipeline and of a sequence, and the frozen specs a validated
config becomes (``PipelineConfig`` holding ``SourceSpec``s and ``SequenceSpec``s).

The keys of sources and targets are declared by their readers and writers (``spark_job.io``); the
keys of an expectation by ``spark_job.config.expectations``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spark_job.config.expectations import Expectation
from spark_job.config.fields import Field
from spark_job.config.graph import SequenceGraph
from spark_job.config.incremental import WATERMARK_FIELD, refreshed
from spark_job.config.masking import mask_text
from spark_job.io import BaseReader, BaseWriter, readers, writers

TOP_FIELDS: dict[str, Field] = {
    "app_name": Field("str", required=True, doc="Spark application name"),
    "description": Field("str", doc="free text"),
    "spark_conf": Field("map", doc="Spark configuration set on the session (spark.* keys)"),
    "vars": Field("map", doc="variables substituted as ${name} in every string"),
    "sources": Field("sources", doc="id -> source, or a list of sources with an alias"),
    "sequences": Field("sequences", required=True, doc="SQL steps, each writing one target"),
    "fail_fast": Field("bool", doc="stop at the first failed sequence (default: run independent ones)"),
    "max_parallel": Field(
        "int", doc="most sequences running at once (default: one per 4 of the session's cores, 1 to 4; 1: one by one)"
    ),
    "full_refresh": Field(
        "bool",
        doc="incremental sequences read everything and replace their targets (usually given by --full-refresh "
        "or the operator's full_refresh)",
    ),
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
    "incremental": WATERMARK_FIELD,
}
LISTED_SOURCE_ID = Field("str", doc="identifier (default: the alias)")
"""The extra key of a source given in a list (``sources: [...]``)."""


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
        incremental: a ``spark_job.config.incremental.Watermark`` (the sequence reads one source beyond what
            its target holds), a ``NewFilesFeed`` (it reads a source new files only), or None.
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
    incremental: Any = None

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
        spark_conf: Spark configuration for the session (with the settings that make Spark redact the
            secrets, see ``spark_job.config.masking.redacted_conf``).
        sources: sources in config order.
        sequences: sequences in execution order (dependencies first).
        fail_fast: stop at the first failure instead of running independent sequences.
        max_parallel: the most sequences running at once (None: the driver's default).
        full_refresh: incremental sequences read everything and replace their targets.
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
    full_refresh: bool = False
    document: dict[str, Any] = field(default_factory=dict, repr=False)
    file: str | None = None
    secrets: frozenset[str] = field(default_factory=frozenset, repr=False)

    def to_document(self) -> dict[str, Any]:
        return self.document

    def refreshed(self) -> PipelineConfig:
        """This pipeline for a full-refresh run: its incremental sequences read everything and replace
        their targets."""
        sequences = tuple(dataclasses.replace(s, incremental=refreshed(s.incremental)) for s in self.sequences)
        return dataclasses.replace(self, full_refresh=True, sequences=sequences)

    def graph(self) -> SequenceGraph:
        return SequenceGraph([s.name for s in self.sequences], {s.name: s.depends_on for s in self.sequences})

    def targets(self) -> list[dict[str, Any]]:
        return [seq.writer.describe() for seq in self.sequences]

    def mask(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***``."""
        return mask_text(text, sorted(self.secrets, key=len, reverse=True))
