"""Incremental runs on real Spark, local files and the PostgreSQL server: watermarked sequences (the filter
pushed to the source, the watermark read from the committed target) and new files only (each batch once).

Successive runs with new and late rows give the target one full run over all the data gives; a run
killed after its write and before its commit, then retried, neither skips nor duplicates a row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from spark_job.config.validation import load_config
from spark_job.engine.runner import PipelineRunner

from .support import POSTGRES_JAR, REPO, Postgres

SCHEMA = "id BIGINT, day DATE, amount DOUBLE, updated_at TIMESTAMP"


def run(spark: Any, config: dict) -> dict[str, Any]:
    metrics = PipelineRunner(load_config(config), spark=spark).run()
    assert metrics["status"] == "succeeded", json.dumps(metrics["sequences"], indent=1, default=str)
    return metrics


def add_events(spark: Any, folder: Path, rows: list[tuple[int, str, float, str]]) -> None:
    """One more parquet file of events (id, day, amount, updated_at) in the source folder."""
    values = ", ".join(f"({i}, DATE'{d}', {a}, TIMESTAMP'{u}')" for i, d, a, u in rows)
    df = spark.sql(f"SELECT * FROM VALUES {values} AS t(id, day, amount, updated_at)")
    df.coalesce(1).write.mode("append").parquet(str(folder))


def rows_of(df: Any) -> list[tuple]:
    return sorted(tuple(r) for r in df.collect())


# -- a partitioned file target ---------------------------------------------------------------------

DAY_1 = [(1, "2024-01-01", 10.0, "2024-01-01 08:00:00"), (2, "2024-01-01", 5.0, "2024-01-01 09:00:00")]
DAY_2 = [(3, "2024-01-02", 7.0, "2024-01-02 10:00:00")]
DAY_2_LATE_AND_DAY_3 = [(4, "2024-01-02", 1.0, "2024-01-03 01:00:00"), (5, "2024-01-03", 2.0, "2024-01-03 02:00:00")]
DAY_3_MORE = [(6, "2024-01-03", 4.0, "2024-01-03 09:00:00")]


def daily_config(source: Path, target: Path, incremental: bool = True) -> dict:
    seq: dict[str, Any] = {
        "name": "daily",
        "query": "SELECT day, count(*) AS orders, sum(amount) AS amount FROM events GROUP BY day",
        "target": {"type": "parquet", "path": str(target), "partition_by": "day", "dynamic_partition_overwrite": True},
    }
    if incremental:  # the partition column as watermark: the latest day is recomputed whole, late rows a day back
        seq["incremental"] = {"source": "events", "column": "day", "lookback": "1 day"}
    else:
        seq["target"] = {"type": "parquet", "path": str(target), "partition_by": "day"}
    return {
        "app_name": "daily",
        "sources": {"events": {"type": "file", "path": str(source), "schema": SCHEMA}},
        "sequences": [seq],
    }


def test_three_runs_of_a_partitioned_target_equal_one_full_run(spark: Any, tmp_path: Path) -> None:
    source, target, full = tmp_path / "events", tmp_path / "daily", tmp_path / "daily_full"
    add_events(spark, source, DAY_1 + DAY_2)
    first = run(spark, daily_config(source, target))["sequences"]["daily"]
    assert first["incremental"]["full_refresh"] is True and first["incremental"]["watermark_before"] is None
    assert first["incremental"]["watermark_after"] == "2024-01-02" and first["incremental"]["rows_read"] == 3

    add_events(spark, source, DAY_2_LATE_AND_DAY_3)
    second = run(spark, daily_config(source, target))["sequences"]["daily"]
    # day >= 2024-01-02 - 1 day: days 1..3 read again (the lookback), never more
    assert second["incremental"]["watermark_before"] == "2024-01-02"
    assert second["incremental"]["watermark_after"] == "2024-01-03"
    assert second["incremental"]["rows_read"] == 5 and second["rows_written"] == 3

    add_events(spark, source, DAY_3_MORE)
    third = run(spark, daily_config(source, target))["sequences"]["daily"]
    assert third["incremental"]["rows_read"] == 4 and third["rows_written"] == 2  # days 2 and 3 only

    run(spark, daily_config(source, full, incremental=False))
    assert rows_of(spark.read.parquet(str(target))) == rows_of(spark.read.parquet(str(full)))
    assert rows_of(spark.read.parquet(str(target)).select("orders")) == [(2,), (2,), (2,)]  # the late row counted

    # The filter reaches the parquet scan: the physical plan pushes it to the files' statistics.
    plan = spark.sql("EXPLAIN SELECT * FROM sparkpipe_incremental_daily").first()[0]
    assert "PushedFilters: [IsNotNull(day), GreaterThanOrEqual(day," in plan, plan


def test_nothing_new_writes_nothing_and_keeps_the_watermark(spark: Any, tmp_path: Path) -> None:
    source, target = tmp_path / "events", tmp_path / "totals"
    add_events(spark, source, DAY_1)
    config = {
        "app_name": "totals",
        "sources": {"events": {"type": "file", "path": str(source), "schema": SCHEMA}},
        "sequences": [
            {
                "name": "totals",
                "query": "SELECT day, id, amount FROM events WHERE amount > 100",
                "incremental": {"source": "events", "column": "day"},
                "target": {
                    "type": "parquet",
                    "path": str(target),
                    "partition_by": "day",
                    "dynamic_partition_overwrite": True,
                },
            }
        ],
    }
    spark.sql("SELECT DATE'2024-01-01' AS day, 0L AS id, 1000.0 AS amount").write.partitionBy("day").parquet(
        str(target)
    )
    again = run(spark, config)["sequences"]["totals"]
    assert again["rows_written"] == 0 and again["incremental"]["rows_read"] == 2
    assert again["incremental"]["watermark_before"] == again["incremental"]["watermark_after"] == "2024-01-01"


# -- JDBC: source and target on the PostgreSQL server ----------------------------------------------


def jdbc(postgres: Postgres, table: str, **more: Any) -> dict[str, Any]:
    return {
        "type": "jdbc",
        "url": postgres.jdbc_url,
        "table": table,
        "user": postgres.user,
        "password": postgres.password,
        **more,
    }


def changes_config(postgres: Postgres, target: str, **top: Any) -> dict:
    return {
        "app_name": "orders",
        "spark_conf": {"spark.jars": POSTGRES_JAR},
        "sources": {"changes": {**jdbc(postgres, "order_changes"), "alias": "order_changes"}},
        "sequences": [
            {
                "name": "orders_log",
                "query": "SELECT id, status, updated_at FROM order_changes",
                "incremental": {"source": "order_changes", "column": "updated_at"},
                "target": jdbc(postgres, target, mode="append"),
            }
        ],
        **top,
    }


def reset_changes(postgres: Postgres, *targets: str) -> None:
    with postgres.connect() as conn:
        for table in ("order_changes", *targets):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute("CREATE TABLE order_changes (id BIGINT, status TEXT, updated_at TIMESTAMP)")


def add_changes(postgres: Postgres, *rows: tuple[int, str, str]) -> None:
    with postgres.connect() as conn:
        for row in rows:
            conn.execute("INSERT INTO order_changes VALUES (%s, %s, %s)", row)


def table_rows(postgres: Postgres, table: str) -> list[tuple]:
    with postgres.connect() as conn:
        return sorted(conn.execute(f"SELECT id, status, updated_at FROM {table}").fetchall())


def test_jdbc_append_runs_equal_one_full_run_and_the_filter_is_a_where(
    spark: Any, postgres: Postgres, tmp_path: Path
) -> None:
    reset_changes(postgres, "orders_log", "orders_full")
    add_changes(postgres, (1, "new", "2024-01-01 08:00"), (2, "new", "2024-01-01 09:00"))
    first = run(spark, changes_config(postgres, "orders_log"))["sequences"]["orders_log"]
    assert first["rows_written"] == 2 and first["incremental"]["watermark_after"] == "2024-01-01T09:00:00"
    add_changes(postgres, (1, "paid", "2024-01-02 08:00"), (3, "new", "2024-01-02 08:30"))
    second = run(spark, changes_config(postgres, "orders_log"))["sequences"]["orders_log"]
    assert second["rows_written"] == 2 and second["incremental"]["rows_read"] == 2
    assert second["incremental"]["watermark_before"] == "2024-01-01T09:00:00"
    # The database did the filtering: Spark's JDBC scan pushed the comparison into its WHERE clause.
    plan = spark.sql("EXPLAIN SELECT * FROM sparkpipe_incremental_orders_log").first()[0]
    assert "PushedFilters: [*IsNotNull(updated_at), *GreaterThan(updated_at," in plan, plan
    add_changes(postgres, (2, "paid", "2024-01-03 10:00"))
    third = run(spark, changes_config(postgres, "orders_log"))["sequences"]["orders_log"]
    assert third["rows_written"] == 1
    nothing = run(spark, changes_config(postgres, "orders_log"))["sequences"]["orders_log"]
    assert nothing["rows_written"] == 0 and nothing["incremental"]["rows_read"] == 0

    full = changes_config(postgres, "orders_full")
    del full["sequences"][0]["incremental"]
    run(spark, full)
    assert table_rows(postgres, "orders_log") == table_rows(postgres, "orders_full")
    assert len(table_rows(postgres, "orders_log")) == 5


def test_two_sequences_read_one_source_each_with_its_own_watermark(spark: Any, postgres: Postgres) -> None:
    reset_changes(postgres, "log_a", "log_b")
    add_changes(postgres, (1, "new", "2024-01-01 08:00"))
    one = changes_config(postgres, "log_a")
    two = {**one["sequences"][0], "name": "orders_b", "target": jdbc(postgres, "log_b", mode="append")}
    run(spark, one)  # log_a is ahead of log_b
    add_changes(postgres, (2, "new", "2024-01-01 09:00"))
    both = run(spark, {**one, "sequences": [one["sequences"][0], two]})["sequences"]
    assert both["orders_log"]["rows_written"] == 1 and both["orders_b"]["rows_written"] == 2
    assert both["orders_log"]["incremental"]["watermark_before"] == "2024-01-01T08:00:00"
    assert both["orders_b"]["incremental"]["watermark_before"] is None
    assert table_rows(postgres, "log_a") == table_rows(postgres, "log_b")


def test_full_refresh_reads_everything_and_replaces_the_target(spark: Any, postgres: Postgres) -> None:
    reset_changes(postgres, "orders_log")
    add_changes(postgres, (1, "new", "2024-01-01 08:00"))
    run(spark, changes_config(postgres, "orders_log"))
    with postgres.connect() as conn:  # a row the source never had: a full refresh drops it
        conn.execute("INSERT INTO orders_log VALUES (99, 'stray', '2023-01-01')")
    refreshed = run(spark, changes_config(postgres, "orders_log", full_refresh=True))["sequences"]["orders_log"]
    assert refreshed["incremental"]["full_refresh"] is True and refreshed["incremental"]["watermark_before"] is None
    assert refreshed["rows_written"] == 1
    assert [r[0] for r in table_rows(postgres, "orders_log")] == [1]


def test_the_full_refresh_flag_of_the_cli() -> None:
    from spark_job.cli import build_parser

    args = build_parser().parse_args(["run", "--config", "p.yaml", "--full-refresh"])
    assert args.full_refresh is True
    assert build_parser().parse_args(["run", "--config", "p.yaml"]).full_refresh is False


def killed_run(tmp_path: Path, point: str, n: int, config: dict) -> None:
    """Run the pipeline in a driver of its own, killed (SIGKILL, its JVM too) at ``point``."""
    path = tmp_path / f"config-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(config))
    script = REPO / "tests" / "incremental_kill.py"
    args = [sys.executable, str(script), point, str(n), "run", "--config", str(path), "--master", "local[1]"]
    with open(tmp_path / "driver.log", "ab") as log:
        proc = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -9, (tmp_path / "driver.log").read_text()[-3000:]


def test_a_run_killed_between_write_and_commit_is_retried_without_skipping_or_duplicating(
    spark: Any, postgres: Postgres, tmp_path: Path
) -> None:
    reset_changes(postgres, "orders_log", "orders_full")
    add_changes(postgres, (1, "new", "2024-01-01 08:00"))
    run(spark, changes_config(postgres, "orders_log"))
    add_changes(postgres, (2, "new", "2024-01-02 08:00"), (3, "new", "2024-01-02 09:00"))
    # The new rows are staged, then the driver dies before the transaction that moves them in.
    killed_run(tmp_path, "before-commit", 0, changes_config(postgres, "orders_log"))
    postgres.wait_for_killed_clients()
    assert [r[0] for r in table_rows(postgres, "orders_log")] == [1]  # nothing landed, the watermark did not move
    retried = run(spark, changes_config(postgres, "orders_log"))["sequences"]["orders_log"]
    assert retried["rows_written"] == 2 and retried["incremental"]["watermark_before"] == "2024-01-01T08:00:00"
    full = changes_config(postgres, "orders_full")
    del full["sequences"][0]["incremental"]
    run(spark, full)
    assert table_rows(postgres, "orders_log") == table_rows(postgres, "orders_full")


# -- new files only --------------------------------------------------------------------------------


def drop_file(folder: Path, name: str, ids: range) -> None:
    """A JSON file appears whole in the source folder (written aside, then renamed in)."""
    folder.mkdir(parents=True, exist_ok=True)
    aside = folder.parent / f".{name}.tmp"
    aside.write_text("".join(json.dumps({"id": i, "note": f"n{i}"}) + "\n" for i in ids))
    os.replace(aside, folder / name)


def files_config(postgres: Postgres, source: str, checkpoint: Path, **files: Any) -> dict:
    return {
        "app_name": "drops",
        "spark_conf": {"spark.jars": POSTGRES_JAR},
        "sources": {
            "drops": {
                "type": "file",
                "format": "json",
                "path": source,
                "schema": "id BIGINT, note STRING",
                "incremental": {"files": True, "checkpoint": str(checkpoint), **files},
            }
        },
        "sequences": [
            {
                "name": "taken",
                "query": "SELECT id, upper(note) AS note FROM drops",
                "target": jdbc(postgres, "taken", mode="append"),
            }
        ],
    }


def taken_ids(postgres: Postgres) -> list[int]:
    with postgres.connect() as conn:
        return sorted(r[0] for r in conn.execute("SELECT id FROM taken").fetchall())


def reset_taken(postgres: Postgres) -> None:
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS taken")
        conn.execute("DROP TABLE IF EXISTS sparkpipe_batches")


def test_each_run_takes_the_files_that_arrived_since_the_last(spark: Any, postgres: Postgres, tmp_path: Path) -> None:
    reset_taken(postgres)
    source, checkpoint = tmp_path / "drops", tmp_path / "checkpoints"
    for i in range(3):
        drop_file(source, f"f{i}.json", range(i * 10, i * 10 + 10))
    config = files_config(postgres, str(source), checkpoint, max_files_per_trigger=2)
    first = run(spark, config)["sequences"]["taken"]
    assert first["rows_written"] == 30 and first["incremental"]["batches"] == [0, 1]  # two files a batch at most
    assert taken_ids(postgres) == list(range(30))
    drop_file(source, "f3.json", range(30, 35))
    second = run(spark, config)["sequences"]["taken"]
    assert second["rows_written"] == 5 and second["incremental"]["batches"] == [2]
    assert run(spark, config)["sequences"]["taken"]["rows_written"] == 0
    assert taken_ids(postgres) == list(range(35))
    with postgres.connect() as conn:
        assert conn.execute("SELECT DISTINCT note FROM taken WHERE id = 31").fetchall() == [("N31",)]

    refreshed = run(spark, {**config, "full_refresh": True})["sequences"]["taken"]
    assert refreshed["rows_written"] == 35 and taken_ids(postgres) == list(range(35))


def test_processed_files_are_archived(spark: Any, postgres: Postgres, tmp_path: Path) -> None:
    reset_taken(postgres)
    source, archive, checkpoint = tmp_path / "in", tmp_path / "done", tmp_path / "ck"
    for i in range(3):
        drop_file(source, f"a{i}.json", range(i, i + 1))
    config = files_config(
        postgres, str(source), checkpoint, max_files_per_trigger=1, clean_source="archive", archive_dir=str(archive)
    )
    assert run(spark, config)["sequences"]["taken"]["rows_written"] == 3
    # Spark archives a batch's files once a later batch commits: the last batch's wait for the next run.
    archived = sorted(p.name for p in archive.rglob("*.json"))
    assert archived and set(archived) <= {"a0.json", "a1.json", "a2.json"}
    drop_file(source, "a3.json", range(3, 4))
    assert run(spark, config)["sequences"]["taken"]["rows_written"] == 1
    assert taken_ids(postgres) == [0, 1, 2, 3]
    assert {"a0.json", "a1.json", "a2.json"} <= {p.name for p in archive.rglob("*.json")}


def test_a_run_killed_between_batches_takes_each_file_exactly_once(
    spark: Any, postgres: Postgres, tmp_path: Path
) -> None:
    reset_taken(postgres)
    source, checkpoint = tmp_path / "drops", tmp_path / "checkpoints"
    for i in range(4):
        drop_file(source, f"f{i}.json", range(i * 10, i * 10 + 10))
    config = files_config(postgres, str(source), checkpoint, max_files_per_trigger=1)
    # Batch 1 is committed to the table; the driver dies before Spark's checkpoint records it.
    killed_run(tmp_path, "after-batch", 1, config)
    postgres.wait_for_killed_clients()
    assert taken_ids(postgres) == list(range(20))
    assert not (checkpoint / "taken" / "commits" / "1").exists() and (checkpoint / "taken" / "offsets" / "1").exists()
    retried = run(spark, config)["sequences"]["taken"]
    assert retried["incremental"]["batches_already_committed"] == [1] and retried["incremental"]["batches"] == [2, 3]
    assert retried["rows_written"] == 20
    assert taken_ids(postgres) == list(range(40))  # no file skipped, none twice


def test_files_arriving_during_a_run_are_taken_by_the_next(spark: Any, postgres: Postgres, tmp_path: Path) -> None:
    reset_taken(postgres)
    source, checkpoint = tmp_path / "drops", tmp_path / "checkpoints"
    for i in range(3):
        drop_file(source, f"f{i}.json", range(i * 10, i * 10 + 10))
    config = files_config(postgres, str(source), checkpoint, max_files_per_trigger=1)
    dropped = threading.Event()

    def drop_once_the_first_batch_landed() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if taken_ids(postgres):
                    break
            except Exception:  # the table does not exist yet
                pass
            time.sleep(0.05)
        drop_file(source, "late.json", range(100, 105))
        dropped.set()

    dropper = threading.Thread(target=drop_once_the_first_batch_landed)
    dropper.start()
    first = run(spark, config)["sequences"]["taken"]
    dropper.join()
    assert dropped.is_set() and first["rows_written"] == 30  # the files listed when the run started
    second = run(spark, config)["sequences"]["taken"]
    assert second["rows_written"] == 5
    assert taken_ids(postgres) == [*range(30), *range(100, 105)]


@pytest.mark.parametrize("bound", ["max_bytes_per_trigger"])
def test_a_byte_bound_splits_a_run_into_batches(spark: Any, postgres: Postgres, tmp_path: Path, bound: str) -> None:
    reset_taken(postgres)
    source, checkpoint = tmp_path / "drops", tmp_path / "checkpoints"
    for i in range(3):
        drop_file(source, f"f{i}.json", range(i * 100, i * 100 + 100))
    size = (source / "f0.json").stat().st_size
    config = files_config(postgres, str(source), checkpoint, **{bound: size})
    taken = run(spark, config)["sequences"]["taken"]
    assert taken["rows_written"] == 300 and len(taken["incremental"]["batches"]) == 3
