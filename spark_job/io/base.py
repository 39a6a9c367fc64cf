"""Base classes of readers and writers and the registries that hold them.

A reader or writer is a small class: the keys it accepts (``fields``), checks across keys
(``check``), and a pure ``plan()`` saying exactly what it hands to Spark, so the Spark-facing part is
testable without a cluster. pyspark is imported only when data is actually read or written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlparse

from spark_job.config.fields import Field, at_least
from spark_job.config.targets import PathLocation, canonical_path
from spark_job.config.urls import strip_credentials
from spark_job.registry import Registry

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

Report = Callable[[str, str], None]
"""``report(key, message)``: record a problem with the key ``key`` of the spec being checked."""

SAVE_MODES = ("overwrite", "append", "error", "ignore")

COMMON_SOURCE_FIELDS: dict[str, Field] = {
    "type": Field("str", required=True, doc="reader type"),
    "alias": Field("str", doc="name of the Spark SQL view the source is registered as (default: its id)"),
    "options": Field("map", doc="options passed unchanged to the Spark reader"),
    "schema": Field("str", doc="schema as a DDL string, e.g. 'id BIGINT, name STRING'"),
    "cache": Field(
        "bool",
        doc="read it once for all the sequences reading it, keeping the columns they use in memory "
        "(default: when several read a source parsed row by row or fetched remotely: csv, json, text, jdbc)",
    ),
    "description": Field("str", doc="free text"),
}

COMMON_TARGET_FIELDS: dict[str, Field] = {
    "type": Field("str", required=True, doc="writer type"),
    "mode": Field(
        "str",
        choices=SAVE_MODES,
        doc="save mode (default overwrite)",
        advice="merge and scd2 are modes of the delta, iceberg and jdbc targets",
    ),
    "options": Field("map", doc="options passed unchanged to the Spark writer"),
    "partition_by": Field("str_list", doc="columns to partition the output by"),
    "coalesce": Field(
        "int",
        doc="coalesce the result to this many partitions before writing",
        rule=at_least(1, "leave it out to keep Spark's"),
    ),
    "repartition": Field("int_or_str_list", doc="repartition by a number of partitions or by columns"),
    "dynamic_partition_overwrite": Field(
        "bool", doc="with mode overwrite and partition_by, replace only the partitions written"
    ),
    "description": Field("str", doc="free text"),
}

ATOMIC_FIELD = Field("bool", doc="overwrite/append through a staging location swapped in when complete (default true)")


def stringify(value: Any) -> str:
    """Spark options are strings; booleans become ``true``/``false`` as Spark expects."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_scheme(spec: Mapping[str, Any], key: str, schemes: tuple[str, ...], report: Report) -> None:
    value = spec.get(key)
    if isinstance(value, str) and "${" not in value:
        scheme = urlparse(value).scheme
        if scheme not in schemes:
            wanted = " or ".join(f"{s}://" for s in schemes)
            report(key, f"{value!r} must start with {wanted} for type {spec.get('type')!r}")


def check_jdbc_url(spec: Mapping[str, Any], report: Report) -> None:
    url = spec.get("url")
    if url is None and "connection" not in spec:
        report("", "missing required key 'url' (a JDBC URL) or 'connection' (an Airflow connection id)")
    elif isinstance(url, str) and "${" not in url and not url.startswith("jdbc:"):
        report("url", f"{url!r} is not a JDBC URL: it must start with jdbc:, e.g. jdbc:postgresql://host/db")


def check_one_of(spec: Mapping[str, Any], keys: tuple[str, str], report: Report) -> None:
    present = [k for k in keys if k in spec]
    if not present:
        report("", f"needs one of {keys[0]!r} or {keys[1]!r}")
    elif len(present) == 2:
        report(keys[1], f"give either {keys[0]!r} or {keys[1]!r}, not both")


@dataclass(frozen=True)
class ReadPlan:
    """What a reader hands to Spark: ``spark.read.format(format).options(**options).load(path)``
    or ``spark.read.table(table)`` when ``table`` is set."""

    format: str | None
    options: dict[str, str] = field(default_factory=dict)
    path: str | None = None
    table: str | None = None
    schema: str | None = None


