"""JDBC sources and targets against a real PostgreSQL server, credentials through ${env:...}."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spark_job.config import load_config
from spark_job.runner import PipelineRunner

from .conftest import POSTGRES_JAR, Postgres

ENV = {"PG_USER": "sparkpipe", "PG_PASSWORD": "sparkpipe"}


@pytest.fixture()
def orders(postgres: Postgres) -> str:
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS orders")
        conn.execute("CREATE TABLE orders (id BIGINT PRIMARY KEY, customer TEXT, amount NUMERIC(10,2))")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO orders VALUES (%s, %s, %s)", [(i, f"c{i % 5}", i * 1.5) for i in range(1, 101)]
            )
    return "public.orders"


def config(postgres: Postgres, source: dict, target: dict, query: str) -> dict:
    creds = {"user": "${env:PG_USER}", "password": "${env:PG_PASSWORD}", "driver": "org.postgresql.Driver"}
    return {
        "app_name": "jdbc",
        "spark_conf": {"spark.jars": POSTGRES_JAR},
        "sources": {"orders": {"type": "jdbc", "url": postgres.jdbc_url, **creds, **source}},
        "sequences": [
            {"name": "out", "query": query, "target": {**(creds if target["type"] == "jdbc" else {}), **target}}
        ],
    }


def test_partitioned_read_and_overwrite_then_append(spark: Any, postgres: Postgres, orders: str) -> None:
    cfg = config(
        postgres,
        {
            "table": orders,
            "partition_column": "id",
            "lower_bound": 1,
            "upper_bound": 100,
            "num_partitions": 4,
            "fetchsize": 50,
        },
        {"type": "jdbc", "url": postgres.jdbc_url, "table": "public.customer_totals", "mode": "overwrite"},
        "SELECT customer, sum(amount) AS total, count(*) AS n FROM orders GROUP BY customer",
    )
    loaded = load_config(cfg, environ=ENV)
    assert loaded.sources[0].reader().read(spark).rdd.getNumPartitions() == 4
    metrics = PipelineRunner(loaded, spark=spark).run()
    assert metrics["status"] == "succeeded", metrics
    assert metrics["sequences"]["out"]["rows_written"] == 5
    assert metrics["sequences"]["out"]["target"] == {
        "type": "jdbc",
        "uri": postgres.jdbc_url,
        "table": "public.customer_totals",
    }
    assert "sparkpipe" not in str(metrics)  # the password (same as the user here) reaches no metric
    with postgres.connect() as conn:
        rows = conn.execute("SELECT customer, total, n FROM customer_totals ORDER BY customer").fetchall()
    assert rows[0][0] == "c0" and float(rows[0][1]) == sum(i * 1.5 for i in range(5, 101, 5)) and rows[0][2] == 20

    cfg["sequences"][0]["target"]["mode"] = "append"
    again = PipelineRunner(load_config(cfg, environ=ENV), spark=spark).run()
    assert again["sequences"]["out"]["rows_written"] == 5
    with postgres.connect() as conn:
        assert conn.execute("SELECT count(*) FROM customer_totals").fetchone() == (10,)


def test_query_read_to_parquet(spark: Any, postgres: Postgres, orders: str, tmp_path: Path) -> None:
    cfg = config(
        postgres,
        {"query": "SELECT id, amount FROM orders WHERE amount > 100"},
        {"type": "parquet", "path": str(tmp_path / "big")},
        "SELECT * FROM orders",
    )
    metrics = PipelineRunner(load_config(cfg, environ=ENV), spark=spark).run()
    assert metrics["sequences"]["out"]["rows_written"] == 34
    assert spark.read.parquet(str(tmp_path / "big")).count() == 34


def test_unreachable_database_fails_with_the_source_named(spark: Any, postgres: Postgres, tmp_path: Path) -> None:
    cfg = config(
        postgres,
        {"table": "orders", "url": "jdbc:postgresql://127.0.0.1:1/none"},
        {"type": "parquet", "path": str(tmp_path / "x")},
        "SELECT * FROM orders",
    )
    metrics = PipelineRunner(load_config(cfg, environ=ENV), spark=spark).run()
    error = metrics["sequences"]["out"]["error"]
    assert metrics["status"] == "failed"
    assert error.startswith("source 'orders' (sources.orders):") and "connect to the database" in error
    assert not (tmp_path / "x").exists()
