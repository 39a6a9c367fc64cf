"""Built-in writers: files in a format on any filesystem, BigQuery, JDBC and catalog tables."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from spark_job.config.fields import Field, url_port
from spark_job.config.merge import MERGE_FIELDS, MergeSpec, check_merge
from spark_job.config.targets import (
    canonical_catalog_table,
    canonical_jdbc_table,
    canonical_path,
    jdbc_subprotocol,
    jdbc_table_identity,
    links_remembered,
    split_identifier,
)
from spark_job.dialects import dialect_of
from spark_job.engine.capabilities import capabilities_of
from spark_job.io.base import (
    ATOMIC_FIELD,
    SAVE_MODES,
    BaseWriter,
    Report,
    StagedWrite,
    StagingWriter,
    WritePlan,
    check_jdbc_url,
    check_scheme,
    stringify,
    writers,
)
from spark_job.io.filesystems import Files, HadoopFiles, LocalFiles, local_path
from spark_job.io.incoming import MergeError, check_columns, prepare_incoming
from spark_job.io.jdbc_merge import CommitStep, JdbcMerge
from spark_job.io.leases import LEASE_TABLE, Lease, PathLease, PostgresLease, TableLease
from spark_job.io.swap import JdbcSwap, PathSwap, jdbc_driver, plain_table_name, spark_jdbc_url

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

PARTITION_OVERWRITE_CONF = "spark.sql.sources.partitionOverwriteMode"

PATH_FIELD = Field("str", required=True, doc="output directory on any filesystem Spark reaches")


def place_of(spark: SparkSession, uri: str) -> tuple[Files, str] | None:
    """The filesystem and qualified URI of a path target, or None when this client cannot reach it.

    A classic session qualifies the path with Hadoop (scheme-less paths go to the default FS) and
    handles ``file:`` targets with the standard library. A Spark Connect client has no JVM: ``file:``
    and absolute scheme-less paths are taken to be on a filesystem client and server share.
    """
    if not capabilities_of(spark).reaches_hadoop:
        location = canonical_path(uri)
        if location.scheme in ("", "file") and (uri.startswith("/") or uri.startswith("file:/")):
            return LocalFiles(), location.uri() if location.scheme else "file:" + location.uri()
        return None
    hadoop = HadoopFiles(spark, uri)
    qualified = hadoop.qualify(uri)
    if qualified.startswith("file:"):
        return LocalFiles(), "file:" + os.path.normpath(local_path(qualified))
    return hadoop, qualified


def refuse_reading_target(df: DataFrame, target: str) -> None:
    """Spark refuses to overwrite a path its query reads; writing to a staging folder would bypass that."""
    with links_remembered():
        where = canonical_path(target)
        inside = next((name for name in df.inputFiles() if where.contains(canonical_path(name))), None)
    if inside is not None:
        raise ValueError(
            f"the query reads {inside}, inside the target {target} it overwrites: write to another path, or read a copy"
        )


def leased_write(lease: Lease | PostgresLease, write: Callable[[], None], end: Callable[[], None]) -> StagedWrite:
    """A write Spark makes itself, nothing staged, under a lease already taken: the commit checks the
    lease is still this run's, writes, and ends (releases) either way; a discard only ends."""

    def commit() -> None:
        try:
            lease.verify()
            write()
        finally:
            end()

    return StagedWrite(commit, end)


def dynamic_overwrite(spark: SparkSession, plan: WritePlan) -> bool:
    """Whether Spark overwrites only the partitions written: the writer's option, else the session's."""
    mode = plan.options.get("partitionOverwriteMode")
    if mode is None:
        try:
            mode = spark.conf.get(PARTITION_OVERWRITE_CONF, "static")
        except Exception:  # a conf this session does not know: Spark's default
            mode = "static"
    return str(mode).strip().lower() == "dynamic" and bool(plan.partition_by) and plan.mode == "overwrite"