@dataclass(frozen=True)
class WritePlan:
    """What a writer hands to Spark.

    ``method`` is ``save`` (``df.write.format(format).options(**options).mode(mode).save(path)``),
    ``saveAsTable`` or ``insertInto`` (then ``table`` is set).
    """

    format: str | None
    mode: str
    options: dict[str, str] = field(default_factory=dict)
    path: str | None = None
    table: str | None = None
    method: str = "save"
    partition_by: tuple[str, ...] = ()


class BaseReader:
    """A source type. Subclasses set ``type_name``, ``fields`` and implement ``plan``."""

    type_name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    fields: ClassVar[dict[str, Field]] = {}
    description: ClassVar[str] = ""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = dict(spec)

    @classmethod
    def all_fields(cls) -> dict[str, Field]:
        return {**COMMON_SOURCE_FIELDS, **cls.fields}

    @classmethod
    def check(cls, spec: Mapping[str, Any], report: Report) -> None:
        """Checks across keys; per-key types and required keys are already checked."""

    def options(self) -> dict[str, str]:
        return {k: stringify(v) for k, v in (self.spec.get("options") or {}).items()}

    def plan(self) -> ReadPlan:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        plan = self.plan()
        out: dict[str, Any] = {"type": self.spec["type"]}
        if plan.path:  # what is shown (metrics, logs, plans, task docs) carries no s3a://KEY:SECRET@
            out["uri"] = strip_credentials(plan.path)
        if plan.table:
            out["table"] = plan.table
        return out

    def source_location(self) -> PathLocation | None:
        """The filesystem location read (a glob's fixed prefix), for the overlap checks; None if none."""
        return None

    def read(self, spark: SparkSession) -> DataFrame:
        plan = self.plan()
        if plan.table is not None:
            return spark.read.options(**plan.options).table(plan.table)
        reader = spark.read
        if plan.format:
            reader = reader.format(plan.format)
        reader = reader.options(**plan.options)
        if plan.schema:
            reader = reader.schema(plan.schema)
        return reader.load(plan.path) if plan.path is not None else reader.load()


class StagedWrite:
    """A write begun by :meth:`BaseWriter.begin_write`: where the writer stages, its new data is written
    aside and not yet visible. ``commit()`` puts it in place, ``discard()`` drops it and leaves the
    target's old data untouched. One of the two is called once.

    Args:
        commit: makes the staged data the target's (for a writer that stages nothing: writes it); it may
            return the rows it changed (``rows_inserted``, ``rows_updated``, ``rows_deleted``), kept in
            :attr:`changes` for the sequence's metrics.
        discard: removes the staging.
    """

    def __init__(
        self, commit: Callable[[], Mapping[str, int] | None], discard: Callable[[], None] = lambda: None
    ) -> None:
        self._commit = commit
        self._discard = discard
        self.done = False
        self.changes: Mapping[str, int] | None = None

    def commit(self) -> None:
        if self.done:
            raise RuntimeError("this staged write was already committed or discarded")
        self.done = True
        try:
            self.changes = self._commit()
        except BaseException:
            self._discard()
            raise

    def discard(self) -> None:
        if not self.done:
            self.done = True
            self._discard()


