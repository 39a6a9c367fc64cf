"""A second JDBC database: MariaDB (Debian's server, the default ``lower_case_table_names=0``) through
MariaDB Connector/J, in real driver runs: a table and a query as sources, every target mode with the
staged swap (MariaDB commits DDL at once: its multi-table ``RENAME TABLE`` is the swap), the lease row
of ``sparkpipe_leases``, 64-character names and names qualified with another database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spark_job.config.tables import derived_table_name
from spark_job.errors import ConfigError

from .conftest import MariaDB
from .jars import spark_conf
from .runs import kill, run_driver, start_driver, wait_for

CREDENTIALS = {"user": "${env:MARIADB_USER}", "password": "${env:MARIADB_PASSWORD}"}
LONG = "daily_revenue_per_customer_and_country_with_returns_excluded_v02"  # 64 characters, MariaDB's limit


def env(db: MariaDB) -> dict[str, str]:
    return {"MARIADB_USER": db.user, "MARIADB_PASSWORD": db.password}


def target(db: MariaDB, table: str, **extra: object) -> dict[str, object]:
    return {"type": "jdbc", "url": db.jdbc_url(), "table": table, **CREDENTIALS, **extra}


def test_a_pipeline_reads_and_writes_mariadb_in_every_mode(mariadb: MariaDB, tmp_path: Path) -> None:
    assert len(LONG) == 64
    old = "(id BIGINT, label VARCHAR(20))"
    mariadb.sql(
        "DROP TABLE IF EXISTS customers, countries, replaced, appended, truncated, created, refused, kept, recent,"
        f" Scores, country_names, {LONG}; DROP TABLE IF EXISTS archive.moved;"
        "CREATE TABLE customers (id BIGINT PRIMARY KEY, name VARCHAR(50), country CHAR(2));"
        "INSERT INTO customers VALUES (1, 'Ada', 'DE'), (2, 'Bo', 'FR'), (3, 'Cy', 'DE'), (4, 'Di', 'IT');"
        "CREATE TABLE countries (code CHAR(2), name VARCHAR(20));"
        "INSERT INTO countries VALUES ('DE', 'Germany'), ('FR', 'France');"
        f"CREATE TABLE replaced {old}; CREATE TABLE refused {old}; CREATE TABLE kept {old};"
        f"CREATE TABLE {LONG} {old};"
        "CREATE TABLE appended (id BIGINT PRIMARY KEY, label VARCHAR(20));"
        "CREATE TABLE truncated (id BIGINT PRIMARY KEY, label VARCHAR(20), KEY by_label (label));"
        + "".join(f"INSERT INTO {t} VALUES (100, 'old');" for t in ("replaced", "refused", "kept", LONG))
        + "INSERT INTO appended VALUES (100, 'old'); INSERT INTO truncated VALUES (100, 'old');"
    )
    new = "SELECT id, 'new' AS label FROM customers"
    config = {
        "app_name": "mariadb_modes",
        "spark_conf": spark_conf("mariadb"),
        "sources": {
            "customers": {"type": "jdbc", "url": mariadb.jdbc_url(), "table": "customers", **CREDENTIALS},
            # only text columns: read with Spark's default dialect, a jdbc:mariadb: URL gave each row the
            # column names as values
            "countries": {"type": "jdbc", "url": mariadb.jdbc_url(), "table": "countries", **CREDENTIALS},
            "german": {
                "type": "jdbc",
                "url": mariadb.jdbc_url(),
                "query": "SELECT id, name FROM customers WHERE country = 'DE'",
                **CREDENTIALS,
            },
        },
        "sequences": [
            {"name": "replaced", "query": new, "target": target(mariadb, "replaced")},
            {"name": "appended", "query": new, "target": target(mariadb, "appended", mode="append")},
            {"name": "truncated", "query": new, "target": target(mariadb, "truncated", truncate=True)},
            {"name": "created", "query": new, "target": target(mariadb, "created", mode="error")},
            {"name": "refused", "query": new, "target": target(mariadb, "refused", mode="error")},
            {"name": "kept", "query": new, "target": target(mariadb, "kept", mode="ignore")},
            {"name": "long_name", "query": new, "target": target(mariadb, LONG)},
            {"name": "recent", "query": "SELECT * FROM german", "target": target(mariadb, "shop.recent")},
            {"name": "mixed_case", "query": new, "target": target(mariadb, "Scores")},
            {"name": "country_names", "query": "SELECT * FROM countries", "target": target(mariadb, "country_names")},
            {"name": "moved", "query": new, "target": target(mariadb, "archive.moved")},
        ],
    }
    run = run_driver(tmp_path, config, env=env(mariadb))
    assert run.returncode == 1, run.stderr[-5000:]
    statuses = {name: run.status(name) for name in run.metrics["sequences"]}  # type: ignore[index]
    assert statuses == {**dict.fromkeys(statuses, "succeeded"), "refused": "failed"}, run.stderr[-5000:]
    assert "already exists" in run.metrics["sequences"]["refused"]["error"]  # type: ignore[index]

    new_rows = [(str(i), "new") for i in range(1, 5)]
    for table in ("replaced", "truncated", "created", LONG, "Scores", "archive.moved"):
        assert mariadb.sql(f"SELECT id, label FROM {table} ORDER BY id") == new_rows, table
    assert mariadb.sql("SELECT id, label FROM appended ORDER BY id") == [*new_rows, ("100", "old")]
    for table in ("refused", "kept"):
        assert mariadb.sql(f"SELECT id, label FROM {table}") == [("100", "old")], table
    assert mariadb.sql("SELECT id, name FROM recent ORDER BY id") == [("1", "Ada"), ("3", "Cy")]
    assert mariadb.sql("SELECT code, name FROM country_names ORDER BY code") == [("DE", "Germany"), ("FR", "France")]
    # truncate: the table's definition stays (its primary key and index), only the rows changed
    assert {row[2] for row in mariadb.sql("SHOW INDEX FROM truncated")} == {"PRIMARY", "by_label"}
    # nothing beside the targets: no staging or previous table, and no lease left in the lease table
    tables = {"customers", "countries", "replaced", "appended", "truncated", "created", "refused", "kept", "recent"}
    targets = {*tables, "Scores", "country_names", LONG}
    assert set(mariadb.tables()) == {*targets, "sparkpipe_leases"}
    assert mariadb.tables("archive") == ["moved", "sparkpipe_leases"]
    assert mariadb.sql("SELECT count(*) FROM sparkpipe_leases") == [("0",)]


def test_mariadb_names_follow_its_identifier_rules(mariadb: MariaDB) -> None:
    """The target identity reads MariaDB names as the server may: table and database names compared
    without case (``lower_case_table_names`` decides on the server; 1 and 2 fold them), the URL's
    database for an unqualified name, one server however the loopback host is spelt; staging
    names fit the 64-character limit."""
    from spark_job.config.validation import load_config

    def two_targets(first: dict[str, object], second: dict[str, object]) -> dict[str, object]:
        return {
            "app_name": "names",
            "sequences": [
                {"name": "a", "query": "SELECT 1 AS id", "target": first},
                {"name": "b", "query": "SELECT 2 AS id", "target": second},
            ],
        }

    same = [
        (target(mariadb, "Scores"), {**target(mariadb, "SHOP.scores"), "url": mariadb.jdbc_url("localhost")}),
        (target(mariadb, "archive.t"), {**target(mariadb, "t"), "url": mariadb.jdbc_url(database="Archive")}),
    ]
    for first, second in same:
        with pytest.raises(ConfigError, match="same"):
            load_config(two_targets(first, second), resolve_env=False)
    different = (target(mariadb, "archive.t"), target(mariadb, "t"))
    load_config(two_targets(*different), resolve_env=False)
    for role in ("stage", "prev"):
        name = derived_table_name(LONG, mariadb.jdbc_url(), role)
        assert len(name) <= 64 and name != LONG and name.startswith(LONG[:40])


SLOW_WRITE = (
    "SELECT id, 'new' AS label, reflect('java.lang.Thread', 'sleep', CAST(1000 AS BIGINT)) AS slept "
    "FROM range(0, 600, 1, 600)"
)


def test_one_run_at_a_time_writes_a_mariadb_table(mariadb: MariaDB, tmp_path: Path) -> None:
    mariadb.sql(
        "DROP TABLE IF EXISTS busy; CREATE TABLE busy (id BIGINT, label VARCHAR(20), slept VARCHAR(20));"
        "INSERT INTO busy VALUES (100, 'old', '');"
    )
    config = {
        "app_name": "mariadb_lease",
        "spark_conf": spark_conf("mariadb"),
        "sequences": [{"name": "busy", "query": SLOW_WRITE, "target": target(mariadb, "busy")}],
    }
    holder = start_driver(tmp_path, config, env={**env(mariadb), "SPARKPIPE_RUN_KEY": "backfill-01"})
    try:

        def holding() -> bool:
            if "sparkpipe_leases" not in mariadb.tables():
                return False
            return bool(mariadb.sql("SELECT holder FROM sparkpipe_leases"))

        wait_for(holder, holding, "the first run taking the lease", tmp_path / "driver.log")
        [(text,)] = mariadb.sql("SELECT holder FROM sparkpipe_leases")
        assert json.loads(text)["run_id"] == "backfill-01"
        # the same table spelt another way: qualified, through another name of the loopback host
        quick = {
            **config,
            "sequences": [
                {
                    "name": "busy",
                    "query": "SELECT 1 AS id, 'second' AS label, '' AS slept",
                    "target": {**target(mariadb, "shop.busy"), "url": mariadb.jdbc_url("localhost")},
                }
            ],
        }
        second = run_driver(tmp_path, quick, env={**env(mariadb), "SPARKPIPE_RUN_KEY": "backfill-02"})
        assert second.returncode == 1, second.stderr[-5000:]
        error = second.metrics["sequences"]["busy"]["error"]  # type: ignore[index]
        assert "is being written by run 'backfill-01'" in error and f"pid {holder.pid}" in error, error
    finally:
        kill(holder)
    assert mariadb.sql("SELECT id, label FROM busy") == [("100", "old")]

    # The killed holder's row is stale (its process is gone on this host): a new run takes the lease over.
    third = run_driver(tmp_path, quick, env={**env(mariadb), "SPARKPIPE_RUN_KEY": "backfill-03"})
    assert third.returncode == 0, third.stderr[-5000:]
    assert mariadb.sql("SELECT id, label FROM busy") == [("1", "second")]
    assert [t for t in mariadb.tables() if t.startswith("busy")] == ["busy"]
    assert mariadb.sql("SELECT count(*) FROM sparkpipe_leases") == [("0",)]
