"""A killed run never leaves a target half-written: the driver is SIGKILLed in the middle of a write."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from spark_job.io.filesystems import local_path
from spark_job.io.swap import staging_table

from .conftest import POSTGRES_JAR, Postgres
from .support import kill_tree

NEW_ROWS = 12_000_000  # a write long enough to be killed in the middle
RERUN_ROWS = 20_000  # the rerun after the kill only has to finish


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
            kill_tree(proc)
            pytest.fail(f"{what} never happened")
        time.sleep(0.05)
    kill_tree(proc)  # the driver and its JVM at once, as a lost machine would


def rerun(spark: Any, config: dict, env: dict[str, str] | None = None) -> None:
    """The run after the kill, on the test session: what it must cope with is on disk, not in a process."""
    from spark_job.config.validation import load_config
    from spark_job.engine.runner import PipelineRunner

    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        metrics = PipelineRunner(load_config(config), spark=spark).run()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert metrics["status"] == "succeeded", metrics


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
        f"SELECT id, 'new' AS version FROM range({NEW_ROWS})",
    )

    small = f"SELECT id, 'new' AS version FROM range({RERUN_ROWS}) DISTRIBUTE BY id % 7"
    kill_when(start_driver(tmp_path, config), writing(target.parent / ".numbers.sparkpipe-staging"), "the write began")
    old = spark.read.parquet(str(target))
    assert old.count() == 1000 and {r.version for r in old.select("version").distinct().collect()} == {"old"}

    rerun(spark, {**config, "sequences": [{**config["sequences"][0], "query": small}]})
    new = spark.read.parquet(str(target))
    assert new.count() == RERUN_ROWS and {r.version for r in new.select("version").distinct().collect()} == {"new"}
    assert sorted(p.name for p in target.parent.iterdir()) == ["numbers"]  # nothing left beside it


def spark_leftovers(target: Path) -> list[str]:
    """Spark's job folders inside a target (``.spark-staging-*``, ``_temporary``), with files in them."""
    return [
        p.name
        for p in target.iterdir()
        if p.is_dir() and p.name.startswith((".", "_")) and any(f.name.startswith("part-") for f in p.rglob("*"))
    ]


@pytest.mark.parametrize("how", ["target option", "spark_conf"])
def test_killed_dynamic_partition_overwrite_keeps_every_partition(spark: Any, tmp_path: Path, how: str) -> None:
    target = tmp_path / "by_day"
    spark.range(400).selectExpr("id", "CAST(id % 4 AS INT) AS day").write.partitionBy("day").parquet(str(target))
    spec: dict[str, Any] = {"type": "parquet", "path": str(target), "partition_by": ["day"]}
    if how == "target option":
        spec["dynamic_partition_overwrite"] = True
    config = big_write(spec, f"SELECT id, 2 AS day FROM range({NEW_ROWS})")
    if how == "spark_conf":
        config["spark_conf"]["spark.sql.sources.partitionOverwriteMode"] = "DYNAMIC"

    kill_when(start_driver(tmp_path, config), lambda: bool(spark_leftovers(target)), "the write began")
    counts = {r.day: r["count"] for r in spark.read.parquet(str(target)).groupBy("day").count().collect()}
    assert counts == {0: 100, 1: 100, 2: 100, 3: 100}
    assert spark_leftovers(target)  # what the kill left inside the target

    config["sequences"][0]["query"] = f"SELECT id, 2 AS day FROM range({RERUN_ROWS})"
    rerun(spark, config)
    counts = {r.day: r["count"] for r in spark.read.parquet(str(target)).groupBy("day").count().collect()}
    assert counts == {0: 100, 1: 100, 2: RERUN_ROWS, 3: 100}
    assert not spark_leftovers(target)
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith(".crc")) == [
        "_SUCCESS",
        "day=0",
        "day=1",
        "day=2",
        "day=3",
    ]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(("config-", "driver."))) == ["by_day"]


