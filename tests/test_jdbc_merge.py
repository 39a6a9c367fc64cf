"""``mode: merge`` into PostgreSQL tables, on the real server: the staged rows merged in one transaction with
``INSERT ... ON CONFLICT`` (and the portable ``UPDATE`` + ``INSERT`` form, chosen by replacing the
dialect), every merge option, duplicate keys, schema drift under each policy, a missing unique constraint,
a failing ``fail`` rule, a killed run, and credentials kept out of every message."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spark_job.config.validation import load_config
from spark_job.dialects import dialect_of, register
from spark_job.engine.runner import PipelineRunner
from spark_job.io.incoming import MergeError

from .connectors.runs import kill, start_driver, wait_for
from .support import POSTGRES_JAR, Postgres

ENV = {"PG_USER": "sparkpipe", "PG_PASSWORD": "sparkpipe"}
CREDENTIALS = {"user": "${env:PG_USER}", "password": "${env:PG_PASSWORD}"}

CHANGES = (
    "SELECT * FROM VALUES (1, 'paid', 20, 'U'), (2, 'stale', 5, 'U'), (3, 'gone', 30, 'D'), (4, 'new', 1, 'I'),"
    " (5, 'gone', 1, 'D') AS v(id, status, updated_at, op)"
)


def merge_config(postgres: Postgres, table: str, query: str, url: str = "", **target: Any) -> dict[str, Any]:
    return {
        "app_name": "merge",
        "spark_conf": {"spark.jars": POSTGRES_JAR},
        "sequences": [
            {
                "name": "orders",
                "query": query,
                "target": {
                    "type": "jdbc",
                    "url": url or postgres.jdbc_url,
                    "table": table,
                    "mode": "merge",
                    "merge_keys": ["id"],
                    **CREDENTIALS,
                    **target,
                },
            }
        ],
    }


def run(spark: Any, config: dict[str, Any], environ: dict[str, str] = ENV) -> dict[str, Any]:
    return PipelineRunner(load_config(config, environ=environ), spark=spark).run()


def rows(postgres: Postgres, sql: str) -> list[tuple[Any, ...]]:
    with postgres.connect() as conn:
        return conn.execute(sql).fetchall()


def leftovers(postgres: Postgres, table: str) -> list[tuple[Any, ...]]:
    """Tables named after ``table`` beside it (its staging table)."""
    return rows(postgres, f"SELECT tablename FROM pg_tables WHERE tablename LIKE '{table}\\_\\_sp%'")


@pytest.fixture()
def orders(postgres: Postgres) -> str:
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS orders")
        conn.execute("CREATE TABLE orders (id BIGINT PRIMARY KEY, status TEXT, updated_at INT, op TEXT)")
        conn.execute("INSERT INTO orders VALUES (1, 'new', 10, 'I'), (2, 'new', 10, 'I'), (3, 'new', 10, 'I')")
    return "public.orders"


def test_merge_updates_inserts_and_deletes_in_one_transaction(spark: Any, postgres: Postgres, orders: str) -> None:
    """Newer rows update (merge_condition keeps the newer target row), op = 'D' deletes a matched row (an
    unmatched one is not inserted), new keys are inserted; the counts come from the statements."""
    config = merge_config(
        postgres, orders, CHANGES, merge_condition="t.updated_at < s.updated_at", delete_when="op = 'D'"
    )
    metrics = run(spark, config)
    seq = metrics["sequences"]["orders"]
    assert seq["status"] == "succeeded", seq
    assert (seq["rows_written"], seq["rows_inserted"], seq["rows_updated"], seq["rows_deleted"]) == (5, 1, 1, 1)
    assert rows(postgres, "SELECT id, status, updated_at FROM orders ORDER BY id") == [
        (1, "paid", 20),
        (2, "new", 10),  # its change is older than the row: kept
        (4, "new", 1),
    ]
    assert leftovers(postgres, "orders") == []
    # the run's summary says what changed
    from spark_job.outcomes import sequence_outcome

    assert "(1 inserted, 1 updated, 1 deleted)" in sequence_outcome(seq)

    # The same input again: nothing left to insert or delete; the condition keeps every row as it is.
    again = run(spark, config)["sequences"]["orders"]
    assert (again["rows_inserted"], again["rows_updated"], again["rows_deleted"]) == (0, 0, 0)
    assert len(rows(postgres, "SELECT * FROM orders")) == 3


def test_update_columns_and_exclude_columns(spark: Any, postgres: Postgres) -> None:
    with postgres.connect() as conn:
        for table in ("only_status", "all_but_op"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, status TEXT, updated_at INT, op TEXT)")
            conn.execute(f"INSERT INTO {table} VALUES (1, 'new', 10, 'I')")
    query = "SELECT 1 AS id, 'paid' AS status, 20 AS updated_at, 'U' AS op UNION ALL SELECT 2, 'new', 1, 'I'"
    config = merge_config(postgres, "only_status", query, merge_update_columns=["status"])
    second = merge_config(postgres, "all_but_op", query, merge_exclude_columns=["op"])
    config["sequences"].append({**second["sequences"][0], "name": "all_but_op"})
    metrics = run(spark, config)
    assert metrics["status"] == "succeeded", metrics
    assert rows(postgres, "SELECT * FROM only_status ORDER BY id") == [(1, "paid", 10, "I"), (2, "new", 1, "I")]
    assert rows(postgres, "SELECT * FROM all_but_op ORDER BY id") == [(1, "paid", 20, "I"), (2, "new", 1, "I")]


def test_a_missing_target_is_created_with_the_keys_as_primary_key(spark: Any, postgres: Postgres) -> None:
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS fresh")
    query = "SELECT 'k' || id AS code, id AS Amount FROM range(1, 4)"
    config = merge_config(postgres, "fresh", query, merge_keys=["code"], delete_when="Amount = 3")
    first = run(spark, config)["sequences"]["orders"]
    assert (first["rows_inserted"], first["rows_updated"], first["rows_deleted"]) == (2, 0, 0), first
    assert rows(postgres, 'SELECT code, "Amount" FROM fresh ORDER BY code') == [("k1", 1), ("k2", 2)]
    primary = rows(
        postgres,
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = 'fresh'::regclass AND i.indisprimary",
    )
    assert primary == [("code",)]
    assert "sparkpipe_delete" not in {
        c for (c,) in rows(postgres, "SELECT column_name FROM information_schema.columns WHERE table_name = 'fresh'")
    }
    # Rerunning the same rows updates them in place: nothing is inserted twice.
    again = run(spark, config)["sequences"]["orders"]
    assert (again["rows_inserted"], again["rows_updated"]) == (0, 2)
    assert rows(postgres, "SELECT count(*) FROM fresh") == [(2,)]


def test_duplicate_keys_fail_before_anything_is_written_or_the_latest_wins(
    spark: Any, postgres: Postgres, orders: str
) -> None:
    query = (
        "SELECT * FROM VALUES (1, 'a', 11, 'U'), (1, 'b', 12, 'U'), (2, 'c', 13, 'U'), (2, 'd', 11, 'U'),"
        " (9, 'e', 1, 'I') AS v(id, status, updated_at, op)"
    )
    failed = run(spark, merge_config(postgres, orders, query))
    error = failed["sequences"]["orders"]["error"]
    assert failed["status"] == "failed"
    assert "sequence orders: the incoming rows repeat merge_keys (id)" in error, error
    assert "(id=1) in 2 rows" in error and "(id=2) in 2 rows" in error and "deduplicate" in error
    assert rows(postgres, "SELECT id, status FROM orders ORDER BY id") == [(1, "new"), (2, "new"), (3, "new")]
    assert leftovers(postgres, "orders") == []

    latest = run(spark, merge_config(postgres, orders, query, deduplicate={"latest_by": "updated_at"}))
    seq = latest["sequences"]["orders"]
    assert (seq["rows_written"], seq["rows_inserted"], seq["rows_updated"]) == (5, 1, 2), seq
    assert rows(postgres, "SELECT id, status FROM orders ORDER BY id") == [(1, "b"), (2, "c"), (3, "new"), (9, "e")]


@pytest.mark.parametrize("policy", ["fail", "append_new_columns", "sync"])
def test_schema_drift_under_each_policy(spark: Any, postgres: Postgres, orders: str, policy: str) -> None:
    """The query adds a column (channel) and lacks one (op); columns are matched by name, whatever their
    order or case."""
    query = "SELECT 'web' AS channel, 25 AS updated_at, 'paid' AS STATUS, 1 AS id"
    metrics = run(spark, merge_config(postgres, orders, query, on_schema_change=policy))
    columns = [
        c
        for (c,) in rows(
            postgres,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders' ORDER BY ordinal_position",
        )
    ]
    if policy == "fail":
        error = metrics["sequences"]["orders"]["error"]
        assert "the query returns channel, which the target lacks" in error, error
        assert "the target has op, which the query does not return" in error and "on_schema_change" in error
        assert columns == ["id", "status", "updated_at", "op"]
        assert rows(postgres, "SELECT status FROM orders WHERE id = 1") == [("new",)]
        return
    assert metrics["status"] == "succeeded", metrics
    if policy == "append_new_columns":
        assert columns == ["id", "status", "updated_at", "op", "channel"]
        assert rows(postgres, "SELECT id, status, updated_at, op, channel FROM orders ORDER BY id") == [
            (1, "paid", 25, "I", "web"),  # op kept
            (2, "new", 10, "I", None),
            (3, "new", 10, "I", None),
        ]
    else:
        assert columns == ["id", "status", "updated_at", "channel"]
        assert rows(postgres, "SELECT id, status, updated_at, channel FROM orders WHERE id = 1") == [
            (1, "paid", 25, "web")
        ]


def test_a_missing_unique_constraint_is_an_error_naming_the_ddl(spark: Any, postgres: Postgres) -> None:
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS keyless")
        conn.execute("CREATE TABLE keyless (id INT, region TEXT, status TEXT, UNIQUE (id, region))")
        conn.execute("INSERT INTO keyless VALUES (1, 'eu', 'new')")
    metrics = run(spark, merge_config(postgres, "keyless", "SELECT 1 AS id, 'eu' AS region, 'paid' AS status"))
    error = metrics["sequences"]["orders"]["error"]
    assert "mode merge into keyless" in error and "merge keys (id)" in error, error
    assert 'ALTER TABLE keyless ADD UNIQUE ("id")' in error
    assert rows(postgres, "SELECT status FROM keyless") == [("new",)]
    assert leftovers(postgres, "keyless") == []
    # keys matching the constraint (in any order) merge
    both = run(
        spark,
        merge_config(
            postgres, "keyless", "SELECT 'eu' AS region, 1 AS id, 'paid' AS status", merge_keys=["region", "id"]
        ),
    )
    assert both["status"] == "succeeded", both
    assert rows(postgres, "SELECT id, region, status FROM keyless") == [(1, "eu", "paid")]


def test_a_failing_fail_rule_leaves_the_table_untouched(spark: Any, postgres: Postgres, orders: str) -> None:
    config = merge_config(postgres, orders, CHANGES, delete_when="op = 'D'")
    config["sequences"][0]["expectations"] = [
        {"name": "known_status", "condition": "status <> 'gone'", "on_fail": "fail"}
    ]
    metrics = run(spark, config)
    seq = metrics["sequences"]["orders"]
    assert seq["status"] == "failed" and "the target keeps its old data" in seq["error"], seq
    assert "rows_inserted" not in seq
    assert rows(postgres, "SELECT id, status FROM orders ORDER BY id") == [(1, "new"), (2, "new"), (3, "new")]
    assert leftovers(postgres, "orders") == []


@pytest.fixture()
def portable() -> Iterator[None]:
    """PostgreSQL's dialect with the portable upsert: UPDATE of the matched rows, then INSERT of the others."""
    own = dialect_of("jdbc:postgresql://h/db")
    register(dataclasses.replace(own, upsert="update_insert", delete_join="exists", update_join="correlated"))
    try:
        yield
    finally:
        register(own)


