"""A connector's jar missing from the session: the error says which artifact to add for the running Spark."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark import __version__ as pyspark_version

from spark_job.config.connectors import how_to_add, missing_connector
from spark_job.errors import connector_advice, short_error


def _no_mask(text: str) -> str:
    return text


def test_reading_s3a_without_hadoop_aws_names_the_artifact(spark) -> None:
    with pytest.raises(Exception) as err:
        spark.read.parquet("s3a://no-such-bucket/events")
    message = short_error(err.value, _no_mask)
    assert f"the s3 connector is missing: {how_to_add('s3', pyspark_version)}" in message
    assert "org.apache.hadoop:hadoop-aws:" in message


def test_reading_gs_without_the_gcs_connector_names_the_artifact(spark) -> None:
    with pytest.raises(Exception) as err:
        spark.read.parquet("gs://no-such-bucket/events")
    message = short_error(err.value, _no_mask)
    assert "the gcs connector is missing: add gcs-connector-" in message and "to spark.jars" in message


def test_the_avro_format_without_spark_avro_says_what_this_spark_needs(spark, tmp_path: Path) -> None:
    with pytest.raises(Exception) as err:
        spark.read.format("avro").load(str(tmp_path))
    message = short_error(err.value, _no_mask)
    assert f"the avro connector is missing: {how_to_add('avro', pyspark_version)}" in message


@pytest.mark.parametrize(
    ("message", "name"),
    [
        ('org.apache.hadoop.fs.UnsupportedFileSystemException: No FileSystem for scheme "s3a"', "s3"),
        ("java.lang.ClassNotFoundException: Class org.apache.hadoop.fs.s3a.S3AFileSystem not found", "s3"),
        ('No FileSystem for scheme "gs"', "gcs"),
        ("[DATA_SOURCE_NOT_FOUND] Failed to find the data source: avro. Make sure ...", "avro"),
        ("Failed to find data source: delta. Please find packages at ...", "delta"),
        (
            "Cannot find catalog plugin class for catalog 'spark_catalog': "
            "org.apache.spark.sql.delta.catalog.DeltaCatalog",
            "delta",
        ),
        ("java.lang.ClassNotFoundException: io.delta.sql.DeltaSparkSessionExtension", "delta"),
        ("Cannot find catalog plugin class for catalog 'lake': org.apache.iceberg.spark.SparkCatalog", "iceberg"),
        ("java.sql.SQLException: No suitable driver found for jdbc:postgresql://h/db", "postgresql"),
        ("java.sql.SQLException: No suitable driver found for jdbc:mysql://h/db", "mariadb"),
        ("java.lang.ClassNotFoundException: io.openlineage.spark.agent.OpenLineageSparkListener", "openlineage"),
        ("[TABLE_OR_VIEW_NOT_FOUND] The table or view `delta_events` cannot be found", None),
        ("org.apache.iceberg.exceptions.CommitFailedException: Cannot commit", None),
    ],
)
def test_spark_messages_of_a_missing_jar_name_the_connector(message: str, name: str | None) -> None:
    assert missing_connector(message) == name


def test_the_advice_follows_the_spark_line() -> None:
    assert connector_advice("Failed to find data source: delta.", "3.5.7") == (
        "the delta connector is missing: add io.delta:delta-spark_2.12:3.3.2 to spark.jars.packages "
        "(or its jars to spark.jars)"
    )
    assert connector_advice("Failed to find the data source: avro.", "4.3.0") == (
        "the avro connector is missing: no avro connector is published for Spark 4.3.0: run it on a Spark that has one"
    )
    assert connector_advice("Division by zero", "4.0.2") is None
