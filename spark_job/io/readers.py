"""Built-in readers: files on any Hadoop filesystem, JDBC, BigQuery and catalog tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from spark_job.config.fields import Field, url_port
from spark_job.config.incremental import NEW_FILES_FIELD, check_new_files
from spark_job.config.paths import PathLocation, PathResolver, glob_prefix
from spark_job.io.base import BaseReader, ReadPlan, Report, check_jdbc_url, check_one_of, check_scheme, readers
from spark_job.io.swap import jdbc_driver, spark_jdbc_url

FILE_FORMATS = ("parquet", "csv", "json", "orc", "avro", "text")
"""Formats named in the docs; any other Spark format name (delta, iceberg, ...) passes through."""


@readers.register
class FileReader(BaseReader):
    """Files under a path on any filesystem Spark reaches: local, ``hdfs://``, ``gs://``, ``s3a://``."""

    type_name = "file"
    fields: ClassVar[dict[str, Field]] = {
        "path": Field("str", required=True, doc="file or directory (globs allowed)"),
        "format": Field("str", doc=f"Spark format: {', '.join(FILE_FORMATS)} or any other (default parquet)"),
        "incremental": NEW_FILES_FIELD,
    }
    schemes: ClassVar[tuple[str, ...] | None] = None

    @classmethod
    def check(cls, spec: Mapping[str, Any], report: Report) -> None:
        if cls.schemes:
            check_scheme(spec, "path", cls.schemes, report)
        check_new_files(spec, report)

    def plan(self) -> ReadPlan:
        return ReadPlan(
            format=str(self.spec.get("format", "parquet")),
            options=self.options(),
            path=str(self.spec["path"]),
            schema=self.spec.get("schema"),
        )

    def source_location(self, paths: PathResolver | None = None) -> PathLocation | None:
        """The location read (a glob's fixed prefix), read by ``paths`` (default: no default filesystem
        known); None while the path holds a reference kept for the driver."""
        path = self.spec.get("path")
        if not isinstance(path, str) or not path or "${" in path:
            return None
        return (paths or PathResolver()).canonical(glob_prefix(path) or ".")


@readers.register
class HdfsReader(FileReader):
    """Files on HDFS (``hdfs://``)."""

    type_name = "hdfs"
    schemes = ("hdfs",)


@readers.register
class GcsReader(FileReader):
    """Files on Google Cloud Storage (``gs://``)."""

    type_name = "gcs"
    schemes = ("gs",)


@readers.register
class S3Reader(FileReader):
    """Files on Amazon S3 (``s3://``, ``s3a://``)."""

    type_name = "s3"
    schemes = ("s3", "s3a", "s3n")


JDBC_PARTITION_KEYS = ("partition_column", "lower_bound", "upper_bound", "num_partitions")