def test_the_portable_form_on_postgresql(spark: Any, postgres: Postgres, portable: None) -> None:
    """UPDATE + INSERT in one transaction needs no unique constraint; the counts are the statements'."""
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS plain_orders")
        conn.execute("CREATE TABLE plain_orders (id BIGINT, status TEXT, updated_at INT, op TEXT)")
        conn.execute("INSERT INTO plain_orders VALUES (1, 'new', 10, 'I'), (2, 'new', 10, 'I'), (3, 'new', 10, 'I')")
    config = merge_config(
        postgres, "plain_orders", CHANGES, merge_condition="t.updated_at < s.updated_at", delete_when="op = 'D'"
    )
    seq = run(spark, config)["sequences"]["orders"]
    assert (seq["rows_inserted"], seq["rows_updated"], seq["rows_deleted"]) == (1, 1, 1), seq
    assert rows(postgres, "SELECT id, status, updated_at FROM plain_orders ORDER BY id") == [
        (1, "paid", 20),
        (2, "new", 10),
        (4, "new", 1),
    ]
    with postgres.connect() as conn:
        conn.execute("DROP TABLE plain_orders")
    created = run(spark, config)["sequences"]["orders"]  # created from the first rows, then merged
    assert (created["rows_inserted"], created["rows_deleted"]) == (3, 0), created
    assert rows(postgres, "SELECT id FROM plain_orders ORDER BY id") == [(1,), (2,), (4,)]


