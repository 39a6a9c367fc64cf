"""Built-in writers: files in a format on any filesystem, BigQuery, JDBC and catalog tables."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from spark_job.config.fields import Field
from spark_job.config.targets import (
    canonical_catalog_table,
    canonical_path,
    links_remembered,
    split_identifier,
)
from spark_job.engine.capabilities import capabilities_of
from spark_job.io.base import (
    ATOMIC_FIELD,
    BaseWriter,
    Report,
    StagedWrite,
    StagingWriter,
    WritePlan,
    check_scheme,
    writers,
)
from spark_job.io.filesystems import Files, HadoopFiles, LocalFiles, local_path
from spark_job.io.leases import Lease, PathLease, PostgresLease
from spark_job.io.swap import PathSwap

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
