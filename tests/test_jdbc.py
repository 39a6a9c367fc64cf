"""JDBC sources and targets against a real PostgreSQL server, credentials through ${env:...}."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spark_job.config.validation import load_config
from spark_job.engine.runner import PipelineRunner

from .support import POSTGRES_JAR, Postgres

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
    assert loaded.sources[0].reader.read(spark).rdd.getNumPartitions() == 4
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


@pytest.mark.parametrize(
    ("url", "environ", "why"),
    [
        ("jdbc:postgresql://127.0.0.1:1/none", ENV, "Connection to 127.0.0.1:1 refused"),
        (None, {**ENV, "PG_PASSWORD": "not-the-password"}, "password authentication failed for user"),
        ("jdbc:postgresql://{host}:{port}/no_such_db", ENV, 'database "no_such_db" does not exist'),
        ("jdbc:postgresql://no-such-host.invalid:5432/db", ENV, "no-such-host.invalid"),
    ],
    ids=["refused", "wrong-password", "no-database", "unknown-host"],
)
def test_a_source_that_cannot_connect_says_why(
    spark: Any, postgres: Postgres, tmp_path: Path, url: str | None, environ: dict[str, str], why: str
) -> None:
    """The session as the driver makes it (its defaults give Python errors the JVM's causes): the
    database's own reason reaches the error, not only Spark's FAILED_JDBC.CONNECTION."""
    key = "spark.sql.pyspark.jvmStacktrace.enabled"
    runner_defaults = PipelineRunner(
        load_config(config(postgres, {"table": "t"}, {"type": "parquet", "path": "/x"}, "SELECT 1"), environ=ENV)
    ).session_defaults()
    assert runner_defaults[key] == "true"
    spark.conf.set(key, "true")
    try:
        check_connect_error(spark, postgres, tmp_path, url, environ, why)
    finally:
        spark.conf.unset(key)


def check_connect_error(
    spark: Any, postgres: Postgres, tmp_path: Path, url: str | None, environ: dict[str, str], why: str
) -> None:
    source = {"table": "orders"}
    if url:
        source["url"] = url.format(host=postgres.host, port=postgres.port)
    cfg = config(postgres, source, {"type": "parquet", "path": str(tmp_path / "x")}, "SELECT * FROM orders")
    metrics = PipelineRunner(load_config(cfg, environ=environ), spark=spark).run()
    error = metrics["sequences"]["out"]["error"]
    assert metrics["status"] == "failed"
    # Spark's own "[FAILED_JDBC.CONNECTION] Couldn't connect to the database" heads it from some 4.x on;
    # before, the JDBC driver's exception comes alone: either way the database's reason is there.
    assert error.startswith("source 'orders' (sources.orders):")
    assert why in error, error
    assert "not-the-password" not in error
    assert not (tmp_path / "x").exists()


LONGEST = "t" * 60 + "max"  # 63 characters: PostgreSQL's limit for identifiers


@pytest.mark.parametrize("truncate", [False, True])
def test_a_table_name_at_the_identifier_limit(spark: Any, postgres: Postgres, truncate: bool) -> None:
    with postgres.connect() as conn:
        conn.execute(f"DROP TABLE IF EXISTS {LONGEST}")
        conn.execute(f"CREATE TABLE {LONGEST} (id BIGINT PRIMARY KEY, note TEXT)")
        conn.execute(f"INSERT INTO {LONGEST} VALUES (100, 'old')")
    target = {
        "type": "jdbc",
        "url": postgres.jdbc_url,
        "table": f"public.{LONGEST}",
        "user": "${env:PG_USER}",
        "password": "${env:PG_PASSWORD}",
        "truncate": truncate,
    }

    def run(mode: str, query: str) -> dict:
        cfg = {"app_name": "limit", "sequences": [{"name": "s", "query": query, "target": {**target, "mode": mode}}]}
        return PipelineRunner(load_config(cfg, environ=ENV), spark=spark).run()["sequences"]["s"]

    def rows() -> list[tuple]:
        with postgres.connect() as conn:
            return conn.execute(f"SELECT id, note FROM {LONGEST} ORDER BY id").fetchall()

    assert run("append", "SELECT id, 'a' AS note FROM range(3)")["status"] == "succeeded"
    assert rows() == [(0, "a"), (1, "a"), (2, "a"), (100, "old")]
    failed = run("append", "SELECT id + 1 AS id, 'dup' AS note FROM range(3)")  # ids 1, 2 exist: nothing lands
    assert failed["status"] == "failed" and "duplicate key" in failed["error"]
    assert rows() == [(0, "a"), (1, "a"), (2, "a"), (100, "old")]
    assert run("overwrite", "SELECT id, 'new' AS note FROM range(2)")["status"] == "succeeded"
    assert rows() == [(0, "new"), (1, "new")]
    with postgres.connect() as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'tttt%'").fetchall()
        keys = conn.execute(f"SELECT count(*) FROM pg_indexes WHERE tablename = '{LONGEST}'").fetchone()
    assert tables == [(LONGEST,)]  # no staging or previous table left, none truncated onto the target
    assert keys == ((1,) if truncate else (0,))  # truncate keeps the definition; a swap brings Spark's own