def test_a_commit_step_runs_in_the_merge_transaction(spark: Any, postgres: Postgres, orders: str) -> None:
    """What a step writes on the transaction's connection commits with the merge; a failing step rolls both back."""
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS marks")
        conn.execute("CREATE TABLE marks (mark TEXT)")

    def mark(conn: Any) -> None:
        stmt = conn.createStatement()
        stmt.executeUpdate("INSERT INTO marks VALUES ('merged')")
        stmt.close()

    def broken(conn: Any) -> None:
        mark(conn)
        raise RuntimeError("the watermark could not be stored")

    for step, status in ((broken, "failed"), (mark, "succeeded")):
        loaded = load_config(merge_config(postgres, orders, CHANGES), environ=ENV)
        loaded.sequences[0].writer.add_commit_step(step)  # type: ignore[attr-defined]
        assert PipelineRunner(loaded, spark=spark).run()["status"] == status
        if status == "failed":
            assert rows(postgres, "SELECT count(*) FROM marks") == [(0,)]
            assert rows(postgres, "SELECT status FROM orders WHERE id = 1") == [("new",)]
    assert rows(postgres, "SELECT mark FROM marks") == [("merged",)]
    assert rows(postgres, "SELECT status FROM orders WHERE id = 1") == [("paid",)]


