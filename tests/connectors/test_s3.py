"""S3 through hadoop-aws, the S3A connector of pyspark's own Hadoop, against moto's S3 server on loopback:
real driver runs read ``s3a://`` sources and write every mode, staged swaps, dynamic partition
overwrites, leases and metrics on S3A itself; what a run leaves in the bucket is listed with boto3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .conftest import S3Bucket
from .runs import kill, run_driver, start_driver, wait_for

EVENTS = "id,day,amount\n" + "".join(f"{i},{i % 3 + 1},{i * 1.5}\n" for i in range(1, 31))
TARGETS = ("replaced", "appended", "once", "kept", "by_day", "by_day_dynamic")


def modes_pipeline(lake: S3Bucket) -> dict[str, Any]:
    out = f"{lake.root}/out"
    rows = "SELECT id, day, amount, '${label}' AS label FROM events WHERE day IN (${days})"
    return {
        "app_name": "s3_modes",
        "spark_conf": {**lake.spark_conf(), "spark.sql.shuffle.partitions": "2"},
        "vars": {"label": "first", "days": "1, 2, 3"},
        "sources": {
            "events": {
                "type": "s3",
                "format": "csv",
                "path": f"{lake.root}/in/events.csv",
                "options": {"header": True},
                "schema": "id BIGINT, day INT, amount DOUBLE",
            },
        },
        "sequences": [
            {
                "name": "replaced",
                "query": rows,
                "target": {"type": "s3", "format": "parquet", "path": f"{out}/replaced"},
            },
            {
                "name": "appended",
                "query": "SELECT id, '${label}' AS label FROM events WHERE day = 1",
                "target": {"type": "json", "path": f"{out}/appended", "mode": "append"},
            },
            {"name": "once", "query": rows, "target": {"type": "orc", "path": f"{out}/once", "mode": "error"}},
            {
                "name": "kept",
                "query": rows,
                "target": {"type": "csv", "path": f"{out}/kept", "mode": "ignore", "options": {"header": True}},
            },
            {
                "name": "by_day",
                "query": rows,
                "target": {"type": "parquet", "path": f"{out}/by_day", "partition_by": ["day"]},
            },
            {
                "name": "by_day_dynamic",
                "query": rows,
                "target": {
                    "type": "parquet",
                    "path": f"{out}/by_day_dynamic",
                    "partition_by": ["day"],
                    "dynamic_partition_overwrite": True,
                },
            },
        ],
    }


def leftovers(lake: S3Bucket, targets: tuple[str, ...]) -> list[str]:
    """Keys that are neither a source, a metrics file, a target's object nor a folder marker above one."""
    allowed = ("in/", "runs/", *(f"out/{t}/" for t in targets))
    return [
        key
        for key in lake.list_keys()
        if (not key.startswith(allowed) and key != "out/")
        or any(part in key for part in ("sparkpipe-", "_temporary", ".spark-staging"))
    ]


def table(spark: Any, lake: S3Bucket, tmp_path: Path, target: str, fmt: str = "parquet") -> list[tuple[Any, ...]]:
    """A target's rows, read by the test's own session from a copy of its objects."""
    folder = lake.download(f"out/{target}", tmp_path / f"copy-{len(list(tmp_path.iterdir()))}")
    frame = spark.read.format(fmt).option("header", True).load(str(folder))
    return sorted(tuple(row) for row in frame.select(sorted(frame.columns)).collect())