def test_killed_jdbc_overwrite_leaves_the_old_table_then_a_rerun_swaps(
    spark: Any, postgres: Postgres, tmp_path: Path
) -> None:
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

    staging = staging_table("public.ledger", postgres.jdbc_url)

    def staging_has_rows() -> bool:
        # Rows a transaction has not committed yet are invisible to count(*), but they take pages.
        with postgres.connect() as conn:
            found = conn.execute("SELECT pg_relation_size(to_regclass(%s))", (staging,)).fetchone()
            return bool(found and found[0])

    kill_when(start_driver(tmp_path, config, env), staging_has_rows, "rows reached the staging table")
    postgres.wait_for_killed_clients()
    with postgres.connect() as conn:
        assert conn.execute("SELECT count(*), min(version), max(version) FROM ledger").fetchone() == (500, "old", "old")

    config["sequences"][0]["query"] = f"SELECT id, 'new' AS version FROM range({RERUN_ROWS})"
    rerun(spark, config, env)
    with postgres.connect() as conn:
        assert conn.execute("SELECT count(*), min(version) FROM ledger").fetchone() == (RERUN_ROWS, "new")
        leftovers = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'ledger\\_\\_sp%'").fetchone()
    assert leftovers == (0,)


def test_jdbc_append_is_all_or_nothing(spark: Any, postgres: Postgres, tmp_path: Path) -> None:
    from spark_job.config.validation import load_config
    from spark_job.engine.runner import PipelineRunner

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
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'events\\_log\\_\\_%'").fetchone() == (
            0,
        )

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


def beside(target: Path) -> list[str]:
    """What lies in the target's folder, the target included (staging, previous, lease markers show here)."""
    return sorted(p.name for p in target.parent.iterdir())


def writer_for(target: dict[str, Any]) -> Any:
    from spark_job.io import writers

    cls = writers.get(target["type"])
    assert cls is not None
    return cls(target)


def test_a_staged_write_discarded_leaves_the_old_data_and_no_staging(spark: Any, tmp_path: Path) -> None:
    target = tmp_path / "out" / "t"
    spark.range(3).write.parquet(str(target))
    writer = writer_for({"type": "parquet", "path": str(target)})

    staged = writer.begin_write(spark.range(10))
    [claim, staging, name] = beside(target)
    assert re.fullmatch(r"\.t\.sparkpipe-lease\.[0-9a-f]{32}\.2\.claim", claim), claim  # the holder's claim
    assert (staging, name) == (".t.sparkpipe-staging", "t")
    staged.discard()
    assert spark.read.parquet(str(target)).count() == 3 and beside(target) == ["t"]

    staged = writer.begin_write(spark.range(10))
    staged.commit()
    assert spark.read.parquet(str(target)).count() == 10 and beside(target) == ["t"]


def test_a_failed_write_leaves_neither_staging_nor_lease(spark: Any, tmp_path: Path) -> None:
    target = tmp_path / "t"
    spark.range(3).write.parquet(str(target))
    failing = spark.sql("SELECT IF(id = 5, raise_error('boom'), id) AS id, id % 2 AS part FROM range(10)")
    for spec in (
        {"type": "parquet", "path": str(target)},
        {"type": "parquet", "path": str(target), "mode": "append"},
        {"type": "parquet", "path": str(target), "partition_by": ["part"], "dynamic_partition_overwrite": True},
    ):
        with pytest.raises(Exception, match="boom"):
            writer_for(spec).write(failing)
        assert spark.read.parquet(str(target)).count() == 3
        assert beside(target) == ["t"] and not [p for p in target.iterdir() if p.name.startswith((".spark", "_temp"))]


def test_overwriting_a_path_the_query_reads_is_refused(spark: Any, tmp_path: Path) -> None:
    target = tmp_path / "t"
    spark.range(3).write.parquet(str(target))
    reading = spark.read.parquet(f"file://{target}/").selectExpr("id + 1 AS id")
    with pytest.raises(ValueError, match=r"inside the target .* it overwrites"):
        writer_for({"type": "parquet", "path": str(target)}).write(reading)
    assert sorted(r.id for r in spark.read.parquet(str(target)).collect()) == [0, 1, 2] and beside(target) == ["t"]