class PathWriter(StagingWriter):
    """Files in one format under a path; the format is the type name.

    ``overwrite`` writes beside the target and swaps the folders when the write committed (see
    ``spark_job.io.swap``); dynamic partition overwrite relies on Spark's own staging. Every write
    holds the target's lease (``spark_job.io.leases``) from ``begin_write`` to ``commit``/``discard``.
    """

    fields: ClassVar[dict[str, Field]] = {"path": PATH_FIELD, "atomic": ATOMIC_FIELD}
    schemes: ClassVar[tuple[str, ...] | None] = None

    @classmethod
    def check(cls, spec: Mapping[str, Any], report: Report) -> None:
        if cls.schemes:
            check_scheme(spec, "path", cls.schemes, report)
        mode = str((spec.get("options") or {}).get("partitionOverwriteMode", "")).lower()
        if (spec.get("dynamic_partition_overwrite") or mode == "dynamic") and not spec.get("partition_by"):
            key = "dynamic_partition_overwrite" if spec.get("dynamic_partition_overwrite") else "options"
            report(
                key,
                "dynamic partition overwrite replaces the partitions written and needs partition_by: "
                "add partition_by, or remove it to replace the whole target",
            )
        if spec.get("dynamic_partition_overwrite") and spec.get("mode", "overwrite") != "overwrite":
            report("dynamic_partition_overwrite", "applies to mode overwrite only")

    def format(self) -> str:
        return self.type_name

    def _swaps(self, spark: SparkSession, plan: WritePlan) -> bool:
        return plan.mode == "overwrite" and self.spec.get("atomic") is not False and not dynamic_overwrite(spark, plan)

    def can_stage(self, spark: SparkSession) -> bool:
        plan = self.plan()
        return place_of(spark, str(plan.path)) is not None and self._swaps(spark, plan)

    def holds_lease(self, spark: SparkSession) -> bool:
        return place_of(spark, str(self.plan().path)) is not None

    def begin_write(self, df: DataFrame) -> StagedWrite:
        plan = self.plan()
        spark = df.sparkSession
        place = place_of(spark, str(plan.path))
        if place is None:  # a Spark Connect client and a remote filesystem: Spark's own semantics
            return StagedWrite(lambda: self.save(df, plan))
        files, target = place
        lease = PathLease(files, target, spark)
        lease.acquire()
        try:
            swap = PathSwap(files, target)
            swap.recover()
            if not self._swaps(spark, plan):
                return leased_write(lease, lambda: self.save(df, plan), lambda: self._end(lease, swap))
            refuse_reading_target(df, target)
            self.save(df, dataclasses.replace(plan, path=swap.staging_uri))
        except BaseException:
            self._end(lease, locals().get("swap"))
            raise

        def commit() -> None:
            lease.verify()
            swap.commit()
            lease.release()

        return StagedWrite(commit, lambda: self._end(lease, swap))

    @staticmethod
    def _end(lease: PathLease, swap: PathSwap | None) -> None:
        try:
            if swap is not None:
                swap.discard()
                swap.drop_spark_staging()
        finally:
            lease.release()

    def plan(self) -> WritePlan:
        return WritePlan(
            format=self.format(),
            mode=self.mode,
            options=self.options(),
            path=str(self.spec["path"]),
            partition_by=self.partition_by(),
        )


for _fmt in ("parquet", "csv", "json", "orc", "avro"):
    writers.register(
        type(
            f"{_fmt.capitalize()}Writer",
            (PathWriter,),
            {"type_name": _fmt, "__doc__": f"{_fmt} files under a path.", "__module__": __name__},
        )
    )


class FormatPathWriter(PathWriter):
    """Files under a path in the format given by ``format`` (default parquet)."""

    fields: ClassVar[dict[str, Field]] = {
        "path": PATH_FIELD,
        "format": Field("str", doc="Spark format: parquet, csv, json, orc, avro, delta, ... (default parquet)"),
        "atomic": ATOMIC_FIELD,
    }

    def format(self) -> str:
        return str(self.spec.get("format", "parquet"))


@writers.register
class FileWriter(FormatPathWriter):
    """Files in a format under a path on any filesystem."""

    type_name = "file"


@writers.register
class GcsWriter(FormatPathWriter):
    """Files in a format on Google Cloud Storage (``gs://``)."""

    type_name = "gcs"
    schemes = ("gs",)


@writers.register
class S3Writer(FormatPathWriter):
    """Files in a format on Amazon S3 (``s3://``, ``s3a://``)."""

    type_name = "s3"
    schemes = ("s3", "s3a", "s3n")


@writers.register
class HdfsWriter(FormatPathWriter):
    """Files in a format on HDFS (``hdfs://``)."""

    type_name = "hdfs"
    schemes = ("hdfs",)


