"""Which Delta and Iceberg writes hold the target's lease (``spark_job.io.lake_lease``): Delta tables on S3
whose log store is not a DynamoDB one, nothing else. The decision from a location and the application's
settings, and where a table's folder is, on the shared session (no Delta jar needed). Real drivers holding
the lease of a Delta table on S3A: ``tests/connectors/test_lakehouse_s3.py`` (a matrix cell)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spark_job.io import writers
from spark_job.io.lake_lease import delta_lease, delta_log_store, delta_needs_lease, log_store_settings, table_location
from spark_job.io.lake_tables import LakeTable

DYNAMODB = "io.delta.storage.S3DynamoDBLogStore"
SINGLE_DRIVER = "io.delta.storage.S3SingleDriverLogStore"
DELEGATING = "org.apache.spark.sql.delta.storage.DelegatingLogStore"


@pytest.mark.parametrize(
    ("uri", "settings", "leased"),
    [
        # Delta's default S3 log store serialises one driver's writers only
        ("s3a://bucket/lake/orders", {}, True),
        ("s3://bucket/lake/orders", {}, True),
        ("s3n://bucket/lake/orders", {}, True),
        ("S3A://bucket/lake/orders", {}, True),
        ("s3a://bucket/lake/orders", {"spark.delta.logStore.s3a.impl": SINGLE_DRIVER}, True),
        ("s3a://bucket/lake/orders", {"spark.delta.logStore.s3a.impl": "  "}, True),
        # a DynamoDB log store for the table's scheme serialises every driver's
        ("s3a://bucket/lake/orders", {"spark.delta.logStore.s3a.impl": DYNAMODB}, False),
        ("s3a://bucket/lake/orders", {"delta.logStore.s3a.impl": DYNAMODB}, False),
        ("s3://bucket/lake/orders", {"spark.delta.logStore.s3.impl": DYNAMODB}, False),
        ("s3a://bucket/lake/orders", {"spark.delta.logStore.class": DYNAMODB}, False),
        ("s3n://bucket/lake/orders", {"delta.logStore.class": DYNAMODB}, False),
        (
            "s3a://bucket/lake/orders",
            {"spark.delta.logStore.class": DELEGATING, "spark.delta.logStore.s3a.impl": DYNAMODB},
            False,
        ),
        # ... but only for that scheme: another S3 scheme keeps the default
        ("s3a://bucket/lake/orders", {"spark.delta.logStore.s3.impl": DYNAMODB}, True),
        ("s3a://bucket/lake/orders", {"spark.delta.logStore.class": DELEGATING}, True),
        # the class for every scheme wins over a scheme's setting, as in Delta
        (
            "s3a://bucket/lake/orders",
            {"spark.delta.logStore.class": SINGLE_DRIVER, "spark.delta.logStore.s3a.impl": DYNAMODB},
            True,
        ),
        # other filesystems create the log file atomically: no lease
        ("file:/tmp/lake/orders", {}, False),
        ("hdfs://namenode:8020/lake/orders", {}, False),
        ("gs://bucket/lake/orders", {}, False),
        ("abfss://lake@account.dfs.core.windows.net/orders", {}, False),
        ("/tmp/lake/orders", {}, False),
    ],
)
def test_a_delta_table_on_s3_needs_the_lease_unless_its_log_store_is_a_dynamodb_one(
    uri: str, settings: dict[str, Any], leased: bool
) -> None:
    assert delta_needs_lease(uri, settings) is leased


def test_the_log_store_is_resolved_as_delta_resolves_it() -> None:
    assert delta_log_store("s3a", {}) == SINGLE_DRIVER
    assert delta_log_store("S3N", {}) == SINGLE_DRIVER
    assert delta_log_store("hdfs", {}) is None
    assert delta_log_store("s3a", {"delta.logStore.s3a.impl": DYNAMODB}) == DYNAMODB
    assert delta_log_store("s3a", {"spark.delta.logStore.class": "com.example.MyLogStore"}) == "com.example.MyLogStore"
    assert delta_log_store("gs", {"spark.delta.logStore.gs.impl": "com.example.Gcs"}) == "com.example.Gcs"


def test_a_local_delta_table_and_an_iceberg_table_take_no_lease(spark: Any, tmp_path: Path) -> None:
    # the session's own settings are read, and name no log store
    assert set(log_store_settings(spark, "s3a").values()) == {None}
    assert delta_lease(spark, LakeTable("delta", path=str(tmp_path / "orders"))) is None
    assert delta_lease(spark, LakeTable("delta", path=f"file:{tmp_path}/orders")) is None
    assert delta_lease(spark, LakeTable("delta", path="relative/orders")) is None  # the default filesystem: local
    assert delta_lease(spark, LakeTable("iceberg", path="s3a://bucket/warehouse/db/orders")) is None
    assert delta_lease(spark, LakeTable("delta", table="lake.db.orders")) is None  # another catalog's commits
    delta = writers.get("delta")
    assert delta is not None
    assert not delta({"type": "delta", "path": str(tmp_path / "orders")}).holds_lease(spark)
    iceberg = writers.get("iceberg")
    assert iceberg is not None
    assert not iceberg({"type": "iceberg", "path": "s3a://bucket/warehouse/db/orders"}).holds_lease(spark)


def test_a_catalog_table_is_found_at_its_location_or_where_it_will_be_created(spark: Any, tmp_path: Path) -> None:
    spark.sql("CREATE DATABASE IF NOT EXISTS lake_lease_db")
    elsewhere = tmp_path / "elsewhere"
    spark.sql(f"CREATE TABLE lake_lease_db.kept (id INT) USING parquet LOCATION '{elsewhere}'")
    try:
        database = str(spark.catalog.getDatabase("lake_lease_db").locationUri).rstrip("/")
        assert table_location(spark, LakeTable("delta", table="lake_lease_db.kept")) == f"file:{elsewhere}"
        assert (
            table_location(spark, LakeTable("delta", table="spark_catalog.lake_lease_db.kept")) == f"file:{elsewhere}"
        )
        # not created yet: where the write creates it
        assert table_location(spark, LakeTable("delta", table="lake_lease_db.New_One")) == f"{database}/new_one"
        assert table_location(spark, LakeTable("delta", table="no_such_db.orders")) is None
        assert table_location(spark, LakeTable("delta", table="other.db.orders")) is None
    finally:
        spark.sql("DROP DATABASE lake_lease_db CASCADE")