def test_dynamic_mode_from_the_session_replaces_only_the_partitions_written(spark: Any, tmp_path: Path) -> None:
    from spark_job.config.validation import load_config
    from spark_job.engine.runner import PipelineRunner

    target = tmp_path / "by_day"
    spark.range(40).selectExpr("id", "CAST(id % 4 AS INT) AS day").write.partitionBy("day").parquet(str(target))
    key = "spark.sql.sources.partitionOverwriteMode"
    spark.conf.set(key, "dynamic")  # the cluster's default, not the config's
    try:
        config = load_config(
            {
                "app_name": "dyn",
                "sequences": [
                    {
                        "name": "s",
                        "query": "SELECT id, 1 AS day FROM range(5)",
                        "target": {"type": "parquet", "path": str(target), "partition_by": ["day"]},
                    }
                ],
            }
        )
        assert PipelineRunner(config, spark=spark).run()["status"] == "succeeded"
    finally:
        spark.conf.unset(key)
    counts = {r.day: r["count"] for r in spark.read.parquet(str(target)).groupBy("day").count().collect()}
    assert counts == {0: 10, 1: 5, 2: 10, 3: 10}
    assert beside(target) == ["by_day"]
    assert not [p for p in target.iterdir() if p.name.startswith((".spark-staging", "_temporary"))]


# -- two runs writing one target at once ----------------------------------------------------------

SLOW_QUERY = "SELECT id, reflect('java.lang.Thread', 'sleep', CAST(400000 AS BIGINT)) AS slept FROM range(1)"