@readers.register
class JdbcReader(BaseReader):
    """A table or query of a database through JDBC, optionally read in parallel partitions."""

    type_name = "jdbc"
    fields: ClassVar[dict[str, Field]] = {
        "url": Field("str", doc="JDBC URL, e.g. jdbc:postgresql://host:5432/db (or give 'connection')", rule=url_port),
        "connection": Field("str", doc="an Airflow connection id; SparkPipelineOperator fills url, user, password"),
        "table": Field("str", doc="table to read"),
        "query": Field("str", doc="query to read instead of a table"),
        "user": Field("str", doc="user name (use ${env:NAME})"),
        "password": Field("str", doc="password (use ${env:NAME}, never a literal)"),
        "driver": Field("str", doc="JDBC driver class, e.g. org.postgresql.Driver"),
        "partition_column": Field("str", doc="numeric, date or timestamp column to split the read on"),
        "lower_bound": Field("scalar", doc="lowest value of partition_column"),
        "upper_bound": Field("scalar", doc="highest value of partition_column"),
        "num_partitions": Field("int", doc="number of parallel reads"),
        "fetchsize": Field("int", doc="rows fetched per round trip"),
    }

    @classmethod
    def check(cls, spec: Mapping[str, Any], report: Report) -> None:
        check_jdbc_url(spec, report)
        check_one_of(spec, ("table", "query"), report)
        given = [k for k in JDBC_PARTITION_KEYS if k in spec]
        if given and len(given) != len(JDBC_PARTITION_KEYS):
            missing = [k for k in JDBC_PARTITION_KEYS if k not in spec]
            report(given[0], f"a partitioned read also needs {', '.join(missing)}")
        if given and "query" in spec:
            report("partition_column", "Spark cannot partition a 'query' read: use 'table' (a subquery works)")

    def plan(self) -> ReadPlan:
        spec = self.spec
        opts = {"url": spark_jdbc_url(str(spec["url"]))}
        if "table" in spec:
            opts["dbtable"] = str(spec["table"])
        else:
            opts["query"] = str(spec["query"])
        names = {
            "user": "user",
            "password": "password",
            "driver": "driver",
            "partition_column": "partitionColumn",
            "lower_bound": "lowerBound",
            "upper_bound": "upperBound",
            "num_partitions": "numPartitions",
            "fetchsize": "fetchsize",
        }
        opts.update({spark_name: str(spec[key]) for key, spark_name in names.items() if key in spec})
        driver = jdbc_driver(opts["url"], opts.get("driver"))
        if driver:  # a driver jar given through spark.jars is invisible to DriverManager's lookup by URL
            opts["driver"] = driver
        opts.update(self.options())
        return ReadPlan(format="jdbc", options=opts, schema=None)

    def describe(self) -> dict[str, Any]:
        from spark_job.config.urls import strip_credentials

        # The URL may carry credentials (user info, ;password=, ?password=): what is shown has none.
        return {
            "type": "jdbc",
            "uri": strip_credentials(str(self.spec["url"])),
            "table": self.spec.get("table", "(query)"),
        }


@readers.register
class BigQueryReader(BaseReader):
    """A BigQuery table or query through the spark-bigquery connector."""

    type_name = "bigquery"
    fields: ClassVar[dict[str, Field]] = {
        "table": Field("str", doc="project.dataset.table"),
        "query": Field("str", doc="standard SQL query, materialised in materialization_dataset"),
        "project": Field("str", doc="project billed for the read (parentProject)"),
        "materialization_dataset": Field("str", doc="dataset for query results (required with query)"),
        "filter": Field("str", doc="row filter pushed down to BigQuery"),
    }

    @classmethod
    def check(cls, spec: Mapping[str, Any], report: Report) -> None:
        check_one_of(spec, ("table", "query"), report)
        if "query" in spec and "materialization_dataset" not in spec:
            report("query", "a BigQuery query read needs 'materialization_dataset' (a dataset for its results)")

    def plan(self) -> ReadPlan:
        spec = self.spec
        opts: dict[str, str] = {}
        path = None
        if "table" in spec:
            path = str(spec["table"])
        else:
            opts["query"] = str(spec["query"])
            opts["viewsEnabled"] = "true"
            opts["materializationDataset"] = str(spec["materialization_dataset"])
        if "project" in spec:
            opts["parentProject"] = str(spec["project"])
        if "filter" in spec:
            opts["filter"] = str(spec["filter"])
        opts.update(self.options())
        return ReadPlan(format="bigquery", options=opts, path=path)

    def describe(self) -> dict[str, Any]:
        return {"type": "bigquery", "table": self.spec.get("table", "(query)")}


@readers.register
class TableReader(BaseReader):
    """A table of the session's catalog (Hive metastore, Glue, Unity, Iceberg/Delta catalogs...)."""

    type_name = "table"
    fields: ClassVar[dict[str, Field]] = {"table": Field("str", required=True, doc="[catalog.]database.table")}

    def plan(self) -> ReadPlan:
        return ReadPlan(format=None, options=self.options(), table=str(self.spec["table"]))
