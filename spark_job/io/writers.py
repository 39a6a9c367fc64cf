"""Built-in writers: files in a format on any filesystem, BigQuery, JDBC and catalog tables."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from spark_job.fields import Field
from spark_job.io.base import ATOMIC_FIELD, BaseWriter, Report, WritePlan, check_jdbc_url, check_scheme, writers
from spark_job.io.swap import JdbcSwap, PathSwap, jdbc_driver, plain_table_name, staging_table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

PATH_FIELD = Field("str", required=True, doc="output directory on any filesystem Spark reaches")


class PathWriter(BaseWriter):
    """Files in one format under a path; the format is the type name.

    ``overwrite`` writes beside the target and swaps the folders when the write committed (see
    ``spark_job.io.swap``); dynamic partition overwrite relies on Spark's own staging.
    """

    fields: ClassVar[dict[str, Field]] = {"path": PATH_FIELD, "atomic": ATOMIC_FIELD}
    schemes: ClassVar[tuple[str, ...] | None] = None

    @classmethod
    def check(cls, spec: Mapping[str, Any], report: Report) -> None:
        if cls.schemes:
            check_scheme(spec, "path", cls.schemes, report)

    def format(self) -> str:
        return self.type_name

    def write(self, df: DataFrame) -> None:
        plan = self.plan()
        if (
            plan.mode != "overwrite"
            or self.spec.get("atomic") is False
            or plan.options.get("partitionOverwriteMode") == "dynamic"
        ):
            self.save(df, plan)
            return
        swap = PathSwap(df.sparkSession, str(plan.path))
        swap.recover()
        self.save(df, dataclasses.replace(plan, path=swap.staging_uri))
        swap.commit()

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
class JdbcWriter(BaseWriter):
    """A database table through JDBC."""

    type_name = "jdbc"
    fields: ClassVar[dict[str, Field]] = {
        "url": Field("str", doc="JDBC URL (or give 'connection')"),
        "connection": Field("str", doc="an Airflow connection id; SparkPipelineOperator fills url, user, password"),
        "table": Field("str", required=True, doc="table to write"),
        "user": Field("str", doc="user name (use ${env:NAME})"),
        "password": Field("str", doc="password (use ${env:NAME}, never a literal)"),
        "driver": Field("str", doc="JDBC driver class"),
        "batchsize": Field("int", doc="rows per insert batch"),
        "truncate": Field("bool", doc="with overwrite, keep the table's definition: replace its rows only"),
        "atomic": ATOMIC_FIELD,
    }

    @classmethod
    def check(cls, spec: Mapping[str, Any], report: Report) -> None:
        check_jdbc_url(spec, report)
        if spec.get("partition_by"):
            report("partition_by", "a JDBC target cannot be partitioned: remove partition_by")

    def plan(self) -> WritePlan:
        spec = self.spec
        opts = {"url": str(spec["url"]), "dbtable": str(spec["table"])}
        for key in ("user", "password", "driver", "batchsize", "truncate"):
            if key in spec:
                opts[key] = "true" if spec[key] is True else "false" if spec[key] is False else str(spec[key])
        driver = jdbc_driver(opts["url"], opts.get("driver"))
        if driver:  # a driver jar given through spark.jars is invisible to DriverManager's lookup by URL
            opts["driver"] = driver
        opts.update(self.options())
        return WritePlan(format="jdbc", mode=self.mode, options=opts, table=str(spec["table"]))

    def write(self, df: DataFrame) -> None:
        """overwrite and append go through a staging table and end in one transaction."""
        plan = self.plan()
        table = str(self.spec["table"])
        if plan.mode not in ("overwrite", "append") or self.spec.get("atomic") is False or not plain_table_name(table):
            self.save(df, plan)
            return
        swap = JdbcSwap(df.sparkSession, plan.options)
        staged_options = {k: v for k, v in plan.options.items() if k != "truncate"}
        staged_options["dbtable"] = staging_table(table)
        try:
            self.save(df, dataclasses.replace(plan, mode="overwrite", options=staged_options))
            swap.commit(plan.mode, keep_definition=bool(self.spec.get("truncate")))
        except BaseException:
            # The database may be what failed; the next run replaces the staging table anyway.
            with contextlib.suppress(Exception):
                swap.drop_staging()
            raise

    def target_key(self) -> str:
        where = self.spec.get("url") or f"connection:{self.spec.get('connection')}"
        return f"jdbc:{str(where).split('?', 1)[0]}/{str(self.spec['table']).lower()}"

    def describe(self) -> dict[str, Any]:
        from spark_job.urls import strip_credentials

        # The URL may carry credentials (user info, ;password=, ?password=): what is shown has none.
        return {"type": "jdbc", "uri": strip_credentials(str(self.spec["url"])), "table": self.spec["table"]}


@writers.register
class TableWriter(BaseWriter):
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

    def plan(self) -> WritePlan:
        return WritePlan(
            format=self.spec.get("format"),
            mode=self.mode,
            options=self.options(),
            table=str(self.spec["table"]),
            method="insertInto" if self.spec.get("insert_into") else "saveAsTable",
            partition_by=self.partition_by(),
        )