def test_credentials_never_reach_a_message(spark: Any, postgres: Postgres, orders: str) -> None:
    secret = "Merge-Pw-7f3e9"
    with postgres.connect() as conn:
        conn.execute("DROP ROLE IF EXISTS merger")
        conn.execute(f"CREATE ROLE merger LOGIN PASSWORD '{secret}'")
        conn.execute("GRANT ALL ON orders TO merger")
        conn.execute("GRANT CREATE, USAGE ON SCHEMA public TO merger")
    environ = {"PG_USER": "merger", "PG_PASSWORD": secret}
    configs = [
        merge_config(postgres, orders, CHANGES, merge_condition="t.no_such_column < s.updated_at"),
        merge_config(postgres, orders, CHANGES, merge_keys=["status"]),  # no unique constraint on it
        merge_config(postgres, orders, "SELECT 1 AS id UNION ALL SELECT 1"),  # duplicate keys
        merge_config(postgres, orders, CHANGES, url=f"{postgres.jdbc_url}?password={secret}", merge_keys=["op"]),
    ]
    for config in configs:
        metrics = run(spark, config, environ)
        assert metrics["status"] == "failed", metrics
        assert secret not in str(metrics), metrics["sequences"]["orders"]["error"]
    assert "no_such_column" in run(spark, configs[0], environ)["sequences"]["orders"]["error"]