@writers.register
class BigQueryWriter(BaseWriter):
    """A BigQuery table through the spark-bigquery connector, direct or indirect (through GCS)."""

    type_name = "bigquery"
    fields: ClassVar[dict[str, Field]] = {
        "table": Field("str", required=True, doc="project.dataset.table"),
        "write_method": Field("str", choices=("direct", "indirect"), doc="default direct"),
        "temporary_gcs_bucket": Field("str", doc="bucket for the indirect method"),
        "project": Field("str", doc="project billed for the write (parentProject)"),
    }

    @classmethod
    def check(cls, spec: Mapping[str, Any], report: Report) -> None:
        if spec.get("write_method") == "indirect" and "temporary_gcs_bucket" not in spec:
            report("write_method", "the indirect method needs 'temporary_gcs_bucket'")
        bucket = spec.get("temporary_gcs_bucket")
        if isinstance(bucket, str) and bucket.startswith("gs://"):
            report(
                "temporary_gcs_bucket",
                f"give the bucket name without gs://, e.g. {bucket[5:].split('/')[0]!r}",
            )

    def plan(self) -> WritePlan:
        spec = self.spec
        method = str(spec.get("write_method", "indirect" if "temporary_gcs_bucket" in spec else "direct"))
        opts = {"table": str(spec["table"]), "writeMethod": method}
        if "temporary_gcs_bucket" in spec:
            opts["temporaryGcsBucket"] = str(spec["temporary_gcs_bucket"])
        if "project" in spec:
            opts["parentProject"] = str(spec["project"])
        partition = self.partition_by()
        if partition:
            # The connector partitions BigQuery tables by one column; Spark's partitionBy does not apply.
            opts["partitionField"] = partition[0]
        opts.update(self.options())
        return WritePlan(format="bigquery", mode=self.mode, options=opts, table=str(spec["table"]))


JDBC_MERGE_FIELDS: dict[str, Field] = {
    **{k: f for k, f in MERGE_FIELDS.items() if k != "scd2"},
    "merge_condition": Field(
        "str",
        sql="database",
        doc="with mode merge: an extra condition for updating or deleting a matched row, in the database's SQL over "
        "t (target) and s (incoming), e.g. t.updated_at < s.updated_at",
    ),
}