def test_a_pipeline_on_s3a_runs_twice_through_every_write_mode(spark: Any, s3: S3Bucket, tmp_path: Path) -> None:
    s3.put("in/events.csv", EVENTS.encode())
    config = modes_pipeline(s3)

    first = run_driver(tmp_path, config, "--metrics-out", f"{s3.root}/runs/first/metrics.json")
    assert first.returncode == 0, first.stderr[-5000:]
    assert {s: first.metrics["sequences"][s]["rows_written"] for s in TARGETS} == {  # type: ignore[index]
        "replaced": 30,
        "appended": 10,
        "once": 30,
        "kept": 30,
        "by_day": 30,
        "by_day_dynamic": 30,
    }
    assert json.loads(s3.read("runs/first/metrics.json")) == first.metrics

    second = run_driver(
        tmp_path,
        config,
        *("--var", "label=second", "--var", "days=2"),
        *("--metrics-out", f"{s3.root}/runs/second/metrics.json"),
    )
    assert second.returncode == 1, second.stderr[-5000:]
    assert {s: second.status(s) for s in TARGETS} == {**dict.fromkeys(TARGETS, "succeeded"), "once": "failed"}
    assert "already exists" in second.metrics["sequences"]["once"]["error"]  # type: ignore[index]
    assert json.loads(s3.read("runs/second/metrics.json")) == second.metrics

    ids = {day: [i for i in range(1, 31) if i % 3 + 1 == day] for day in (1, 2, 3)}
    # overwrite: only the second run's rows, swapped in whole
    assert table(spark, s3, tmp_path, "replaced") == [(i * 1.5, 2, i, "second") for i in ids[2]]
    # append: both runs' rows
    assert table(spark, s3, tmp_path, "appended", "json") == sorted(
        [(i, "first") for i in ids[1]] + [(i, "second") for i in ids[1]]
    )
    # error and ignore: the first run's rows stay
    for target, fmt in (("once", "orc"), ("kept", "csv")):
        labels = {row[-1] for row in table(spark, s3, tmp_path, target, fmt)}
        assert labels == {"first"}, target
    # a static partitioned overwrite replaces the whole target, a dynamic one only the partitions written
    assert {(row[1], row[3]) for row in table(spark, s3, tmp_path, "by_day")} == {(2, "second")}
    assert {(row[1], row[3]) for row in table(spark, s3, tmp_path, "by_day_dynamic")} == {
        (1, "first"),
        (2, "second"),
        (3, "first"),
    }
    assert not leftovers(s3, TARGETS)


SLOW_WRITE = (
    "SELECT id, 'new' AS version, reflect('java.lang.Thread', 'sleep', CAST(1000 AS BIGINT)) AS slept "
    "FROM range(0, 600, 1, 600)"
)


def quick_write(config: dict[str, Any], path: str, version: str, rows: int = 3) -> dict[str, Any]:
    query = f"SELECT id, '{version}' AS version, '' AS slept FROM range({rows})"
    return {**config, "sequences": [{"name": "busy", "query": query, "target": {"type": "parquet", "path": path}}]}


def test_one_run_at_a_time_writes_an_s3a_target_and_a_killed_overwrite_keeps_the_old_data(
    spark: Any, s3: S3Bucket, tmp_path: Path
) -> None:
    spark.range(7).selectExpr("id", "'old' AS version", "'' AS slept").write.parquet(str(tmp_path / "old"))
    s3.upload(tmp_path / "old", "out/busy")
    target = {"type": "parquet", "path": f"{s3.root}/out/busy"}
    config = {
        "app_name": "s3_lease",
        "spark_conf": s3.spark_conf(),
        "sequences": [{"name": "busy", "query": SLOW_WRITE, "target": target}],
    }

    holder = start_driver(tmp_path, config, env={"SPARKPIPE_RUN_KEY": "backfill-01"})
    try:
        log = tmp_path / "driver.log"

        def writing() -> bool:  # the holder's claim is there and its first tasks committed files to the staging
            keys = s3.list_keys("out/")
            return any(k.startswith("out/.busy.sparkpipe-lease.") and k.endswith(".claim") for k in keys) and any(
                k.startswith("out/.busy.sparkpipe-staging/") and "/part-" in k for k in keys
            )

        wait_for(holder, writing, "the first run writing its staging", log)
        # the same target spelt another way
        second = run_driver(
            tmp_path, quick_write(config, f"{s3.root}/out/busy/", "second"), env={"SPARKPIPE_RUN_KEY": "backfill-02"}
        )
        assert second.returncode == 1, second.stderr[-5000:]
        error = second.metrics["sequences"]["busy"]["error"]  # type: ignore[index]
        assert "is being written by run 'backfill-01'" in error and f"pid {holder.pid}" in error, error
    finally:
        kill(holder)  # mid-write: part files sit in the staging folder
    assert any(k.startswith("out/.busy.sparkpipe-staging/") for k in s3.list_keys("out/"))
    assert table(spark, s3, tmp_path, "busy") == [(i, "", "old") for i in range(7)]

    # The killed holder's claim is stale (its process is gone on this host): a new run writes, and
    # removes what the killed run left.
    third = run_driver(
        tmp_path, quick_write(config, target["path"], "third", 5), env={"SPARKPIPE_RUN_KEY": "backfill-03"}
    )
    assert third.returncode == 0, third.stderr[-5000:]
    assert table(spark, s3, tmp_path, "busy") == [(i, "", "third") for i in range(5)]
    assert not leftovers(s3, ("busy",))
