"""``mode: merge`` into MariaDB tables (MariaDB Connector/J, a real server), in one driver run: ``INSERT ...
ON DUPLICATE KEY UPDATE`` from the staging table, the joined ``UPDATE`` + ``INSERT`` a merge_condition
takes, delete_when, update columns, a target created with a text key as its primary key, schema drift
under each policy, duplicate keys and a missing unique key refused before anything is written."""

from __future__ import annotations

import time
from pathlib import Path

from .conftest import MariaDB
from .jars import spark_conf
from .runs import kill, run_driver, start_driver, wait_for

CREDENTIALS = {"user": "${env:MARIADB_USER}", "password": "${env:MARIADB_PASSWORD}"}
CHANGES = (
    "SELECT * FROM VALUES (1, 'paid', 20, 'U'), (2, 'stale', 5, 'U'), (3, 'gone', 30, 'D'), (4, 'new', 1, 'I'),"
    " (5, 'gone', 1, 'D') AS v(id, status, updated_at, op)"
)
ORDERS = "(id BIGINT PRIMARY KEY, status VARCHAR(20), updated_at INT, op VARCHAR(1))"
OLD = "(1, 'new', 10, 'I'), (2, 'new', 10, 'I'), (3, 'new', 10, 'I')"


def sequence(db: MariaDB, name: str, table: str, query: str = CHANGES, **target: object) -> dict[str, object]:
    return {
        "name": name,
        "query": query,
        "target": {
            "type": "jdbc",
            "url": db.jdbc_url(),
            "table": table,
            "mode": "merge",
            "merge_keys": ["id"],
            **CREDENTIALS,
            **target,
        },
    }


def test_merges_into_mariadb(mariadb: MariaDB, tmp_path: Path) -> None:
    tables = (
        "upserted",
        "newer",
        "only_status",
        "latest",
        "ruled",
        "broken",
        "drifted",
        "synced",
        "refused_drift",
        "dupes",
        "keyless",
    )
    mariadb.sql(
        f"DROP TABLE IF EXISTS {', '.join(tables)}, created;"
        + "".join(f"CREATE TABLE {t} {ORDERS}; INSERT INTO {t} VALUES {OLD};" for t in tables[:-1])
        + "CREATE TABLE keyless (id BIGINT, status VARCHAR(20)); INSERT INTO keyless VALUES (1, 'new');"
    )
    drift = "SELECT 1 AS id, 'paid' AS status, 'web' AS channel"
    config = {
        "app_name": "mariadb_merge",
        "spark_conf": spark_conf("mariadb"),
        "sequences": [
            sequence(mariadb, "upserted", "upserted", delete_when="op = 'D'"),
            sequence(
                mariadb, "newer", "shop.newer", delete_when="op = 'D'", merge_condition="t.updated_at < s.updated_at"
            ),
            sequence(mariadb, "only_status", "only_status", merge_update_columns=["status"]),
            sequence(
                mariadb,
                "latest",
                "latest",
                f"{CHANGES} UNION ALL SELECT 1, 'older', 15, 'X'",
                merge_exclude_columns=["op"],
                deduplicate={"latest_by": "updated_at"},
            ),
            {
                **sequence(mariadb, "ruled", "ruled"),
                "expectations": [{"name": "known", "condition": "status <> 'gone'", "on_fail": "fail"}],
            },
            sequence(mariadb, "broken", "broken", merge_condition="t.no_such_column < s.updated_at"),
            sequence(
                mariadb,
                "created",
                "created",
                "SELECT concat('k', id) AS code, id AS amount FROM range(1, 4)",
                merge_keys=["code"],
                delete_when="amount = 3",
            ),
            sequence(mariadb, "drifted", "drifted", drift, on_schema_change="append_new_columns"),
            sequence(mariadb, "synced", "synced", drift, on_schema_change="sync"),
            sequence(mariadb, "refused_drift", "refused_drift", drift),
            sequence(
                mariadb,
                "dupes",
                "dupes",
                "SELECT 1 AS id, 'a' AS status, 1 AS updated_at, 'U' AS op UNION ALL SELECT 1, 'b', 2, 'U'",
            ),
            sequence(mariadb, "keyless", "keyless", "SELECT 1 AS id, 'paid' AS status"),
        ],
    }
    secret = "Maria-Merge-Pw-93"
    mariadb.sql(
        f"DROP USER IF EXISTS 'merger'@'%'; CREATE USER 'merger'@'%' IDENTIFIED BY '{secret}';"
        "GRANT ALL ON shop.* TO 'merger'@'%';",
        database="mysql",
    )
    run = run_driver(tmp_path, config, env={"MARIADB_USER": "merger", "MARIADB_PASSWORD": secret})
    assert run.metrics is not None, run.stderr[-5000:]
    assert secret not in run.stdout + run.stderr  # the metrics line and every log line
    seqs = run.metrics["sequences"]
    failed = {"ruled", "broken", "refused_drift", "dupes", "keyless"}
    assert {n: s["status"] for n, s in seqs.items()} == {n: "failed" if n in failed else "succeeded" for n in seqs}, (
        run.stderr[-5000:]
    )

    def counts(name: str) -> tuple[int, int, int, int]:
        s = seqs[name]
        return s["rows_written"], s["rows_inserted"], s["rows_updated"], s["rows_deleted"]

    # ON DUPLICATE KEY UPDATE: every matched row takes the incoming values
    assert counts("upserted") == (5, 1, 2, 1)
    assert mariadb.sql("SELECT id, status, updated_at FROM upserted ORDER BY id") == [
        ("1", "paid", "20"),
        ("2", "stale", "5"),
        ("4", "new", "1"),
    ]
    # merge_condition: a joined UPDATE keeps the newer target row, the INSERT adds the others
    assert counts("newer") == (5, 1, 1, 1)
    assert mariadb.sql("SELECT id, status, updated_at FROM newer ORDER BY id") == [
        ("1", "paid", "20"),
        ("2", "new", "10"),
        ("4", "new", "1"),
    ]
    assert mariadb.sql("SELECT id, status, updated_at, op FROM only_status WHERE id < 3 ORDER BY id") == [
        ("1", "paid", "10", "I"),
        ("2", "stale", "10", "I"),
    ]
    # the latest row per key wins; op is never updated
    assert counts("latest") == (6, 2, 3, 0)
    assert mariadb.sql("SELECT id, status, updated_at, op FROM latest ORDER BY id") == [
        ("1", "paid", "20", "I"),
        ("2", "stale", "5", "I"),
        ("3", "gone", "30", "I"),
        ("4", "new", "1", "I"),
        ("5", "gone", "1", "D"),
    ]
    # a failing fail rule and a failing statement leave the table as it was
    assert "the target keeps its old data" in seqs["ruled"]["error"], seqs["ruled"]["error"]
    assert "no_such_column" in seqs["broken"]["error"], seqs["broken"]["error"]
    for table in ("ruled", "broken"):
        assert mariadb.sql(f"SELECT id, status FROM {table} ORDER BY id") == [(str(i), "new") for i in (1, 2, 3)]
    # created from the first rows, the text key typed so that it is the primary key
    assert counts("created") == (3, 2, 0, 0)
    assert mariadb.sql("SELECT code, amount FROM created ORDER BY code") == [("k1", "1"), ("k2", "2")]
    primary = mariadb.sql("SHOW INDEX FROM created WHERE Key_name = 'PRIMARY'")
    assert [row[4] for row in primary] == ["code"]
    # schema drift: new columns added (ALTER TABLE), missing ones kept or dropped
    assert mariadb.sql("SELECT id, status, updated_at, op, channel FROM drifted WHERE id = 1") == [
        ("1", "paid", "10", "I", "web")
    ]
    assert mariadb.sql("SELECT * FROM synced ORDER BY id") == [
        ("1", "paid", "web"),
        ("2", "new", "NULL"),
        ("3", "new", "NULL"),
    ]
    error = seqs["refused_drift"]["error"]
    assert "the query returns channel, which the target lacks" in error and "on_schema_change" in error, error
    error = seqs["dupes"]["error"]
    assert "sequence dupes: the incoming rows repeat merge_keys (id): (id=1) in 2 rows" in error, error
    error = seqs["keyless"]["error"]
    assert "ON DUPLICATE KEY UPDATE" in error and "ALTER TABLE keyless ADD UNIQUE (`id`)" in error, error
    for table in ("refused_drift", "dupes", "ruled", "broken"):
        assert mariadb.sql(f"SELECT status FROM {table} ORDER BY id") == [("new",)] * 3, table
    assert mariadb.sql("SELECT status FROM keyless") == [("new",)]
    # nothing beside the targets: no staging table, no lease left
    assert set(mariadb.tables()) >= {*tables, "created"}
    assert not [t for t in mariadb.tables() if "__sp" in t]
    assert mariadb.sql("SELECT count(*) FROM sparkpipe_leases") == [("0",)]


