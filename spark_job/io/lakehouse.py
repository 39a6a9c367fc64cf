"""Delta Lake and Apache Iceberg sources and targets, as path tables (``path:``) or catalog tables
(``table:``).

``overwrite`` and ``append`` are the format's own transaction: a version is either committed whole or
not at all, so no staging folder is swapped in. A write whose data-quality rules fail after it committed
is rolled back to the version before it (Delta ``RESTORE``, Iceberg ``rollback_to_snapshot``). Iceberg keeps
one schema per table, so an overwrite that changes an Iceberg table's columns or partitioning is written
aside (a table beside it) and replaces the target only at the commit.
``merge`` and ``scd2`` take the incoming rows in (cached, keys checked, rules counted) when the write
begins and run one MERGE at the commit (``spark_job.io.lake_merge``), so a failing rule merges nothing.
A Delta table on S3 whose log store does not serialise drivers is written under the target's lease
(``spark_job.io.lake_lease``), taken when the write begins and released when it ends.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from spark_job.config.fields import Field
from spark_job.config.lakehouse import FORMAT_NAMES
from spark_job.config.merge import MERGE_FIELDS, MERGE_MODES, SCD2_COLUMNS, MergeSpec, check_merge
from spark_job.config.paths import PathLocation
from spark_job.config.targets import canonical_catalog_table, canonical_path
from spark_job.io.base import (
    SAVE_MODES,
    BaseReader,
    BaseWriter,
    ReadPlan,
    Report,
    StagedWrite,
    WritePlan,
    check_one_of,
    readers,
    writers,
)
from spark_job.io.incoming import DELETE_FLAG, MergeError, prepare_incoming, schema_changes
from spark_job.io.lake_lease import delta_lease, under_lease
from spark_job.io.lake_merge import ACTION, by_name, merge_statement, pruning_condition, scd2_source, scd2_statement
from spark_job.io.lake_tables import LakeTable, quote
from spark_job.io.leases import Lease, TargetBusy

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("sparkpipe")

TABLE_FIELDS: dict[str, Field] = {
    "path": Field("str", doc="the table's folder on any filesystem Spark reaches (a path table)"),
    "table": Field("str", doc="the table's name in a catalog: [catalog.]namespace.table"),
}
WAREHOUSE_FIELD = Field(
    "str",
    doc="with table: <catalog>.<namespace>.<table>, the warehouse path sparkpipe makes <catalog> an Iceberg "
    "(Hadoop) catalog over, unless spark_conf configures that catalog",
)


def lake_table(fmt: str, spec: Mapping[str, Any]) -> LakeTable:
    return LakeTable(fmt, path=spec.get("path"), table=spec.get("table"))


def check_table(spec: Mapping[str, Any], fmt: str, report: Report) -> None:
    check_one_of(spec, ("path", "table"), report)
    if "warehouse" in spec and "table" not in spec:
        report("warehouse", "applies to a catalog table (table:): a path table needs no catalog")
    path = spec.get("path")
    if fmt == "iceberg" and isinstance(path, str) and "${" not in path:
        segments = [s for s in canonical_path(path).segments if s]
        if len(segments) < 3:
            report(
                "path", f"{path!r}: an Iceberg path table is at least three folders deep: <warehouse>/<folder>/<table>"
            )


class LakeReader(BaseReader):
    """A Delta or Iceberg table, at its current version or at ``version`` / ``timestamp`` (time travel)."""

    fields: ClassVar[dict[str, Field]] = {
        **TABLE_FIELDS,
        "version": Field("int", doc="read this version (Delta) or snapshot id (Iceberg) instead of the current one"),
        "timestamp": Field("str", doc="read the version current at this time, e.g. '2024-01-05 00:00:00'"),
    }

    @classmethod
    def check(cls, spec: Mapping[str, Any], report: Report) -> None:
        check_table(spec, cls.type_name, report)
        if "version" in spec and "timestamp" in spec:
            report("timestamp", "give either version or timestamp, not both")
        if "schema" in spec:
            report("schema", f"a {FORMAT_NAMES[cls.type_name]} table has its own schema: remove schema")

    def plan(self) -> ReadPlan:
        return ReadPlan(
            format=self.type_name,
            options=self.options(),
            path=self.spec.get("path"),
            table=self.spec.get("table"),
        )

    def source_location(self) -> PathLocation | None:
        path = self.spec.get("path")
        return canonical_path(path) if isinstance(path, str) and "${" not in path else None

    def read(self, spark: SparkSession) -> DataFrame:
        table = lake_table(self.type_name, self.spec)
        table.prepare(spark)
        travel = ""
        if self.spec.get("version") is not None:
            travel = f" VERSION AS OF {int(self.spec['version'])}"
        elif self.spec.get("timestamp") is not None:
            stamp = str(self.spec["timestamp"]).replace("\\", "\\\\").replace("'", "\\'")
            travel = f" TIMESTAMP AS OF '{stamp}'"
        return spark.sql(f"SELECT * FROM {table.name}{travel}")


@readers.register
class DeltaReader(LakeReader):
    """A Delta Lake table (``path`` or ``table``), optionally at a ``version`` or ``timestamp``."""

    type_name = "delta"


@readers.register
class IcebergReader(LakeReader):
    """An Apache Iceberg table (``path`` or ``table``), optionally at a snapshot ``version`` or ``timestamp``."""

    type_name = "iceberg"
    fields: ClassVar[dict[str, Field]] = {**LakeReader.fields, "warehouse": WAREHOUSE_FIELD}


class LakeWriter(BaseWriter):
    """A Delta or Iceberg table: ``overwrite``, ``append``, ``error``, ``ignore`` in the format's own
    transaction, ``merge`` and ``scd2`` through one MERGE.

    ``commit_properties`` (set before the write begins) are recorded with the commit: Delta's
    ``userMetadata`` (as JSON), Iceberg's snapshot properties; :meth:`committed_properties` reads them back.
    """

    modes: ClassVar[tuple[str, ...]] = SAVE_MODES + MERGE_MODES
    fields: ClassVar[dict[str, Field]] = {**TABLE_FIELDS, **MERGE_FIELDS}

    commit_properties: Mapping[str, str] = {}

    @classmethod
    def check(cls, spec: Mapping[str, Any], report: Report) -> None:
        check_table(spec, cls.type_name, report)
        check_merge(spec, report)
        if spec.get("dynamic_partition_overwrite"):
            if not spec.get("partition_by"):
                report("dynamic_partition_overwrite", "replaces the partitions written and needs partition_by")
            elif spec.get("mode", "overwrite") != "overwrite" and spec.get("mode") not in MERGE_MODES:
                report("dynamic_partition_overwrite", "applies to mode overwrite only")
        if spec.get("mode") == "scd2":
            lowered = {c.lower() for c in (spec.get("merge_keys") or [])}
            taken = [c for c in SCD2_COLUMNS if c in lowered]
            if taken:
                report("merge_keys", f"{taken[0]} is a column scd2 adds: name it otherwise")

    def table(self) -> LakeTable:
        return lake_table(self.type_name, self.spec)

    def plan(self) -> WritePlan:
        return WritePlan(
            format=self.type_name,
            mode=self.mode,
            options=self.options(),
            path=self.spec.get("path"),
            table=self.spec.get("table"),
            method="saveAsTable" if "table" in self.spec else "save",
            partition_by=self.partition_by(),
        )

    def target_key(self) -> str:
        if "table" in self.spec:  # the same table as a `table` target naming it
            return "table:" + canonical_catalog_table(str(self.spec["table"]))
        return super().target_key()

    def can_stage(self, spark: SparkSession) -> bool:
        """A merge stages its incoming rows (cached and checked) and merges at the commit; overwrite and
        append commit a version at once and roll it back on a discard."""
        return True

    def holds_lease(self, spark: SparkSession) -> bool:
        """A Delta table on S3 whose log store does not serialise drivers (``spark_job.io.lake_lease``)."""
        return delta_lease(spark, self.table()) is not None

    # -- overwrite, append, error, ignore --------------------------------------------------------
    def begin_write(self, df: DataFrame) -> StagedWrite:
        """Begin the write; where the table needs a lease (a Delta table on S3 without a DynamoDB log
        store), under the target's lease, taken first and held until the commit or discard."""
        spark = df.sparkSession
        table = self.table()
        table.prepare(spark)
        lease = delta_lease(spark, table)
        if lease is None:
            return self.begin_version(df, table, None)
        return under_lease(lease, lambda: self.begin_version(df, table, lease))

    def begin_version(self, df: DataFrame, table: LakeTable, lease: Lease | None) -> StagedWrite:
        """The write itself: ``overwrite`` and ``append`` commit their version now (a discard rolls it
        back), ``merge`` and ``scd2`` take their rows in (the commit merges). Under ``lease``, every later
        commit (the MERGE, a rollback) first checks the lease is still this run's."""
        spark = df.sparkSession
        if self.mode in MERGE_MODES:
            return self.begin_merge(df, table, lease)
        exists = table.exists(spark)  # Spark's analysis only: no job
        if exists and self.mode == "ignore":  # nothing is written, no job runs (the rows written are 0)
            return StagedWrite(lambda: None)
        if exists and self.mode == "error":
            raise ValueError(f"{table.describe()} already exists and the mode is error: nothing was written")
        before = table.version(spark) if exists else None
        prepared = self.prepare(df)
        if exists and self.replaces_shape(spark, prepared, table):
            return self.begin_replace(prepared, table)
        self.save_version(prepared, table, exists=exists)
        after = table.version(spark)

        def rollback() -> None:
            if lease is not None and not lease.held():  # a rollback is a commit too: only under the lease
                undo = f"restore version {before}" if before is not None else "drop the table"
                raise TargetBusy(
                    f"{table.describe()}: the lease of the table was lost while writing (another run may be "
                    f"writing it), so its version {after} was not rolled back: {undo} by hand if it must go"
                )
            table.rollback(spark, before, after)

        return StagedWrite(lambda: None, rollback)

    def replaces_shape(self, spark: SparkSession, df: DataFrame, table: LakeTable) -> bool:
        """Whether this write replaces an existing Iceberg table's columns or partitioning. Iceberg keeps a
        schema per table, not per snapshot: a replaced table rolled back to an older snapshot would show the
        old rows under the new columns. Such a write is staged instead (``begin_replace``)."""
        if self.type_name != "iceberg" or self.mode != "overwrite" or self.dynamic_overwrite():
            return False
        current = spark.sql(f"SELECT * FROM {table.name} LIMIT 0").schema
        shape = {(f.name, f.dataType.simpleString()) for f in current.fields}
        wanted = {(f.name, f.dataType.simpleString()) for f in df.schema.fields}
        return shape != wanted or table.partition_columns(spark) != list(self.partition_by())

    def begin_replace(self, df: DataFrame, table: LakeTable) -> StagedWrite:
        """Write the rows aside, as an Iceberg table beside the target; the commit replaces the target with
        them in one commit (its columns and partitioning included), a discard drops them: either way the
        target is never seen with another schema than its rows'."""
        spark = df.sparkSession
        catalog, name = table.catalog_and_name()
        staged = f"{catalog}.{name[:-1]}__sparkpipe_staged_{uuid.uuid4().hex[:12]}`"
        self._partitioned(df.writeTo(staged), self.partition_by()).using("iceberg").create()

        def drop() -> None:
            spark.sql(f"DROP TABLE IF EXISTS {staged} PURGE")

        def commit() -> None:
            try:
                self.save_version(spark.table(staged), table, exists=True)
            finally:
                drop()

        return StagedWrite(commit, drop)

    def dynamic_overwrite(self) -> bool:
        return (
            self.mode == "overwrite"
            and bool(self.partition_by())
            and (self.options().get("partitionOverwriteMode") == "dynamic")
        )

    def save_version(self, df: DataFrame, table: LakeTable, exists: bool, mode: str | None = None) -> None:
        """Write ``df`` as one new version of ``table`` in the format's own transaction (in ``mode``,
        default the target's)."""
        mode, partitions, props = mode or self.mode, self.partition_by(), dict(self.commit_properties)
        options = {k: v for k, v in self.options().items() if k != "partitionOverwriteMode"}
        dynamic = mode == self.mode and self.dynamic_overwrite()
        if self.type_name == "delta":
            if props:
                options["userMetadata"] = json.dumps(props, sort_keys=True)
        else:
            options.update({f"snapshot-property.{k}": v for k, v in props.items()})
        if self.type_name == "delta" and table.path is not None:  # a path table: Delta's own writer
            writer = df.write.format("delta").options(**options)
            if dynamic:
                writer = writer.option("partitionOverwriteMode", "dynamic")
            elif mode == "overwrite":
                writer = writer.option("overwriteSchema", "true")
            writer = writer.mode(mode)
            if partitions:
                writer = writer.partitionBy(*partitions)
            writer.save(table.path)
            return
        # a catalog table (or an Iceberg path table, named through its catalog): Spark's writer of tables
        v2 = df.writeTo(table.name).options(**options)
        if not exists:
            self._partitioned(v2, partitions).using(self.type_name).create()
        elif mode == "append":
            v2.append()
        elif dynamic and self.type_name == "iceberg":
            v2.overwritePartitions()
        elif dynamic:  # Delta replaces the partitions an INSERT OVERWRITE writes; columns put in the table's order
            spark = df.sparkSession
            order = by_name(df.columns, table.columns(spark))
            ordered = df.select(*[quote(order[c.lower()]) for c in table.columns(spark) if c.lower() in order])
            ordered.write.options(**options).option("partitionOverwriteMode", "dynamic").insertInto(
                str(table.table), overwrite=True
            )
        elif self.type_name == "iceberg" and not self.replaces_shape(df.sparkSession, df, table):
            from pyspark.sql import functions as F

            v2.overwrite(F.lit(True))  # a snapshot whose parent is the previous one: it rolls back exactly
        else:
            self._partitioned(v2, partitions).using(self.type_name).createOrReplace()

    @staticmethod
    def _partitioned(v2: Any, partitions: tuple[str, ...]) -> Any:
        if not partitions:
            return v2
        from pyspark.sql import functions as F

        return v2.partitionedBy(*[F.col(c) for c in partitions])

    def committed_properties(self, spark: SparkSession) -> dict[str, str]:
        """The properties the table's current version was committed with (see ``commit_properties``)."""
        table = self.table()
        table.prepare(spark)
        if not table.exists(spark):
            return {}
        if self.type_name == "delta":
            rows = spark.sql(f"DESCRIBE HISTORY {table.name} LIMIT 1").select("userMetadata").collect()
            text = rows[0][0] if rows else None
            return {str(k): str(v) for k, v in json.loads(text).items()} if text else {}
        return table.last_summary(spark)

    # -- merge, scd2 -----------------------------------------------------------------------------
    def begin_merge(self, df: DataFrame, table: LakeTable, lease: Lease | None = None) -> StagedWrite:
        """Take the incoming rows in: cached and fixed, keys checked (the job that also counts the rules' failures),
        the columns compared with the target's under ``on_schema_change``, the partitions they touch found.
        The commit runs the one MERGE (or creates the table from them), after checking ``lease`` is still
        this run's; a discard merges nothing."""
        spark = df.sparkSession
        merge = MergeSpec.of(self.spec)
        assert merge is not None
        sequence = self.sequence or table.describe()
        where = f"sequence {sequence}: {table.describe()}"
        cached = df.persist()
        try:
            incoming = prepare_incoming(cached, merge, sequence)
            if merge.latest_by:  # no key check ran: one job takes the rows in (and counts the rules)
                cached.count()
            incoming = prepare_incoming(self.fixed(cached), merge, sequence, check_duplicates=False)
            exists = table.exists(spark)
            target_columns = table.columns(spark) if exists else []
            data_columns = [c for c in target_columns if merge.mode != "scd2" or c.lower() not in SCD2_COLUMNS]
            if merge.mode == "scd2" and exists:
                missing = [c for c in SCD2_COLUMNS if c not in {t.lower() for t in target_columns}]
                if missing:
                    raise MergeError(f"{where} has no {', '.join(missing)} column: it is not an scd2 table")
            changes = (
                schema_changes(incoming.columns, data_columns, merge.on_schema_change, where=where, keys=merge.keys)
                if exists
                else None
            )
            partitions = table.partition_columns(spark) if exists else list(self.partition_by())
            pruning = self.touched_partitions(incoming, partitions, merge)
        except BaseException:
            cached.unpersist()
            raise

        def commit() -> dict[str, int]:
            try:
                if lease is not None:
                    lease.verify()
                if changes:
                    self.change_columns(spark, table, changes, incoming)
                if not exists:
                    return self.create_from(incoming, table, merge)
                columns = table.columns(spark)
                if merge.mode == "merge":
                    return self.merge_into(spark, table, incoming, columns, merge, pruning)
                return self.scd2_into(spark, table, incoming, columns, merge, pruning)
            finally:
                cached.unpersist()

        def discard() -> None:
            cached.unpersist()

        return StagedWrite(commit, discard)

    @staticmethod
    def fixed(cached: DataFrame) -> DataFrame:
        """The cached incoming rows (taken in by the job that checked their keys and counted the rules)
        fixed as they are, for the MERGE to read: a plan with ``uuid()``, ``rand()`` or another
        non-deterministic expression must never run again (Delta's MERGE reads its source twice, a lost
        cache block would be computed anew; Iceberg refuses such a source on Spark 3.5). The first job
        reading them copies the cached rows; where a session cannot fix rows (a Spark Connect 3.5 client)
        the cache is read."""
        from spark_job.engine.capabilities import NotComputedOnce, capabilities_of

        try:  # copied from the cache by the first job that reads it: no job of its own
            return capabilities_of(cached.sparkSession).computed_once(cached)
        except NotComputedOnce:
            return cached

    @staticmethod
    def touched_partitions(incoming: DataFrame, partitions: list[str], merge: MergeSpec) -> str:
        """The condition restricting the target to the partitions the incoming rows touch: only when
        every partition column is a merge key (a row never moves partition then), else empty."""
        keys = {k.lower() for k in merge.keys}
        if not partitions or not all(p.lower() in keys for p in partitions):
            return ""
        names = by_name(incoming.columns, partitions)
        if len(names) != len(partitions):
            return ""
        values = incoming.select(*[quote(names[p.lower()]) for p in partitions]).distinct().limit(2001).collect()
        return pruning_condition(partitions, [tuple(r) for r in values])

    def change_columns(self, spark: SparkSession, table: LakeTable, changes: Any, incoming: DataFrame) -> None:
        """Add the new columns (and, with ``sync``, drop the ones the rows lack) before merging."""
        types = {f.name.lower(): f.dataType.simpleString() for f in incoming.schema.fields}
        if changes.added:
            added = ", ".join(f"{quote(c)} {types[c.lower()]}" for c in changes.added)
            spark.sql(f"ALTER TABLE {table.name} ADD COLUMNS ({added})")
        if changes.dropped:
            if self.type_name == "delta":  # dropping a column needs Delta's column mapping by name
                spark.sql(
                    f"ALTER TABLE {table.name} SET TBLPROPERTIES ('delta.columnMapping.mode' = 'name', "
                    "'delta.minReaderVersion' = '2', 'delta.minWriterVersion' = '5')"
                )
            for column in changes.dropped:
                spark.sql(f"ALTER TABLE {table.name} DROP COLUMN {quote(column)}")
        log.warning(
            "sparkpipe: %s: columns added %s, dropped %s (on_schema_change)",
            table.describe(),
            list(changes.added),
            list(changes.dropped),
        )

    def create_from(self, incoming: DataFrame, table: LakeTable, merge: MergeSpec) -> dict[str, int]:
        """A target that does not exist yet is created from the first run's rows."""
        from pyspark.sql import functions as F

        rows = incoming
        if merge.mode == "scd2":
            rows = scd2_source(incoming, None, merge, self.run_time())
            rows = rows.drop(ACTION)
        elif DELETE_FLAG in rows.columns:
            rows = rows.where(F.col(DELETE_FLAG) == 0).drop(DELETE_FLAG)
        counted = rows.persist()
        try:
            inserted = counted.count()
            self.save_version(counted, table, exists=False, mode="error")  # created, never replaced
        finally:
            counted.unpersist()
        return {"rows_inserted": inserted, "rows_updated": 0, "rows_deleted": 0}

    def run_time(self) -> dt.datetime:
        return dt.datetime.now().replace(microsecond=0)

    def merge_into(
        self,
        spark: SparkSession,
        table: LakeTable,
        incoming: DataFrame,
        columns: list[str],
        merge: MergeSpec,
        pruning: str,
    ) -> dict[str, int]:
        view = f"sparkpipe_merge_{uuid.uuid4().hex[:12]}"
        incoming.createOrReplaceTempView(view)
        try:
            before = table.last_summary(spark) if self.type_name == "iceberg" else {}
            statement = merge_statement(table.name, view, incoming.columns, columns, merge, pruning)
            result = self.run_merge(spark, statement)
            if self.type_name == "delta":
                row = result[0].asDict() if result else {}
                return {
                    "rows_inserted": int(row.get("num_inserted_rows") or 0),
                    "rows_updated": int(row.get("num_updated_rows") or 0),
                    "rows_deleted": int(row.get("num_deleted_rows") or 0),
                }
            return self.iceberg_counts(spark, table, incoming, merge, before)
        finally:
            spark.catalog.dropTempView(view)

    def run_merge(self, spark: SparkSession, statement: str) -> list[Any]:
        if self.type_name == "delta" and self.commit_properties:
            key = "spark.databricks.delta.commitInfo.userMetadata"
            spark.conf.set(key, json.dumps(dict(self.commit_properties), sort_keys=True))
            try:
                return spark.sql(statement).collect()
            finally:
                spark.conf.unset(key)
        return spark.sql(statement).collect()

    @staticmethod
    def iceberg_counts(
        spark: SparkSession, table: LakeTable, incoming: DataFrame, merge: MergeSpec, before: Mapping[str, str]
    ) -> dict[str, int]:
        """Iceberg's snapshot summary gives the change of the table's row count: without ``delete_when``
        and ``merge_condition`` every incoming row is inserted or updates its key, which fixes the three
        counts; otherwise they are not known (left out of the metrics)."""
        after = table.last_summary(spark)
        if merge.delete_when or merge.condition or "total-records" not in after:
            return {}
        grown = int(after["total-records"]) - int(before.get("total-records", 0))
        taken = incoming.count()  # the cached rows: no second pass over the query
        return {"rows_inserted": grown, "rows_updated": taken - grown, "rows_deleted": 0}

    def scd2_into(
        self,
        spark: SparkSession,
        table: LakeTable,
        incoming: DataFrame,
        columns: list[str],
        merge: MergeSpec,
        pruning: str,
    ) -> dict[str, int]:
        from pyspark.sql import functions as F

        names = by_name(columns, [c for c in incoming.columns if c != DELETE_FLAG])
        keys = [names[k.lower()] for k in merge.keys]
        touched = incoming.select(
            *[
                F.col(quote(c)).alias(names[c.lower()])
                for c in incoming.columns
                if c.lower() in {k.lower() for k in keys}
            ]
        )
        current = spark.sql(f"SELECT * FROM {table.name} t WHERE TRUE{pruning}").join(
            touched.distinct(), on=keys, how="left_semi"
        )
        source = scd2_source(incoming, current, merge, self.run_time(), names).persist()
        view = f"sparkpipe_scd2_{uuid.uuid4().hex[:12]}"
        try:
            counted = source.groupBy(ACTION).count().collect()
            counts = {str(r[0]): int(r[1]) for r in counted}
            source.drop(ACTION).createOrReplaceTempView(view)
            # the source's columns: a target column the rows lack (append_new_columns) is left as it is
            written = [c for c in source.columns if c != ACTION]
            self.run_merge(spark, scd2_statement(table.name, view, written, keys, pruning))
        finally:
            spark.catalog.dropTempView(view)
            source.unpersist()
        return {
            "rows_inserted": counts.get("insert", 0),
            "rows_updated": counts.get("update", 0),
            "rows_deleted": counts.get("delete", 0),
        }


@writers.register
class DeltaWriter(LakeWriter):
    """A Delta Lake table (``path`` or ``table``); modes overwrite, append, error, ignore, merge, scd2."""

    type_name = "delta"


@writers.register
class IcebergWriter(LakeWriter):
    """An Apache Iceberg table (``path`` or ``table``); modes overwrite, append, error, ignore, merge, scd2."""

    type_name = "iceberg"
    fields: ClassVar[dict[str, Field]] = {**LakeWriter.fields, "warehouse": WAREHOUSE_FIELD}