class BaseWriter:
    """A target type. Subclasses set ``type_name``, ``fields`` and implement ``plan``."""

    type_name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    fields: ClassVar[dict[str, Field]] = {}
    description: ClassVar[str] = ""
    modes: ClassVar[tuple[str, ...]] = SAVE_MODES
    """The values of ``mode`` this type accepts (``SAVE_MODES + MERGE_MODES`` for one that merges)."""
    sequence: str = ""
    """The name of the sequence writing the target, for messages (set by the run; empty elsewhere)."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = dict(spec)

    @classmethod
    def all_fields(cls) -> dict[str, Field]:
        fields = {**COMMON_TARGET_FIELDS, **cls.fields}
        if cls.modes != SAVE_MODES:
            fields["mode"] = Field("str", choices=cls.modes, doc="save mode (default overwrite)")
        return fields

    @classmethod
    def check(cls, spec: Mapping[str, Any], report: Report) -> None:
        """Checks across keys; per-key types and required keys are already checked."""

    @property
    def mode(self) -> str:
        return str(self.spec.get("mode", "overwrite"))

    def options(self) -> dict[str, str]:
        opts = {k: stringify(v) for k, v in (self.spec.get("options") or {}).items()}
        if self.spec.get("dynamic_partition_overwrite"):
            opts["partitionOverwriteMode"] = "dynamic"
        return opts

    def partition_by(self) -> tuple[str, ...]:
        value = self.spec.get("partition_by") or ()
        return (value,) if isinstance(value, str) else tuple(value)

    def plan(self) -> WritePlan:
        raise NotImplementedError

    def target_key(self) -> str:
        """Canonical identity of the target: two writers with one key write the same place."""
        plan = self.plan()
        if plan.table is not None:
            return f"{self.type_name}:{plan.table.lower()}"
        location = self.target_location()
        return location.key() if location is not None else f"{self.type_name}:{plan.path}"

    def target_location(self) -> PathLocation | None:
        """The filesystem location written, for the overlap checks; None for tables."""
        plan = self.plan()
        if plan.table is not None or plan.path is None:
            return None
        return canonical_path(plan.path)

    def describe(self) -> dict[str, Any]:
        plan = self.plan()
        out: dict[str, Any] = {"type": self.spec["type"]}
        if plan.path:  # what is shown (metrics, logs, plans, task docs) carries no s3a://KEY:SECRET@
            out["uri"] = strip_credentials(plan.path)
        if plan.table:
            out["table"] = plan.table
        return out

    def prepare(self, df: DataFrame) -> DataFrame:
        """Apply ``repartition`` / ``coalesce`` before writing."""
        repartition = self.spec.get("repartition")
        if isinstance(repartition, int):
            df = df.repartition(repartition)
        elif repartition:
            df = df.repartition(*repartition)
        if self.spec.get("coalesce"):
            df = df.coalesce(int(self.spec["coalesce"]))
        return df

    def begin_write(self, df: DataFrame) -> StagedWrite:
        """Begin writing ``df``; the returned :class:`StagedWrite` commits or discards it.

        A writer that stages (:meth:`can_stage`) writes the data aside here; one that holds the target's
        lease (:meth:`holds_lease`) takes it here. This default does neither: its commit is :meth:`write`,
        so a writer of another package that overrides only ``write`` keeps its own write."""
        return StagedWrite(lambda: self.write(df))

    def can_stage(self, spark: SparkSession) -> bool:
        """Whether :meth:`begin_write` writes the data aside on ``spark``'s session, so that a discard
        leaves the old data: a data-quality ``fail`` rule is then decided between the two; otherwise it
        aborts the write's job itself."""
        return False

    def holds_lease(self, spark: SparkSession) -> bool:
        """Whether one run at a time writes the target: a lease is taken by :meth:`begin_write` and held
        until the commit or discard (``spark_job.io.leases``)."""
        return False

    def write(self, df: DataFrame) -> None:
        """Write ``df`` to the target as :meth:`plan` says, with Spark's own semantics."""
        self.save(df, self.plan())

    def save(self, df: DataFrame, plan: WritePlan) -> None:
        """Hand ``df`` to Spark's writer as ``plan`` says."""
        writer = self.prepare(df).write
        if plan.format and plan.method != "insertInto":
            writer = writer.format(plan.format)
        writer = writer.options(**plan.options)
        if plan.method == "insertInto":
            writer.insertInto(str(plan.table), overwrite=plan.mode == "overwrite")
            return
        writer = writer.mode(plan.mode)
        if plan.partition_by:
            writer = writer.partitionBy(*plan.partition_by)
        if plan.method == "saveAsTable":
            writer.saveAsTable(str(plan.table))
        elif plan.path is not None:
            writer.save(plan.path)
        else:
            writer.save()


class StagingWriter(BaseWriter):
    """A writer whose :meth:`begin_write` does the work (stages aside, takes a lease): its ``write`` is a
    begun write committed at once. Subclasses implement ``begin_write``."""

    def begin_write(self, df: DataFrame) -> StagedWrite:
        plan = self.plan()
        return StagedWrite(lambda: self.save(df, plan))

    def write(self, df: DataFrame) -> None:
        """Write ``df`` to the target: :meth:`begin_write`, then commit."""
        self.begin_write(df).commit()


readers: Registry[BaseReader] = Registry("reader", "sparkpipe.readers")
writers: Registry[BaseWriter] = Registry("writer", "sparkpipe.writers")
