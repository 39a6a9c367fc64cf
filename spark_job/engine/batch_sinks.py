"""Where the batches of a new-files stream go, each exactly once: the batch's id is committed with its
rows in the target's own transaction, so a batch Spark runs again (the run was killed after the write
and before its checkpoint noted it) is recognised and skipped.

The first batch of a stream (id 0: a new checkpoint, the first run or a full refresh) replaces the target.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any

from spark_job.io.base import BaseWriter

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

BATCHES_TABLE = "sparkpipe_batches"
"""The table, in a JDBC target's schema, recording the stream batches committed to its tables."""


class BatchSink:
    """Writes one batch of a stream to a target exactly once."""

    def write(self, batch: DataFrame, batch_id: int, stream: str) -> int | None:
        """Write ``batch``; return its rows, or None when the target already holds it."""
        raise NotImplementedError


class JdbcBatches(BatchSink):
    """A JDBC table: the batch is staged, then copied into the table with a row of ``sparkpipe_batches``
    (stream, batch id) in one transaction; a batch whose row exists is skipped."""

    def __init__(self, spark: SparkSession, writer: BaseWriter) -> None:
        from spark_job.dialects import dialect_of
        from spark_job.io.swap import JdbcSwap

        self.writer = writer
        self.plan = writer.plan()
        self.swap = JdbcSwap(spark, self.plan.options)
        self.dialect = dialect_of(self.plan.options["url"])
        table = str(self.plan.options["dbtable"])
        schema = table.rsplit(".", 1)[0] + "." if "." in table else ""
        self.table = table
        self.batches = f"{schema}{BATCHES_TABLE}"

    def write(self, batch: DataFrame, batch_id: int, stream: str) -> int | None:
        from spark_job.io.swap import table_exists

        conn = self.swap.connect()
        try:
            stmt = conn.createStatement()
            if not table_exists(conn, self.batches):
                stmt.execute(
                    f"CREATE TABLE {self.batches} (stream VARCHAR(64) NOT NULL, target VARCHAR(512) NOT NULL, "
                    "batch_id BIGINT NOT NULL, PRIMARY KEY (stream, target, batch_id))"
                )
            if self._committed(conn, stream, batch_id):
                return None
            staged = {k: v for k, v in self.plan.options.items() if k != "truncate"}
            staged["dbtable"] = self.swap.staging
            self.writer.save(batch, dataclasses.replace(self.plan, mode="overwrite", options=staged))
            columns = ", ".join(self.dialect.quote(c) for c in batch.columns)
            exists = table_exists(conn, self.table)
            if not exists:
                stmt.execute(f"CREATE TABLE {self.table} AS SELECT {columns} FROM {self.swap.staging} WHERE 1 = 0")
            conn.setAutoCommit(False)
            try:
                if batch_id == 0:  # a new stream: its first batch replaces the target
                    stmt.execute(f"DELETE FROM {self.table}")
                rows = int(
                    stmt.executeUpdate(
                        f"INSERT INTO {self.table} ({columns}) SELECT {columns} FROM {self.swap.staging}"
                    )
                )
                insert = conn.prepareStatement(
                    f"INSERT INTO {self.batches} (stream, target, batch_id) VALUES (?, ?, ?)"
                )
                insert.setString(1, stream)
                insert.setString(2, self.table.lower())
                insert.setLong(3, batch_id)
                insert.executeUpdate()
                conn.commit()
            except Exception:
                conn.rollback()
                raise
            finally:
                conn.setAutoCommit(True)
            return rows
        finally:
            with contextlib.suppress(Exception):
                self.swap.drop_staging(conn)
            with contextlib.suppress(Exception):
                conn.close()

    def _committed(self, conn: Any, stream: str, batch_id: int) -> bool:
        query = conn.prepareStatement(f"SELECT 1 FROM {self.batches} WHERE stream = ? AND target = ? AND batch_id = ?")
        query.setString(1, stream)
        query.setString(2, self.table.lower())
        query.setLong(3, batch_id)
        found = query.executeQuery()
        try:
            return bool(found.next())
        finally:
            found.close()


class DeltaBatches(BatchSink):
    """A Delta table: each batch is a Delta commit carrying the stream as ``txnAppId`` and the batch id as
    ``txnVersion``, which Delta skips when that application already committed that version."""

    def __init__(self, writer: BaseWriter) -> None:
        self.writer = writer
        self.plan = writer.plan()

    def write(self, batch: DataFrame, batch_id: int, stream: str) -> int | None:
        spark = batch.sparkSession
        before = self._version(spark)
        options = {**self.plan.options, "txnAppId": stream, "txnVersion": str(batch_id)}
        mode = "overwrite" if batch_id == 0 else "append"
        self.writer.save(batch, dataclasses.replace(self.plan, format="delta", mode=mode, options=options))
        after = self._version(spark)
        if after == before:
            return None
        return self._rows(spark, after)

    def _version(self, spark: SparkSession) -> int | None:
        try:
            target = self.plan.path or self.plan.table
            row = spark.sql(f"DESCRIBE HISTORY delta.`{target}` LIMIT 1") if self.plan.path else None
            if row is None:
                row = spark.sql(f"DESCRIBE HISTORY {self.plan.table} LIMIT 1")
            first = row.first()
            return None if first is None else int(first["version"])
        except Exception:
            return None

    def _rows(self, spark: SparkSession, version: int | None) -> int:
        """The rows the commit wrote, from its own metrics (no second pass)."""
        target = f"delta.`{self.plan.path}`" if self.plan.path else str(self.plan.table)
        first = spark.sql(f"DESCRIBE HISTORY {target} LIMIT 1").first()
        metrics = {} if first is None else (first["operationMetrics"] or {})
        return int(metrics.get("numOutputRows") or 0)


def sink_for(spark: SparkSession, writer: BaseWriter) -> BatchSink:
    """The sink of a validated new-files sequence's target."""
    plan = writer.plan()
    if plan.format == "jdbc":
        return JdbcBatches(spark, writer)
    if (plan.format or "").lower() == "delta" or writer.spec.get("type") == "delta":
        return DeltaBatches(writer)
    raise ValueError(f"a {writer.spec.get('type')} target cannot take batches of new files exactly once")