def run_to_end(tmp_path: Path, config: dict, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"config-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(config))
    return subprocess.run(
        [sys.executable, "-m", "spark_job", "run", "--config", str(path), "--master", "local[1]"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
    )


def wait_until(proc: subprocess.Popen[bytes], condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 240
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            kill_tree(proc)
            pytest.fail(f"{what} never happened (driver exit {proc.poll()})")
        time.sleep(0.1)


def test_a_second_run_on_a_busy_path_target_fails_naming_the_first(spark: Any, tmp_path: Path) -> None:
    target = tmp_path / "lake" / "busy"
    spark.range(7).selectExpr("id", "'old' AS slept").write.parquet(str(target))
    holder = start_driver(
        tmp_path, big_write({"type": "parquet", "path": str(target)}, SLOW_QUERY), {"SPARKPIPE_RUN_KEY": "backfill-01"}
    )
    try:
        wait_until(
            holder, lambda: any(target.parent.glob(".busy.sparkpipe-lease.*.claim")), "the first run took the lease"
        )
        quick = big_write(
            {"type": "parquet", "path": f"file://{target}/"}, "SELECT id, 'second' AS slept FROM range(3)"
        )
        second = run_to_end(tmp_path, quick, {"SPARKPIPE_RUN_KEY": "backfill-02"})
        assert second.returncode == 1
        assert "is being written by run 'backfill-01'" in second.stderr and f"pid {holder.pid}" in second.stderr
        assert spark.read.parquet(str(target)).count() == 7  # neither run replaced the data
    finally:
        kill_tree(holder)
    # The holder is gone (SIGKILL, same host): its lease is stale and a new run proceeds.
    rerun(spark, quick, {"SPARKPIPE_RUN_KEY": "backfill-03"})
    assert sorted(r.slept for r in spark.read.parquet(str(target)).collect()) == ["second"] * 3
    assert beside(target) == ["busy"]


def test_a_second_run_on_a_busy_catalog_table_fails_naming_the_first(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table of the session catalog has no staging (the catalog's own semantics), but it has a lease:
    this test's session holds it for one spelling while a real driver writes another."""
    warehouse = str(spark.conf.get("spark.sql.warehouse.dir"))
    name = f"busy_{time.monotonic_ns()}"
    monkeypatch.setenv("SPARKPIPE_RUN_KEY", "backfill-01")
    held = writer_for({"type": "table", "table": f"spark_catalog.default.{name}"}).begin_write(spark.range(3))
    config = big_write({"type": "table", "table": f"`{name.upper()}`"}, "SELECT id FROM range(2)")
    config["spark_conf"]["spark.sql.warehouse.dir"] = warehouse
    try:
        second = run_to_end(tmp_path, config, {"SPARKPIPE_RUN_KEY": "backfill-02"})
        assert second.returncode == 1, second.stderr[-3000:]
        assert f"table `{name.upper()}`" in second.stderr
        assert "is being written by run 'backfill-01'" in second.stderr and f"pid {os.getpid()}" in second.stderr
        assert not list(Path(local_path(warehouse)).glob(f"{name}*"))  # the second wrote nothing
    finally:
        held.discard()
    rerun(spark, config, {"SPARKPIPE_RUN_KEY": "backfill-03"})
    assert spark.read.parquet(f"{warehouse}/{name}").count() == 2
    assert sorted(p.name for p in Path(local_path(warehouse)).iterdir() if name in p.name) == [name]
    shutil.rmtree(Path(local_path(warehouse)) / name)


@pytest.mark.parametrize("lease", ["advisory", "table"])
def test_a_second_run_on_a_busy_postgres_target_fails_naming_the_first(
    spark: Any, postgres: Postgres, tmp_path: Path, lease: str
) -> None:
    """The advisory lock (PostgreSQL's default) and the lease table (every other database's, and
    PostgreSQL's behind a transaction pooler), each between two real drivers; then a run on the test
    session once the first is gone."""
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS contested")
        conn.execute("DROP TABLE IF EXISTS sparkpipe_leases")
        conn.execute("CREATE TABLE contested AS SELECT 1::bigint AS id, 'old' AS slept")
    env = {"PG_USER": postgres.user, "PG_PASSWORD": postgres.password}
    target = {
        "type": "jdbc",
        "url": postgres.jdbc_url,
        "table": "contested",
        "user": "${env:PG_USER}",
        "password": "${env:PG_PASSWORD}",
        **({"lease": "table"} if lease == "table" else {}),
    }
    holder = start_driver(tmp_path, big_write(target, SLOW_QUERY), {**env, "SPARKPIPE_RUN_KEY": "backfill-01"})

    def locked() -> bool:
        with postgres.connect() as conn:
            if lease == "advisory":
                row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted").fetchone()
            elif conn.execute("SELECT to_regclass('sparkpipe_leases')").fetchone() == (None,):
                return False
            else:
                row = conn.execute("SELECT count(*) FROM sparkpipe_leases").fetchone()
            return bool(row and row[0])

    quick = big_write({**target, "table": "public.CONTESTED"}, "SELECT id, 'second' AS slept FROM range(3)")
    try:
        wait_until(holder, locked, "the first run took the lease")
        second = run_to_end(tmp_path, quick, {**env, "SPARKPIPE_RUN_KEY": "backfill-02"})
        assert second.returncode == 1
        named = {
            "advisory": "public.CONTESTED is being written by run backfill-01 app local-",
            "table": "public.CONTESTED is being written by run 'backfill-01' (Spark application local-",
        }[lease]
        assert named in second.stderr, second.stderr[-3000:]
        if lease == "table":
            assert f"pid {holder.pid}," in second.stderr
        with postgres.connect() as conn:
            assert conn.execute("SELECT slept FROM contested").fetchall() == [("old",)]
    finally:
        kill_tree(holder)
    # The holder is gone: its lock ended with its connection, its row is stale (dead pid, this host).
    postgres.wait_for_killed_clients()
    rerun(spark, quick, {**env, "SPARKPIPE_RUN_KEY": "backfill-03"})
    with postgres.connect() as conn:
        assert conn.execute("SELECT count(*), min(slept) FROM contested").fetchone() == (3, "second")
        if lease == "table":
            assert conn.execute("SELECT count(*) FROM sparkpipe_leases").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'contested\\_\\_%'").fetchone() == (0,)