def test_a_killed_merge_leaves_the_mariadb_table_untouched(mariadb: MariaDB, tmp_path: Path) -> None:
    """SIGKILL while ON DUPLICATE KEY UPDATE runs: the server rolls the transaction back; the next run merges."""
    mariadb.sql(
        "DROP TABLE IF EXISTS ledger; CREATE TABLE ledger (id BIGINT PRIMARY KEY, version VARCHAR(8));"
        "INSERT INTO ledger SELECT seq, 'old' FROM seq_0_to_299999;"
    )
    env = {"MARIADB_USER": mariadb.user, "MARIADB_PASSWORD": mariadb.password}
    query = "SELECT id, 'new' AS version FROM range(0, 600000)"
    config = {
        "app_name": "mariadb_merge_kill",
        "spark_conf": spark_conf("mariadb"),
        "sequences": [sequence(mariadb, "ledger", "ledger", query, batchsize=20000)],
    }

    def merging() -> bool:
        found = mariadb.sql(
            "SELECT count(*) FROM information_schema.processlist WHERE id <> connection_id()"
            " AND info LIKE 'INSERT INTO ledger%ON DUPLICATE KEY UPDATE%'"
        )
        return found != [("0",)]

    driver = start_driver(tmp_path, config, env=env)
    try:
        wait_for(driver, merging, "the merge statement running", tmp_path / "driver.log")
    finally:
        kill(driver)
    while merging():  # the server ends the statement, finds its client gone, rolls back
        time.sleep(0.2)
    assert mariadb.sql("SELECT count(*), min(version), max(version) FROM ledger") == [("300000", "old", "old")]

    config["sequences"] = [
        sequence(mariadb, "ledger", "ledger", "SELECT id, 'new' AS version FROM range(299990, 300010)")
    ]
    run = run_driver(tmp_path, config, env=env)
    assert run.returncode == 0, run.stderr[-5000:]
    seq = run.metrics["sequences"]["ledger"]  # type: ignore[index]
    assert (seq["rows_inserted"], seq["rows_updated"]) == (10, 10), seq
    assert mariadb.sql("SELECT count(*) FROM ledger WHERE version = 'new'") == [("20",)]
    assert not [t for t in mariadb.tables() if "__sp" in t]
    assert mariadb.sql("SELECT count(*) FROM sparkpipe_leases") == [("0",)]
