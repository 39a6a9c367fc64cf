"""Cloud Storage through the GCS connector (shaded) against gcp-storage-emulator on loopback, with a custom
root URL and no credentials: a real driver run reads ``gs://`` sources, swaps an overwritten target,
replaces one partition of another, writes a new one and its metrics on ``gs://``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .conftest import GcsBucket
from .runs import run_driver

EVENTS = "id,day,amount\n" + "".join(f"{i},{i % 3 + 1},{i * 1.5}\n" for i in range(1, 31))
TARGETS = ("replaced", "by_day", "copied")


def rows(spark: Any, lake: GcsBucket, tmp_path: Path, target: str, fmt: str = "parquet") -> list[tuple[Any, ...]]:
    """A target's rows, read by the test's own session from a copy of its objects."""
    folder = lake.download(f"out/{target}", tmp_path / f"copy-{len(list(tmp_path.iterdir()))}")
    frame = spark.read.format(fmt).load(str(folder))
    return sorted(tuple(row) for row in frame.select(sorted(frame.columns)).collect())


def test_a_pipeline_reads_and_writes_gcs_through_the_connector(spark: Any, gcs: GcsBucket, tmp_path: Path) -> None:
    gcs.put("in/events.csv", EVENTS.encode())
    old = tmp_path / "old"
    spark.range(4).selectExpr("id", "'old' AS label").write.parquet(str(old / "replaced"))
    spark.range(9).selectExpr("id", "CAST(id % 3 + 1 AS INT) AS day", "'old' AS label").write.partitionBy(
        "day"
    ).parquet(str(old / "by_day"))
    gcs.upload(old, "out")
    out = f"{gcs.root}/out"
    config = {
        "app_name": "gcs_pipeline",
        "spark_conf": {**gcs.spark_conf(), "spark.sql.shuffle.partitions": "2"},
        "sources": {
            "events": {
                "type": "gcs",
                "format": "csv",
                "path": f"{gcs.root}/in/events.csv",
                "options": {"header": True},
                "schema": "id BIGINT, day INT, amount DOUBLE",
            }
        },
        "sequences": [
            {
                "name": "replaced",
                "query": "SELECT id, 'new' AS label FROM events WHERE day = 1",
                "target": {"type": "gcs", "format": "parquet", "path": f"{out}/replaced"},
            },
            {
                "name": "by_day",
                "query": "SELECT id, day, 'new' AS label FROM events WHERE day = 2",
                "target": {
                    "type": "parquet",
                    "path": f"{out}/by_day",
                    "partition_by": ["day"],
                    "dynamic_partition_overwrite": True,
                },
            },
            {
                "name": "copied",
                "query": "SELECT day, sum(amount) AS amount FROM events GROUP BY day",
                "target": {"type": "json", "path": f"{out}/copied", "coalesce": 1},
            },
        ],
    }

    run = run_driver(tmp_path, config, "--metrics-out", f"{gcs.root}/runs/metrics.json")
    assert run.returncode == 0, run.stderr[-5000:]
    assert {s: run.metrics["sequences"][s]["rows_written"] for s in TARGETS} == {  # type: ignore[index]
        "replaced": 10,
        "by_day": 10,
        "copied": 3,
    }
    assert json.loads(gcs.read("runs/metrics.json")) == run.metrics

    ids = {day: [i for i in range(1, 31) if i % 3 + 1 == day] for day in (1, 2, 3)}
    assert rows(spark, gcs, tmp_path, "replaced") == [(i, "new") for i in ids[1]]  # swapped in whole
    by_day = rows(spark, gcs, tmp_path, "by_day")
    assert {(day, label) for day, _, label in by_day} == {(1, "old"), (2, "new"), (3, "old")}
    assert len(by_day) == 3 + len(ids[2]) + 3  # the partitions not written kept their rows
    assert rows(spark, gcs, tmp_path, "copied", "json") == sorted((sum(i * 1.5 for i in ids[d]), d) for d in (1, 2, 3))
    allowed = ("in/", "runs/", *(f"out/{t}/" for t in TARGETS))
    assert [
        key
        for key in gcs.list_keys()
        if (not key.startswith(allowed) and key != "out/")  # the connector's folder marker above the targets
        or any(p in key for p in ("sparkpipe-", "_temporary", ".spark-staging"))
    ] == []