def test_a_killed_merge_leaves_the_target_untouched(spark: Any, postgres: Postgres, tmp_path: Path) -> None:
    """SIGKILL while the merge's statement runs: the database rolls the transaction back; the next run merges."""
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS ledger")
        conn.execute("CREATE TABLE ledger (id BIGINT PRIMARY KEY, version TEXT)")
        conn.execute("INSERT INTO ledger SELECT g, 'old' FROM generate_series(0, 999999) g")
    query = "SELECT id, 'new' AS version FROM range(0, 1500000)"
    config = merge_config(postgres, "public.ledger", query, batchsize=20000)
    config["sequences"][0]["name"] = "orders"

    def merging() -> bool:
        """Whether a backend runs the merge's statement."""
        found = rows(
            postgres,
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            " AND state = 'active' AND query LIKE '%INSERT INTO public.ledger AS t%'",
        )
        return bool(found[0][0])

    driver = start_driver(tmp_path, config, env=ENV)
    try:
        wait_for(driver, merging, "the merge statement running", tmp_path / "driver.log")
    finally:
        kill(driver)
    # The server ends the statement it was running, finds its client gone and rolls the transaction back.
    postgres.wait_for_killed_clients()
    assert rows(postgres, "SELECT count(*), min(version), max(version) FROM ledger") == [(1_000_000, "old", "old")]

    config["sequences"][0]["target"]["batchsize"] = 1000
    config["sequences"][0]["query"] = "SELECT id, 'new' AS version FROM range(999990, 1000010)"
    seq = run(spark, config)["sequences"]["orders"]
    assert (seq["rows_inserted"], seq["rows_updated"]) == (10, 10), seq
    assert rows(postgres, "SELECT count(*) FROM ledger WHERE version = 'new'") == [(20,)]
    assert leftovers(postgres, "ledger") == []


def test_a_discarded_merge_drops_its_staging_and_releases_the_lease(
    spark: Any, postgres: Postgres, orders: str
) -> None:
    """What a cancelled sequence does after begin_write: the staged rows go, the target and the lease stay free."""
    loaded = load_config(merge_config(postgres, orders, CHANGES, delete_when="op = 'D'"), environ=ENV)
    writer = loaded.sequences[0].writer
    staged = writer.begin_write(spark.sql(CHANGES))
    assert leftovers(postgres, "orders") != []  # the rows are staged beside the target
    staged.discard()
    assert leftovers(postgres, "orders") == []
    assert rows(postgres, "SELECT id, status FROM orders ORDER BY id") == [(1, "new"), (2, "new"), (3, "new")]
    assert rows(postgres, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]
    # the next write takes the lease and merges
    again = writer.begin_write(spark.sql(CHANGES))
    again.commit()
    assert again.changes == {"rows_inserted": 1, "rows_updated": 2, "rows_deleted": 1}


def test_a_setting_naming_a_column_the_query_lacks_is_named(spark: Any, postgres: Postgres, orders: str) -> None:
    config = merge_config(postgres, orders, CHANGES, merge_keys=["order_id"], deduplicate={"latest_by": "changed"})
    error = run(spark, config)["sequences"]["orders"]["error"]
    assert error.startswith(
        "sequence orders: merge_keys names 'order_id'; deduplicate.latest_by names 'changed', which the query does "
        "not return (its columns: id, status, updated_at, op)"
    ), error
    assert rows(postgres, "SELECT count(*) FROM orders") == [(3,)]


def test_a_merge_on_a_spark_connect_client_says_where_to_run_it(
    spark_connect: Any, postgres: Postgres, orders: str
) -> None:
    """The merge's transaction runs through the JDBC driver of the Spark driver's JVM, which a client lacks."""
    loaded = load_config(merge_config(postgres, orders, CHANGES), environ=ENV)
    writer = loaded.sequences[0].writer
    writer.sequence = "orders"
    assert not writer.can_stage(spark_connect)
    with pytest.raises(MergeError, match=r"sequence orders: mode merge into public\.orders runs its transaction"):
        writer.begin_write(spark_connect.sql(CHANGES))
    assert rows(postgres, "SELECT count(*) FROM orders WHERE status = 'new'") == [(3,)]