@writers.register
class JdbcWriter(StagingWriter):
    """A database table through JDBC; ``mode: merge`` upserts in one transaction (``spark_job.io.jdbc_merge``)."""

    type_name = "jdbc"
    modes: ClassVar[tuple[str, ...]] = (*SAVE_MODES, "merge")
    fields: ClassVar[dict[str, Field]] = {
        "url": Field("str", doc="JDBC URL (or give 'connection')", rule=url_port),
        "connection": Field("str", doc="an Airflow connection id; SparkPipelineOperator fills url, user, password"),
        "table": Field("str", required=True, doc="table to write"),
        "user": Field("str", doc="user name (use ${env:NAME})"),
        "password": Field("str", doc="password (use ${env:NAME}, never a literal)"),
        "driver": Field("str", doc="JDBC driver class"),
        "batchsize": Field("int", doc="rows per insert batch"),
        "truncate": Field("bool", doc="with overwrite, keep the table's definition: replace its rows only"),
        "atomic": ATOMIC_FIELD,
        "lease": Field(
            "str",
            choices=("advisory", "table"),
            doc="how a staged write keeps other runs out: a PostgreSQL advisory lock (its default) or a row "
            "of the sparkpipe_leases table (every other database; on PostgreSQL behind a transaction pooler)",
        ),
        **JDBC_MERGE_FIELDS,
    }

    @classmethod
    def check(cls, spec: Mapping[str, Any], report: Report) -> None:
        check_jdbc_url(spec, report)
        if spec.get("partition_by"):
            report("partition_by", "a JDBC target cannot be partitioned: remove partition_by")
        url = spec.get("url")
        known = isinstance(url, str) and "${" not in url
        if spec.get("lease") == "advisory" and known and jdbc_subprotocol(str(url)) != "postgresql":
            report("lease", "advisory locks are PostgreSQL's: use lease: table (the default elsewhere)")
        table = spec.get("table")
        if isinstance(table, str) and table.rsplit(".", 1)[-1].strip('"`[]').lower() == LEASE_TABLE:
            report("table", f"{LEASE_TABLE} holds the leases of JDBC targets: write another table")
        check_merge(spec, report)
        if spec.get("mode") == "merge":
            if isinstance(table, str) and "${" not in table and not plain_table_name(table):
                report("table", "mode merge needs a plain [schema.]table name (letters, digits, _ and $)")
            for key in ("truncate", "atomic"):
                if key in spec:
                    report(
                        key,
                        "applies to mode overwrite or append: a merge always runs in one transaction "
                        "from a staging table",
                    )

    def plan(self) -> WritePlan:
        spec = self.spec
        opts = {"url": spark_jdbc_url(str(spec["url"])), "dbtable": str(spec["table"])}
        for key in ("user", "password", "driver", "batchsize", "truncate"):
            if key in spec:
                opts[key] = stringify(spec[key])
        driver = jdbc_driver(opts["url"], opts.get("driver"))
        if driver:  # a driver jar given through spark.jars is invisible to DriverManager's lookup by URL
            opts["driver"] = driver
        opts.update(self.options())
        return WritePlan(format="jdbc", mode=self.mode, options=opts, table=str(spec["table"]))

    def add_commit_step(self, step: CommitStep) -> None:
        """Run ``step`` on the connection of the transaction that ends a staged write (overwrite, append, merge),
        just before it commits: what it writes commits with the rows or not at all."""
        self._commit_steps = [*getattr(self, "_commit_steps", []), step]

    def _lease(self, swap: JdbcSwap, conn: Any, spark: SparkSession) -> Lease | PostgresLease:
        table = str(self.spec["table"])
        default = "advisory" if dialect_of(str(self.spec["url"])).advisory_locks else "table"
        if self.spec.get("lease", default) == "advisory":
            return PostgresLease(conn, self.target_key(), table, spark)
        return TableLease(swap.connect(), self.target_key(), table, spark)

    def begin_write(self, df: DataFrame) -> StagedWrite:
        """overwrite and append go through a staging table and end in one transaction.

        The write holds the target's lease from here to the commit: on PostgreSQL an advisory lock
        on the connection that runs the commit, elsewhere (or with ``lease: table``) a row of the
        ``sparkpipe_leases`` table in the target's schema, kept on a connection of its own. A Spark
        Connect client has no JVM to run the transaction: Spark writes the target directly.
        """
        plan = self.plan()
        spark = df.sparkSession
        if self.mode == "merge":
            return self.begin_merge(df)
        if not self.holds_lease(spark):
            return StagedWrite(lambda: self.save(df, plan))
        swap = JdbcSwap(spark, plan.options)
        conn = swap.connect()
        lease: Lease | PostgresLease | None = None
        try:
            lease = self._lease(swap, conn, spark)
            lease.acquire()
            if not self.can_stage(spark):  # Spark writes the table itself (atomic: false, error, ignore)
                held = lease
                return leased_write(held, lambda: self.save(df, plan), lambda: self._end(swap, conn, held, drop=False))
            staged_options = {k: v for k, v in plan.options.items() if k != "truncate"}
            staged_options["dbtable"] = swap.staging
            self.save(df, dataclasses.replace(plan, mode="overwrite", options=staged_options))
        except BaseException:
            self._end(swap, conn, lease)
            raise

        def commit() -> None:
            if lease is not None:
                lease.verify()
            swap.commit(conn, plan.mode, keep_definition=bool(self.spec.get("truncate")), steps=self.commit_steps)
            self._end(swap, conn, lease, drop=False)

        return StagedWrite(commit, lambda: self._end(swap, conn, lease))

    @property
    def commit_steps(self) -> list[CommitStep]:
        return list(getattr(self, "_commit_steps", []))

    def begin_merge(self, df: DataFrame) -> StagedWrite:
        """``mode: merge``: under the target's lease, check the target (columns, unique keys) and the incoming
        rows (duplicate keys), stage the rows, and merge them in one transaction at the commit."""
        plan = self.plan()
        spark = df.sparkSession
        sequence = self.sequence or str(self.spec["table"])
        if not self.holds_lease(spark):
            raise MergeError(
                f"sequence {sequence}: mode merge into {self.spec['table']} runs its transaction through the JDBC "
                "driver in the Spark driver's JVM, which this session does not have (a Spark Connect client): "
                "run it with spark-submit or sparkpipe run"
            )
        merge = MergeSpec.of(self.spec)
        assert merge is not None
        swap = JdbcSwap(spark, plan.options)
        conn = swap.connect()
        lease: Lease | PostgresLease | None = None
        try:
            lease = self._lease(swap, conn, spark)
            lease.acquire()
            merging = JdbcMerge(
                plan.options["dbtable"], swap.staging, dialect_of(str(self.spec["url"])), merge, sequence
            )
            check_columns(df.columns, merge, sequence)  # the settings' columns, named before the target's
            merging.prepare(conn, df.columns)
            incoming = prepare_incoming(df, merge, sequence, check_duplicates=False)
            staged_options = {**plan.options, "dbtable": swap.staging}
            typed = merging.staging_types(incoming.schema)
            if typed:
                given = staged_options.get("createTableColumnTypes")
                staged_options["createTableColumnTypes"] = f"{given}, {typed}" if given else typed
            self.save(incoming, dataclasses.replace(plan, mode="overwrite", options=staged_options))
            merging.check_staged_keys(conn, incoming.columns)
        except BaseException:
            self._end(swap, conn, lease)
            raise
        columns = incoming.columns

        def commit() -> dict[str, int]:
            assert lease is not None
            lease.verify()
            counts = merging.commit(conn, columns, self.commit_steps)
            self._end(swap, conn, lease)
            return counts

        return StagedWrite(commit, lambda: self._end(swap, conn, lease))

    def can_stage(self, spark: SparkSession) -> bool:
        if self.mode == "merge":
            return self.holds_lease(spark)
        return self.holds_lease(spark) and self.mode in ("overwrite", "append") and self.spec.get("atomic") is not False

    def holds_lease(self, spark: SparkSession) -> bool:
        """Whether a lease guards the write: a plain table name (its lease table's schema is known)
        written through this session's JVM (a Spark Connect client has none)."""
        return plain_table_name(str(self.spec["table"])) and capabilities_of(spark).reaches_hadoop

    @staticmethod
    def _end(swap: JdbcSwap, conn: Any, lease: Lease | PostgresLease | None, drop: bool = True) -> None:
        # The database may be what failed; the next run replaces a staging table left behind anyway.
        try:
            if drop:
                with contextlib.suppress(Exception):
                    swap.drop_staging(conn)
            if lease is not None:
                lease.release()
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def target_key(self) -> str:
        url = self.spec.get("url")
        user = self.spec.get("user")
        options = self.spec.get("options") if isinstance(self.spec.get("options"), dict) else {}
        if isinstance(url, str):
            return jdbc_table_identity(url, str(self.spec["table"]), user, options)
        table = canonical_jdbc_table("", str(self.spec["table"]), user, options)
        return f"jdbc:connection:{self.spec.get('connection')}/{table}"

    def describe(self) -> dict[str, Any]:
        from spark_job.config.urls import strip_credentials

        # The URL may carry credentials (user info, ;password=, ?password=): what is shown has none.
        return {"type": "jdbc", "uri": strip_credentials(str(self.spec["url"])), "table": self.spec["table"]}


