"""The connector table (``spark_job/config/connectors.py``): its pins agree with the pyspark that runs (the Hadoop
and Scala of its own jars), its messages name what to add, and the setup script cached every jar of
the running Spark. No JVM; Python 3.9 (the matrix cells can run it on their Spark)."""

from __future__ import annotations

import re

import pytest

from spark_job.config.connectors import SPARK_LINES, connector, connectors, how_to_add, minor_of, spark_line

from ..support import spark_home
from .jars import jar_dir, spark_version


def test_the_line_of_the_running_spark_matches_its_own_jars() -> None:
    names = [p.name for p in (spark_home() / "jars").glob("*.jar")]
    [hadoop] = [m.group(1) for m in map(re.compile(r"hadoop-client-api-(.+)\.jar").fullmatch, names) if m]
    [scala] = [m.group(1) for m in map(re.compile(r"scala-library-(\d+\.\d+)\..*\.jar").fullmatch, names) if m]
    line = spark_line(spark_version())
    assert line is not None, f"no connectors pinned for Spark {spark_version()}"
    assert (line.hadoop, line.scala) == (hadoop, scala)
    s3 = connector("s3", spark_version())
    assert s3 is not None and s3.package == f"org.apache.hadoop:hadoop-aws:{hadoop}"
    for found in connectors(spark_version()).values():
        for artifact in found.artifacts if found else ():
            suffix = re.search(r"_(2\.1\d)$", artifact.name)
            assert suffix is None or suffix.group(1) == scala, artifact.coordinate


def test_the_cache_holds_every_jar_of_the_running_spark() -> None:
    missing = [
        artifact.file_name
        for found in connectors(spark_version()).values()
        for artifact in (found.artifacts if found else ())
        if not (jar_dir() / artifact.file_name).is_file()
    ]
    assert not missing, f"run 'bash scripts/connectors.sh': {missing} are not in {jar_dir()}"


def test_what_the_table_says_to_add() -> None:
    assert (
        how_to_add("delta", "4.0.2")
        == "add io.delta:delta-spark_2.13:4.0.1 to spark.jars.packages (or its jars to spark.jars)"
    )
    avro = connector("avro", "3.5.3")  # Spark's own modules come at the Spark version itself
    assert avro is not None and avro.package == "org.apache.spark:spark-avro_2.12:3.5.3"
    assert connector("avro", "4.3.0") is None and connector("delta", "4.3.0") is None
    assert (
        how_to_add("avro", "4.3.0") == "no avro connector is published for Spark 4.3.0: run it on a Spark that has one"
    )
    gcs = how_to_add("gcs", "4.0.2")  # a shaded jar: spark.jars.packages cannot name it
    assert gcs.startswith(
        "add gcs-connector-3.1.3-shaded.jar (com.google.cloud.bigdataoss:gcs-connector:3.1.3:shaded) to spark.jars"
    )
    assert "spark.hadoop.fs.gs.impl=com.google.cloud.hadoop.fs.gcs.GoogleHadoopFileSystem" in gcs
    assert "spark.hadoop.fs.gs.block.size=67108864" in how_to_add("gcs", "4.3.0")  # Hadoop 3.5's "64m"
    assert connector("spark-connect", "3.5.7") is not None and "spark-connect" not in connectors("4.0.2")
    assert minor_of("3.5.7-amzn-1") == "3.5" and spark_line("3.4.1") is None
    assert how_to_add("s3", "3.4.1").startswith("no connectors are pinned for Spark 3.4.1")
    with pytest.raises(KeyError, match="unknown connector 'hudi'"):
        connector("hudi", "4.0.2")
    with pytest.raises(ValueError, match="is not a Spark version"):
        minor_of("latest")
    assert list(SPARK_LINES) == ["3.5", "4.0", "4.1", "4.2", "4.3"]
