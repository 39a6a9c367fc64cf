"""How the sequences reading a sequence get its result: read back from the committed target, kept in
memory until the last of them ran, or its query run again (``ResultSharing``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from enum import Enum
from typing import TYPE_CHECKING

from spark_job.engine.capabilities import capabilities_of
from spark_job.quality import SequenceRules

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from spark_job.config.graph import SequenceGraph
    from spark_job.config.validation import SequenceSpec

READ_BACK_FORMATS = frozenset({"parquet", "orc", "delta", "iceberg"})
"""Target formats a committed result is read back from with its types intact."""

Setting = Callable[[str], "str | None"]
"""``setting(key)``: a Spark setting as the run sees it (the config's, else the session's)."""


class ResultSharing(str, Enum):
    """How the readers of a sequence get its result."""

    READ_BACK = "read_back"
    """The committed target, read again after the commit (a columnar scan instead of a cache)."""
    PERSIST = "persist"
    """Kept by Spark (``persist``) until the last reader finished."""
    RECOMPUTE = "recompute"
    """The query again, for each reader."""

    def __str__(self) -> str:
        return self.value


def sharing_of(seq: SequenceSpec, setting: Setting) -> ResultSharing:
    """``cache: true`` persists and ``cache: false`` recomputes; by default a target Spark reads back with
    its types intact (columnar files, tables, replaced whole) is read back, which costs a file listing for
    a small result and spares memory and spill for a large one; anything else persists."""
    if seq.cache is not None:
        return ResultSharing.PERSIST if seq.cache else ResultSharing.RECOMPUTE
    return ResultSharing.READ_BACK if can_read_back(seq, setting) else ResultSharing.PERSIST


def can_read_back(seq: SequenceSpec, setting: Setting) -> bool:
    """Whether the target holds exactly the sequence's result once written, in a typed format."""
    plan = seq.writer.plan()
    if plan.mode != "overwrite":
        return False  # append keeps earlier rows; error/ignore may leave someone else's data
    if plan.partition_by:
        dynamic = plan.options.get("partitionOverwriteMode") or setting("spark.sql.sources.partitionOverwriteMode")
        if str(dynamic).lower() == "dynamic":
            return False  # only the partitions written are replaced: the others remain
    if plan.table is not None and plan.method in ("saveAsTable", "insertInto"):
        return True
    return plan.path is not None and (plan.format or "").lower() in READ_BACK_FORMATS


def committed_result(spark: SparkSession, seq: SequenceSpec, setting: Setting) -> DataFrame:
    """What a committed sequence wrote: read back from a columnar target it replaced, else its query
    again (an appended target holds earlier rows too; text formats would change the types)."""
    plan = seq.writer.plan()
    query = SequenceRules(seq, capabilities_of(spark).functions).kept(spark.sql(seq.query))
    if not can_read_back(seq, setting):
        return query
    if plan.table is not None and plan.method in ("saveAsTable", "insertInto"):
        return spark.read.table(plan.table).select(*query.columns)
    if plan.path is not None and (plan.format or "").lower() in READ_BACK_FORMATS:
        # The query's own schema: partition columns keep their type and place.
        reader = spark.read.format(str(plan.format)).schema(query.schema)
        return reader.load(plan.path).select(*query.columns)
    return query


class SharedResults:
    """The results of a run kept in memory for the sequences reading them: each is released
    (``unpersist``) once the last of its readers finished, succeeded or not (a skipped reader counts).

    Args:
        graph: the sequences and what each reads.
        sequences: the sequences by name.
        setting: a Spark setting as the run sees it.
    """

    def __init__(self, graph: SequenceGraph, sequences: Mapping[str, SequenceSpec], setting: Setting) -> None:
        self.graph = graph
        self.sequences = sequences
        self.setting = setting
        self.readers_left = {name: 0 for name in graph.names}
        for name in graph.names:
            for dependency in graph.depends_on[name]:
                self.readers_left[dependency] += 1
        self.kept: dict[str, DataFrame] = {}
        self._lock = threading.Lock()

    def sharing(self, name: str) -> ResultSharing | None:
        """How the readers of ``name`` get its result; None when no sequence reads it."""
        return sharing_of(self.sequences[name], self.setting) if self.readers_left[name] else None

    def keep(self, name: str, result: DataFrame) -> None:
        with self._lock:
            self.kept[name] = result

    def finished(self, name: str) -> None:
        """``name`` finished: release what it was the last reader of."""
        for dependency in self.graph.depends_on[name]:
            self.readers_left[dependency] -= 1
            if self.readers_left[dependency] == 0:
                self.release(dependency)

    def release(self, name: str) -> None:
        with self._lock:
            result = self.kept.pop(name, None)
        if result is not None:
            result.unpersist()

    def release_all(self) -> None:
        for name in list(self.kept):
            self.release(name)