@writers.register
class TableWriter(StagingWriter):
    """A table of the session's catalog: ``saveAsTable`` or, with ``insert_into``, ``insertInto``."""

    type_name = "table"
    fields: ClassVar[dict[str, Field]] = {
        "table": Field("str", required=True, doc="[catalog.]database.table"),
        "format": Field("str", doc="table format for saveAsTable (default: the session's default)"),
        "insert_into": Field("bool", doc="insert into an existing table by column position (insertInto)"),
    }

    @classmethod
    def check(cls, spec: Mapping[str, Any], report: Report) -> None:
        if spec.get("insert_into") and spec.get("mode") in ("error", "ignore"):
            report("mode", "insert_into supports only overwrite or append")
        if spec.get("insert_into") and spec.get("partition_by"):
            report("partition_by", "insert_into uses the table's own partitioning: remove partition_by")

    def target_key(self) -> str:
        return "table:" + canonical_catalog_table(str(self.spec["table"]))

    def begin_write(self, df: DataFrame) -> StagedWrite:
        """Nothing is staged (the catalog's own semantics), but one run at a time writes a table of the
        session catalog: the lease is taken now and held until the write has ended."""
        plan = self.plan()
        lease = self.table_lease(df.sparkSession)
        if lease is None:
            return StagedWrite(lambda: self.save(df, plan))
        lease.acquire()
        return leased_write(lease, lambda: self.save(df, plan), lease.release)

    def holds_lease(self, spark: SparkSession) -> bool:
        return self.table_lease(spark) is not None

    def table_lease(self, spark: SparkSession) -> PathLease | None:
        """The lease of a session-catalog table: claims beside ``<database location>/<table>``, so runs
        writing one table by any spelling meet there. None for other catalogs (their tables have their
        own commit protocol), a database Spark does not know (the write then fails on its own), or a
        location this client cannot reach (a Spark Connect client and a remote filesystem)."""
        parts = [part.lower() for part, _ in split_identifier(str(self.spec["table"]))]
        if len(parts) == 3 and parts[0] != "spark_catalog":
            return None
        name = parts[-1]
        try:
            database = parts[-2] if len(parts) > 1 else spark.catalog.currentDatabase()
            location = str(spark.catalog.getDatabase(database).locationUri).rstrip("/")
        except Exception:
            return None
        place = place_of(spark, f"{location}/{name}") if name and "/" not in name else None
        if place is None:
            return None
        files, target = place
        return PathLease(files, target, spark, label=f"table {self.spec['table']} ({target})")

    def plan(self) -> WritePlan:
        return WritePlan(
            format=self.spec.get("format"),
            mode=self.mode,
            options=self.options(),
            table=str(self.spec["table"]),
            method="insertInto" if self.spec.get("insert_into") else "saveAsTable",
            partition_by=self.partition_by(),
        )
