"""Incremental runs of a sequence: a watermark derived from its committed target, and new files only.

A watermarked sequence (``spark_job.config.incremental.Watermark``) reads its source through a view of
its own holding only the rows beyond the highest value of the watermark column its target already
holds (minus the lookback): the watermark *is* the committed target's, so it advances exactly when
the rows do, in the target's own transaction. A sequence reading a source new files only runs its
query over Spark's file stream (``trigger(availableNow=True)``), each batch written once through
``foreachBatch`` with the batch's id committed in the target's transaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from spark_job.config.incremental import NewFiles, NewFilesFeed, Watermark
from spark_job.io import writers
from spark_job.io.base import BaseWriter

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from spark_job.config.model import SequenceSpec

log = logging.getLogger("sparkpipe")

CHECKPOINTS_SUFFIX = ".sparkpipe-checkpoints"
"""A path target's streams keep their checkpoints in ``.<name><suffix>/<sequence>`` beside it."""
_REPLACED = (
    "dynamic_partition_overwrite",
    "merge_keys",
    "merge_update_columns",
    "merge_exclude_columns",
    "merge_condition",
    "delete_when",
    "deduplicate",
    "on_schema_change",
    "scd2",
)


def quote_sql(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def incremental_query(query: str, alias: str, view: str) -> str:
    """``query`` reading ``view`` wherever it names ``alias``: a WITH clause of that name shadows the
    source's view for this query only, so sequences reading one source each see their own rows."""
    body = query.strip()
    while body.endswith(";"):
        body = body[:-1].rstrip()
    return f"WITH {quote_sql(alias)} AS (SELECT * FROM {quote_sql(view)})\nSELECT * FROM (\n{body}\n)"


def beyond(df: DataFrame, watermark: Watermark, before: Any, mode: str, functions: Any) -> DataFrame:
    """The rows of ``df`` (the source) a run reads when its target's watermark is ``before``: beyond it, less
    the lookback. In mode ``append`` strictly beyond (rows at the watermark are in the target); otherwise
    rows at it are read again, which a merge or an overwrite of their partition takes harmlessly."""
    F = functions
    bound = F.lit(before)
    if watermark.lookback is not None:
        bound = bound - F.expr(watermark.lookback.sql())
    column = F.col(quote_sql(watermark.column))
    return df.where(column > bound if mode == "append" else column >= bound)


def full_refresh_writer(target: Mapping[str, Any]) -> BaseWriter:
    """The writer replacing the whole target: mode overwrite, no partition or merge settings."""
    spec = {k: v for k, v in target.items() if k not in _REPLACED}
    spec["mode"] = "overwrite"
    options = {k: v for k, v in (spec.get("options") or {}).items() if k != "partitionOverwriteMode"}
    if "options" in spec:
        spec["options"] = options
    cls = writers.get(str(spec["type"]))
    assert cls is not None
    return cls(spec)


def json_value(value: Any) -> Any:
    """A watermark as the metrics document holds it."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def reader_of(spec: Mapping[str, Any]) -> Any:
    """The reader of a source's settings."""
    from spark_job.io import readers

    cls = readers.get(str(spec["type"]))
    assert cls is not None, "the config was not validated"
    return cls(spec)


# -- the target's watermark ------------------------------------------------------------------------


def target_watermark(spark: SparkSession, writer: BaseWriter, column: str) -> tuple[bool, Any]:
    """Whether the target exists, and the highest value of ``column`` it holds (None when empty)."""

    plan = writer.plan()
    if plan.format == "jdbc":
        return jdbc_watermark(spark, plan.options, column)
    lake = getattr(writer, "table", None)
    if plan.format in ("delta", "iceberg") and callable(lake):  # spark_job.io.lakehouse's writers
        table = lake()
        table.prepare(spark)
        if not table.exists(spark):
            return False, None
        return True, column_max(spark.table(table.name), column)
    if plan.table is not None and plan.path is None and plan.format not in ("delta", "iceberg"):
        if not spark.catalog.tableExists(plan.table):
            return False, None
        df = spark.table(plan.table)
    else:
        from spark_job.io.writers import place_of

        if plan.path is not None:
            place = place_of(spark, plan.path)
            if place is not None and not place[0].exists(place[1]):
                return False, None
        try:
            reader = spark.read.format(plan.format or "parquet")
            df = reader.load(plan.path) if plan.path is not None else spark.table(str(plan.table))
        except Exception as exc:
            if plan.path is None and "TABLE_OR_VIEW_NOT_FOUND" in str(exc):
                return False, None
            raise
    return True, column_max(df, column)


def column_max(df: DataFrame, column: str) -> Any:
    """The highest value of ``column`` in the target ``df`` (None when it is empty)."""
    from pyspark.sql import functions as F

    names = {f.name.lower(): f.name for f in df.schema.fields}
    if column.lower() not in names:
        raise ValueError(
            f"the target has no column {column!r} (its columns: {', '.join(names.values())}): the sequence's "
            "result must keep the watermark column, or name the target's with incremental.target_column"
        )
    row = df.agg(F.max(F.col(quote_sql(names[column.lower()]))).alias("w")).first()
    return None if row is None else row[0]


def jdbc_watermark(spark: SparkSession, options: Mapping[str, str], column: str) -> tuple[bool, Any]:
    """A JDBC target's watermark: ``SELECT MAX(column)`` run by the database (one row comes back)."""
    from spark_job.dialects import dialect_of
    from spark_job.io.swap import JdbcSwap, table_exists

    swap = JdbcSwap(spark, dict(options))
    conn = swap.connect()
    try:
        if not table_exists(conn, options["dbtable"]):
            return False, None
    finally:
        conn.close()
    quoted = dialect_of(options["url"]).quote(column)
    read = {k: v for k, v in options.items() if k in ("url", "user", "password", "driver")}
    read["query"] = f"SELECT MAX({quoted}) AS w FROM {options['dbtable']}"
    try:
        row = spark.read.format("jdbc").options(**read).load().first()
    except Exception as exc:
        raise ValueError(
            f"cannot read the highest {column!r} of the target {options['dbtable']}: {exc}; the sequence's "
            "result must keep the watermark column, or name the target's with incremental.target_column"
        ) from None
    return True, None if row is None else row[0]


# -- a watermarked sequence ------------------------------------------------------------------------


@dataclass
class WatermarkedRun:
    """The incremental part of one run of a watermarked sequence.

    Attributes:
        seq: the sequence.
        watermark: its incremental setting.
        writer: the writer of this run (the full-refresh one on a first or full-refresh run).
        query: the query of this run, reading the filtered view.
        before: the watermark found in the target (None: everything is read).
        full: whether this run reads everything and replaces the target.
        observation: counts the rows the filter let through.
    """

    seq: SequenceSpec
    watermark: Watermark
    writer: BaseWriter
    query: str
    before: Any
    full: bool
    observation: Any

    @classmethod
    def prepare(
        cls,
        spark: SparkSession,
        seq: SequenceSpec,
        full_refresh: bool,
        observation: Any,
        functions: Any,
    ) -> WatermarkedRun:
        """Find the watermark, register the sequence's view of its source, say which writer writes."""
        F = functions
        watermark: Watermark = seq.incremental
        exists, before = (False, None) if full_refresh else target_watermark(spark, seq.writer, watermark.target_column)
        full = full_refresh or not exists
        df = reader_of(watermark.source_spec).read(
            spark
        )  # the source itself, not the shared view: the filter reaches its scan
        if not full and before is not None:
            df = beyond(df, watermark, before, seq.writer.mode, F)
        view = f"sparkpipe_incremental_{seq.name}"
        df.observe(observation, F.count(F.lit(1)).alias("rows")).createOrReplaceTempView(view)
        writer = full_refresh_writer(seq.target) if full else seq.writer
        if hasattr(writer, "commit_properties"):  # Delta's userMetadata, Iceberg's snapshot properties
            writer.commit_properties = {
                "sparkpipe.incremental.column": watermark.target_column,
                "sparkpipe.incremental.read_from": "" if full else str(json_value(before)),
            }
        query = incremental_query(seq.query, watermark.source, view)
        if full:
            why = "--full-refresh" if full_refresh else "first run: the target does not exist"
            log.info("sparkpipe: sequence %s reads all of %s (%s)", seq.name, watermark.source, why)
        else:
            log.info(
                "sparkpipe: sequence %s reads %s beyond %s = %s", seq.name, watermark.source, watermark.column, before
            )
        return cls(seq, watermark, writer, query, before, full, observation)

    def metrics(self, spark: SparkSession, session: Any, tag: str) -> dict[str, Any]:
        """What the committed run says: the watermark before and after, the rows the filter let through."""
        observed = session.observed(self.observation, tag)
        rows = None if observed is None else int(observed.get("rows") or 0)
        _, after = target_watermark(spark, self.seq.writer, self.watermark.target_column)
        return {
            "source": self.watermark.source,
            "column": self.watermark.column,
            "full_refresh": self.full,
            "watermark_before": json_value(self.before),
            "watermark_after": json_value(after),
            "rows_read": rows,
        }


def checkpoint_of(seq: SequenceSpec, files: NewFiles) -> str:
    """Where the sequence's stream keeps its checkpoint: under the source's ``checkpoint`` folder, else
    beside a path target."""
    if files.checkpoint:
        return f"{files.checkpoint.rstrip('/')}/{seq.name}"
    path = str(seq.target["path"]).rstrip("/")
    parent, _, name = path.rpartition("/")
    return f"{parent}/.{name}{CHECKPOINTS_SUFFIX}/{seq.name}"


def stream_key(checkpoint: str, stream_id: str) -> str:
    """The stream's name in the target's records: one per checkpoint, new when it is started afresh."""
    return hashlib.sha256(f"{checkpoint}\n{stream_id}".encode()).hexdigest()[:40]


def checkpoint_id(spark: SparkSession, checkpoint: str) -> str:
    """The id Spark gave the checkpoint when it was made (its ``metadata`` file)."""
    row = spark.read.text(f"{checkpoint.rstrip('/')}/metadata", wholetext=True).first()
    return str(json.loads(str(row[0]).strip().splitlines()[0])["id"]) if row is not None else ""


def delete_checkpoint(spark: SparkSession, checkpoint: str) -> None:
    from spark_job.io.writers import place_of

    place = place_of(spark, checkpoint)
    if place is not None:
        place[0].delete(place[1])


# -- new files only --------------------------------------------------------------------------------


class NewFilesRun:
    """One run of a sequence reading a source new files only: its query over the source's file stream,
    each batch written once to the target, until the files present at the start are all taken.

    Args:
        spark: the run's session.
        seq: the sequence.
        feed: the source read new files only.
        full_refresh: start the stream afresh: every file is read and the first batch replaces the target.
    """

    def __init__(self, spark: SparkSession, seq: SequenceSpec, feed: NewFilesFeed, full_refresh: bool) -> None:
        from spark_job.engine.batch_sinks import sink_for

        files = NewFiles.of(feed.source_spec)
        assert files is not None
        self.spark, self.seq, self.feed, self.files = spark, seq, feed, files
        self.reader = reader_of(feed.source_spec)
        self.checkpoint = checkpoint_of(seq, files)
        self.full_refresh = full_refresh
        self.sink = sink_for(spark, seq.writer)
        self.rows = 0
        self.batches: list[int] = []
        self.skipped: list[int] = []

    def stream(self) -> DataFrame:
        plan = self.reader.plan()
        reader = self.spark.readStream.format(plan.format or "parquet").options(**plan.options)
        reader = reader.options(**self.files.stream_options()).schema(str(plan.schema))
        return reader.load(str(plan.path))

    def run(self, cancelled: Callable[[], str | None] = lambda: None) -> int:
        """Take every file that arrived since the last committed batch; return the rows written. The stream
        stops when ``cancelled`` says why (it is polled every second)."""
        if self.full_refresh:
            delete_checkpoint(self.spark, self.checkpoint)
        view = f"sparkpipe_new_files_{self.seq.name}"
        self.stream().createOrReplaceTempView(view)
        result = self.spark.sql(incremental_query(self.seq.query, self.feed.source, view))
        ids: list[str] = []

        def write(batch: DataFrame, batch_id: int) -> None:
            if not ids:  # the checkpoint's id exists once the query started
                ids.append(stream_key(self.checkpoint, checkpoint_id(batch.sparkSession, self.checkpoint)))
            written = self.sink.write(batch, int(batch_id), ids[0])
            if written is None:
                self.skipped.append(int(batch_id))
                log.info("sparkpipe: sequence %s: batch %s was committed by an earlier run", self.seq.name, batch_id)
                return
            self.rows += written
            self.batches.append(int(batch_id))

        writer = result.writeStream.foreachBatch(write).option("checkpointLocation", self.checkpoint)
        query = writer.trigger(availableNow=True).queryName(f"sparkpipe_{self.seq.name}").start()
        while not query.awaitTermination(1):
            why = cancelled()
            if why is not None:  # a batch in flight is not committed: the next run takes it again
                query.stop()
                raise RuntimeError(f"sequence {self.seq.name} was cancelled: {why}")
        self.input_rows = sum(int(p.get("numInputRows") or 0) for p in query.recentProgress if isinstance(p, dict))
        return self.rows

    def metrics(self) -> dict[str, Any]:
        return {
            "source": self.feed.source,
            "files": True,
            "checkpoint": self.checkpoint,
            "batches": self.batches,
            "batches_already_committed": self.skipped,
            "rows_read": getattr(self, "input_rows", None),
        }


class IncrementalPart:
    """What an incremental sequence's run adds to a ``SequenceRun``: the query over its new rows and the
    writer of this run (``prepare``), or the whole run over new files (``run_files``), and its metrics.

    Args:
        spark: the run's session.
        seq: the sequence (``seq.incremental`` set).
        session: the session's capabilities (observations, functions).
        name: the name of the observation counting the rows the filter let through.
    """

    def __init__(self, spark: SparkSession, seq: SequenceSpec, session: Any, name: str) -> None:
        self.spark, self.seq, self.session, self.name = spark, seq, session, name
        self.watermarked: WatermarkedRun | None = None

    @classmethod
    def of(cls, spark: SparkSession, seq: SequenceSpec, session: Any, name: str) -> IncrementalPart | None:
        return None if seq.incremental is None else cls(spark, seq, session, name)

    @property
    def reads_files(self) -> bool:
        return isinstance(self.seq.incremental, NewFilesFeed)

    def prepare(self) -> tuple[str, BaseWriter]:
        """The query of this run and the writer that writes its result."""
        watermark: Watermark = self.seq.incremental
        self.watermarked = WatermarkedRun.prepare(
            self.spark,
            self.seq,
            watermark.full_refresh,
            self.session.new_observation(self.name),
            self.session.functions,
        )
        return self.watermarked.query, self.watermarked.writer

    def committed(self, tag: str) -> dict[str, Any] | None:
        """The metrics of a committed watermarked run."""
        if self.watermarked is None:
            return None
        try:
            return self.watermarked.metrics(self.spark, self.session, tag)
        except Exception as exc:  # the rows are committed: a figure that cannot be read is no failure
            log.warning("sparkpipe: sequence %s: cannot read its watermark after the write: %s", self.seq.name, exc)
            return {"source": self.seq.incremental.source, "watermark_after": None}

    def run_files(self, metrics: Any, cancelled: Callable[[], str | None]) -> int:
        """Run the sequence over its source's new files; record the batches in ``metrics``."""
        feed: NewFilesFeed = self.seq.incremental
        run = NewFilesRun(self.spark, self.seq, feed, feed.full_refresh)
        try:
            return run.run(cancelled)
        finally:
            metrics.incremental = run.metrics()
