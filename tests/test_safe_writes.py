"""A killed run never leaves a target half-written: the driver is SIGKILLed in the middle of a write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import POSTGRES_JAR, Postgres

NEW_ROWS = 12_000_000


def start_driver(tmp_path: Path, config: dict, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    path = tmp_path / f"config-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(config))
    with open(tmp_path / "driver.log", "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "spark_job", "run", "--config", str(path), "--master", "local[1]"],
            start_new_session=True,  # its own process group: the JVM dies with it
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, **(env or {})},
        )


def kill_when(proc: subprocess.Popen[bytes], condition: Callable[[], bool], what: str) -> None:
    """SIGKILL the driver's whole process group as soon as ``condition`` holds."""
    deadline = time.monotonic() + 240
    while not condition():
        if proc.poll() is not None:
            log = Path(proc.args[5]).with_name("driver.log").read_text()[-3000:]  # type: ignore[index]
            pytest.fail(f"the driver ended (exit {proc.returncode}) before {what}:\n{log}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"{what} never happened")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_driver(tmp_path: Path, config: dict, env: dict[str, str] | None = None) -> None:
    proc = start_driver(tmp_path, config, env)
    assert proc.wait(timeout=600) == 0


def big_write(target: dict, query: str) -> dict:
    return {
        "app_name": "big_write",
        "spark_conf": {"spark.jars": POSTGRES_JAR},
        "sequences": [{"name": "big", "query": query, "target": target}],
    }


def writing(staging: Path) -> Callable[[], bool]:
    """True once Spark has data files in flight under ``staging``."""
    return lambda: staging.exists() and any(p.name.startswith("part-") for p in staging.rglob("*"))


def test_killed_overwrite_leaves_the_old_data_then_a_rerun_replaces_it(spark: Any, tmp_path: Path) -> None:
    target = tmp_path / "lake" / "numbers"
    spark.range(1000).selectExpr("id", "'old' AS version").write.parquet(str(target))
    config = big_write(
        {"type": "parquet", "path": str(target), "mode": "overwrite"},
        f"SELECT id, 'new' AS version FROM range({NEW_ROWS}) DISTRIBUTE BY id % 7",
    )

    kill_when(start_driver(tmp_path, config), writing(target.parent / ".numbers.sparkpipe-staging"), "the write began")
    old = spark.read.parquet(str(target))
    assert old.count() == 1000 and {r.version for r in old.select("version").distinct().collect()} == {"old"}

    run_driver(tmp_path, config)
    new = spark.read.parquet(str(target))
    assert new.count() == NEW_ROWS and {r.version for r in new.select("version").distinct().collect()} == {"new"}
    assert sorted(p.name for p in target.parent.iterdir()) == ["numbers"]  # nothing left beside it


def test_killed_dynamic_partition_overwrite_keeps_every_partition(spark: Any, tmp_path: Path) -> None:
    target = tmp_path / "by_day"
    spark.range(400).selectExpr("id", "CAST(id % 4 AS INT) AS day").write.partitionBy("day").parquet(str(target))
    config = big_write(
        {"type": "parquet", "path": str(target), "partition_by": ["day"], "dynamic_partition_overwrite": True},
        f"SELECT id, 2 AS day FROM range({NEW_ROWS})",
    )

    kill_when(start_driver(tmp_path, config), writing(target), "the write began")
    counts = {r.day: r["count"] for r in spark.read.parquet(str(target)).groupBy("day").count().collect()}
    assert counts == {0: 100, 1: 100, 2: 100, 3: 100}

    run_driver(tmp_path, config)
    counts = {r.day: r["count"] for r in spark.read.parquet(str(target)).groupBy("day").count().collect()}
    assert counts == {0: 100, 1: 100, 2: NEW_ROWS, 3: 100}


def test_killed_jdbc_overwrite_leaves_the_old_table_then_a_rerun_swaps(postgres: Postgres, tmp_path: Path) -> None:
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS ledger")
        conn.execute("CREATE TABLE ledger AS SELECT g AS id, 'old' AS version FROM generate_series(1, 500) g")
    rows = 3_000_000
    config = big_write(
        {
            "type": "jdbc",
            "url": postgres.jdbc_url,
            "table": "public.ledger",
            "user": "${env:PG_USER}",
            "password": "${env:PG_PASSWORD}",
            "batchsize": 10000,
            "mode": "overwrite",
        },
        f"SELECT id, 'new' AS version FROM range({rows})",
    )
    env = {"PG_USER": postgres.user, "PG_PASSWORD": postgres.password}

    def staging_has_rows() -> bool:
        with postgres.connect() as conn:
            found = conn.execute("SELECT to_regclass('public.ledger__sparkpipe_staging')").fetchone()
            if found is None or found[0] is None:
                return False
            return conn.execute("SELECT count(*) FROM ledger__sparkpipe_staging").fetchone()[0] > 0  # type: ignore[index]

    kill_when(start_driver(tmp_path, config, env), staging_has_rows, "rows reached the staging table")
    with postgres.connect() as conn:
        assert conn.execute("SELECT count(*), min(version), max(version) FROM ledger").fetchone() == (500, "old", "old")

    run_driver(tmp_path, config, env)
    with postgres.connect() as conn:
        assert conn.execute("SELECT count(*), min(version) FROM ledger").fetchone() == (rows, "new")
        leftovers = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'ledger__sparkpipe%'").fetchone()
    assert leftovers == (0,)


def test_jdbc_append_is_all_or_nothing(spark: Any, postgres: Postgres, tmp_path: Path) -> None:
    from spark_job.config import load_config
    from spark_job.runner import PipelineRunner

    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS events_log")
        conn.execute("CREATE TABLE events_log (id BIGINT PRIMARY KEY, note TEXT)")
        conn.execute("INSERT INTO events_log VALUES (5, 'existing')")
    target = {
        "type": "jdbc",
        "url": postgres.jdbc_url,
        "table": "events_log",
        "user": postgres.user,
        "password": postgres.password,
        "mode": "append",
    }
    # ids 0..9 collide with the existing row 5 only when the copy into the target runs: nothing may land
    clash = load_config(
        {
            "app_name": "a",
            "sequences": [{"name": "s", "query": "SELECT id, 'x' AS note FROM range(10)", "target": target}],
        }
    )
    metrics = PipelineRunner(clash, spark=spark).run()
    assert metrics["sequences"]["s"]["status"] == "failed" and "duplicate key" in metrics["sequences"]["s"]["error"]
    with postgres.connect() as conn:
        assert conn.execute("SELECT count(*) FROM events_log").fetchone() == (1,)
        assert conn.execute("SELECT to_regclass('events_log__sparkpipe_staging')").fetchone() == (None,)

    ok = load_config(
        {
            "app_name": "a",
            "sequences": [{"name": "s", "query": "SELECT id + 10 AS id, 'y' AS note FROM range(10)", "target": target}],
        }
    )
    assert PipelineRunner(ok, spark=spark).run()["sequences"]["s"]["rows_written"] == 10
    with postgres.connect() as conn:
        assert conn.execute("SELECT count(*) FROM events_log").fetchone() == (11,)
        # the table's definition (its primary key) survived: append copies rows, it does not recreate
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'events_log'").fetchone() == (1,)
