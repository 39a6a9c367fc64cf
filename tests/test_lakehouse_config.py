"""Delta Lake and Iceberg in a config, before any session: their keys and checks, the session settings
validation computes for them (SQL extensions, catalogs), their identities in the overlap checks, the
statements a merge runs, and on a Spark without a Delta release (4.3), the start-up error naming what to
add. The tables themselves are tested in the matrix cells (``tests/connectors/test_lakehouse.py``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from spark_job.config import load_config
from spark_job.config.lakehouse import DELTA_CATALOG, DELTA_EXTENSION, ICEBERG_EXTENSION, path_catalog
from spark_job.config.merge import MergeSpec
from spark_job.errors import ConfigError
from spark_job.io.lake_merge import merge_statement, pruning_condition, scd2_statement, sql_literal
from spark_job.io.lake_tables import LakeTable

from .connectors.runs import run_driver


def pipeline(*targets: dict[str, Any], spark_conf: dict[str, str] | None = None, **sources: Any) -> dict[str, Any]:
    return {
        "app_name": "lake",
        **({"spark_conf": spark_conf} if spark_conf else {}),
        **({"sources": sources} if sources else {}),
        "sequences": [{"name": f"s{i}", "query": "SELECT 1 AS id", "target": t} for i, t in enumerate(targets)],
    }


def problems(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    return str(raised.value)


def test_the_session_gets_the_extensions_and_catalogs_a_config_needs() -> None:
    conf = load_config(pipeline({"type": "delta", "path": "/lake/orders"})).spark_conf
    assert conf["spark.sql.extensions"] == DELTA_EXTENSION
    assert conf["spark.sql.catalog.spark_catalog"] == DELTA_CATALOG
    both = load_config(
        pipeline(
            {"type": "delta", "path": "/lake/orders"},
            {"type": "iceberg", "table": "lake.crm.customers", "warehouse": "/lake/iceberg"},
            spark_conf={"spark.sql.extensions": "com.example.Mine"},
        )
    ).spark_conf
    assert both["spark.sql.extensions"] == f"com.example.Mine,{DELTA_EXTENSION},{ICEBERG_EXTENSION}"
    assert both["spark.sql.catalog.lake"] == "org.apache.iceberg.spark.SparkCatalog"
    assert both["spark.sql.catalog.lake.type"] == "hadoop"
    assert both["spark.sql.catalog.lake.warehouse"] == "/lake/iceberg"
    # what the user configured stays as it is
    mine = {"spark.sql.catalog.spark_catalog": "org.apache.iceberg.spark.SparkSessionCatalog"}
    kept = load_config(pipeline({"type": "delta", "table": "db.t"}, spark_conf=mine)).spark_conf
    assert kept["spark.sql.catalog.spark_catalog"] == mine["spark.sql.catalog.spark_catalog"]
    plain = load_config(pipeline({"type": "parquet", "path": "/out/x"})).spark_conf
    assert "spark.sql.extensions" not in plain


def test_table_keys_are_checked_where_they_are() -> None:
    found = problems(
        pipeline(
            {"type": "delta"},
            {"type": "delta", "path": "/a/b", "table": "db.t"},
            {"type": "iceberg", "path": "/x"},
            {"type": "iceberg", "table": "crm.customers", "warehouse": "/wh"},
            {"type": "delta", "path": "/a/c", "warehouse": "/wh"},
            {"type": "iceberg", "table": "lake.a.b", "warehouse": "/wh", "mode": "scd2", "merge_keys": ["valid_from"]},
        )
    )
    assert "sequences[0].target: needs one of 'path' or 'table'" in found
    assert "sequences[1].target.table: give either 'path' or 'table', not both" in found
    assert "sequences[2].target.path: '/x': an Iceberg path table is at least three folders deep" in found
    assert "sequences[3].target.table: with warehouse, name the table as <catalog>.<namespace>.<table>" in found
    assert "sequences[4].target.warehouse: unknown key" in found
    assert "sequences[5].target.merge_keys: valid_from is a column scd2 adds" in found
    assert "sequences[5].target.scd2: mode scd2 needs scd2" in found


def test_one_catalog_has_one_warehouse() -> None:
    found = problems(
        pipeline(
            {"type": "iceberg", "table": "lake.a.t1", "warehouse": "/wh1"},
            {"type": "iceberg", "table": "lake.a.t2", "warehouse": "/wh2"},
            {"type": "iceberg", "table": "own.a.t3", "warehouse": "/wh3"},
            spark_conf={"spark.sql.catalog.own": "org.apache.iceberg.spark.SparkCatalog"},
        )
    )
    assert "sequences[1].target.warehouse: the catalog 'lake' is over '/wh1' at sequences[0].target.warehouse" in found
    assert "sequences[2].target.warehouse: spark_conf already configures the catalog 'own'" in found


def test_identities_and_overlaps_know_lake_tables() -> None:
    found = problems(
        pipeline(
            {"type": "delta", "path": "/lake/orders"},
            {"type": "parquet", "path": "/lake/orders/part"},
            {"type": "delta", "table": "default.t"},
            {"type": "table", "table": "T"},
        )
    )
    assert "sequences[1].target.path" in found and "sequences[3]" in found
    read = problems(pipeline({"type": "delta", "path": "/lake/x"}, src={"type": "delta", "path": "/lake/x/y"}))
    assert "/lake/x" in read


def test_source_keys() -> None:
    config = load_config(
        pipeline(
            {"type": "parquet", "path": "/out/a"},
            old={"type": "delta", "path": "/lake/orders", "version": 3},
            snap={"type": "iceberg", "table": "lake.crm.c", "timestamp": "2024-01-05 00:00:00", "warehouse": "/wh"},
        )
    )
    assert [s.reader.describe() for s in config.sources] == [
        {"type": "delta", "uri": "/lake/orders"},
        {"type": "iceberg", "table": "lake.crm.c"},
    ]
    found = problems(
        pipeline(
            {"type": "parquet", "path": "/out/a"},
            x={"type": "delta", "path": "/p", "version": 1, "timestamp": "t", "schema": "a INT"},
        )
    )
    assert "sources.x.timestamp: give either version or timestamp, not both" in found
    assert "sources.x.schema: a Delta Lake table has its own schema: remove schema" in found


def test_the_merge_statement_matches_columns_by_name() -> None:
    merge = MergeSpec.of(
        {
            "mode": "merge",
            "merge_keys": ["ID"],
            "delete_when": "op = 'D'",
            "merge_condition": "t.at < s.at",
            "merge_exclude_columns": ["created"],
        }
    )
    assert merge is not None
    text = merge_statement(
        "delta.`/t`", "src", ["at", "id", "created", "sparkpipe_delete"], ["Id", "Created", "At"], merge
    )
    assert text == (
        "MERGE INTO delta.`/t` t USING src s ON t.`Id` = s.`id` "
        "WHEN MATCHED AND s.sparkpipe_delete = 1 THEN DELETE "
        "WHEN MATCHED AND (t.at < s.at) THEN UPDATE SET t.`At` = s.`at` "
        "WHEN NOT MATCHED AND s.sparkpipe_delete = 0 "
        "THEN INSERT (`At`, `Id`, `Created`) VALUES (s.`at`, s.`id`, s.`created`)"
    )
    scd2 = scd2_statement(
        "t1", "v", ["id", "city", "valid_from", "valid_to", "is_current"], ["id"], " AND t.`d` IN (1)"
    )
    assert scd2.startswith(
        "MERGE INTO t1 t USING v s ON t.`id` = s.`id` AND t.`valid_from` = s.`valid_from` AND t.`d` IN (1)"
    )


def test_pruning_restricts_to_the_partitions_touched() -> None:
    assert pruning_condition(["day"], [("2024-01-01",), ("2024-01-02",)]) == (
        " AND (t.`day` IN ('2024-01-01', '2024-01-02'))"
    )
    assert pruning_condition(["d", "n"], [(dt.date(2024, 1, 1), 1), (None, 2)]) == (
        " AND (t.`d` IN (DATE '2024-01-01') OR t.`d` IS NULL) AND (t.`n` IN (1, 2))"
    )
    assert pruning_condition(["day"], [(object(),)]) == ""  # a type without a literal prunes nothing
    assert pruning_condition([], [(1,)]) == "" and pruning_condition(["d"], [(i,) for i in range(5000)]) == ""
    assert sql_literal("it's \\ here") == "'it\\'s \\\\ here'"


def test_iceberg_path_tables_have_a_catalog_name() -> None:
    table = LakeTable("iceberg", path="/lake/crm/customers")
    assert table.name == f"{path_catalog('/lake')}.`crm`.`customers`"
    assert table.catalog_and_name() == (path_catalog("/lake"), "`crm`.`customers`")
    assert LakeTable("delta", path="/x/y`z").name == "delta.`/x/y``z`"
    assert LakeTable("iceberg", table="lake.db.t").catalog_and_name() == ("lake", "`db`.`t`")


def test_a_delta_target_on_a_spark_without_delta_says_what_to_add(tmp_path: Path) -> None:
    from importlib.metadata import version

    config = pipeline({"type": "delta", "path": str(tmp_path / "orders")})
    config["sequences"].append(
        {"name": "other", "query": "SELECT 1 AS id", "target": {"type": "json", "path": str(tmp_path / "j")}}
    )
    run = run_driver(tmp_path, config)
    assert run.returncode == 1 and run.metrics is not None
    spark = version("pyspark")
    error = run.metrics["error"]
    assert f"sequences[0].target is a Delta Lake table, but this Spark {spark} session has no delta connector" in error
    assert f"no delta connector is published for Spark {spark}" in error
    assert run.metrics["sequences"]["other"]["status"] == "skipped"  # nothing ran
    assert not (tmp_path / "j").exists()


def test_the_json_schema_covers_the_lake_keys() -> None:
    import jsonschema

    from spark_job.config.schema import config_schema

    schema = config_schema()
    good = pipeline(
        {
            "type": "delta",
            "path": "/lake/o",
            "mode": "merge",
            "merge_keys": ["id"],
            "delete_when": "op = 'D'",
            "merge_condition": "t.at < s.at",
            "deduplicate": {"latest_by": "at"},
            "on_schema_change": "sync",
        },
        {
            "type": "iceberg",
            "table": "lake.crm.c",
            "warehouse": "/wh",
            "mode": "scd2",
            "merge_keys": ["id"],
            "scd2": {"updated_at": "at"},
        },
        src={"type": "delta", "path": "/lake/o", "version": 2},
    )
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(pipeline({"type": "delta", "path": "/lake/o", "mode": "upsert"}), schema)


def test_lineage_names_lake_tables_as_the_naming_spec_does() -> None:
    from airflow_provider_sparkpipe.lineage import dataset_name

    config = load_config(
        pipeline(
            {"type": "delta", "path": "s3a://bucket/lake/orders"},
            {"type": "iceberg", "table": "lake.crm.customers", "warehouse": "/wh"},
            {"type": "delta", "table": "Sales.Orders"},
        )
    )
    names = [dataset_name(s.writer.describe()) for s in config.sequences]
    assert names == [("s3://bucket", "lake/orders"), ("lake", "crm.customers"), ("spark_catalog", "sales.orders")]
