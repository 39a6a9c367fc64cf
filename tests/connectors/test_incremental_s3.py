"""Incremental runs on ``s3a://`` against moto's S3 server: a new-files source whose checkpoint lives in the
bucket (each run takes the objects that arrived since the last, processed ones deleted) and a watermarked
parquet source feeding a partitioned target on S3A, in two real driver runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support import POSTGRES_JAR, Postgres

from .conftest import S3Bucket
from .runs import run_driver


def parquet_bytes(spark: Any, tmp_path: Path, rows: list[tuple[int, str]]) -> bytes:
    """One parquet file of (id, day) rows, as a daily load would land it."""
    folder = tmp_path / f"p{len(list(tmp_path.iterdir()))}"
    values = ", ".join(f"({i}, DATE'{d}')" for i, d in rows)
    spark.sql(f"SELECT * FROM VALUES {values} AS t(id, day)").coalesce(1).write.parquet(str(folder))
    return next(folder.glob("part-*.parquet")).read_bytes()


def lines(ids: range) -> bytes:
    return "".join(json.dumps({"id": i}) + "\n" for i in ids).encode()


def pipeline(lake: S3Bucket, postgres: Postgres) -> dict[str, Any]:
    conf = lake.spark_conf()
    conf["spark.jars"] = f"{conf['spark.jars']},{POSTGRES_JAR}"
    return {
        "app_name": "s3_incremental",
        "spark_conf": {**conf, "spark.sql.shuffle.partitions": "2"},
        "sources": {
            "drops": {
                "type": "s3",
                "format": "json",
                "path": f"{lake.root}/in/drops/",
                "schema": "id BIGINT",
                "incremental": {
                    "files": True,
                    "max_files_per_trigger": 2,
                    "clean_source": "delete",
                    "checkpoint": f"{lake.root}/checkpoints",
                },
            },
            "events": {"type": "s3", "path": f"{lake.root}/in/events/", "schema": "id BIGINT, day DATE"},
        },
        "sequences": [
            {
                "name": "taken",
                "query": "SELECT id FROM drops",
                "target": {
                    "type": "jdbc",
                    "url": postgres.jdbc_url,
                    "table": "s3_taken",
                    "user": postgres.user,
                    "password": postgres.password,
                    "mode": "append",
                },
            },
            {
                "name": "daily",
                "query": "SELECT day, count(*) AS n FROM events GROUP BY day",
                "incremental": {"source": "events", "column": "day"},
                "target": {
                    "type": "s3",
                    "format": "parquet",
                    "path": f"{lake.root}/out/daily",
                    "partition_by": "day",
                    "dynamic_partition_overwrite": True,
                },
            },
        ],
    }


def test_incremental_runs_on_s3a(spark: Any, s3: S3Bucket, postgres: Postgres, tmp_path: Path) -> None:
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS s3_taken")
        conn.execute("DROP TABLE IF EXISTS sparkpipe_batches")
    for i in range(3):
        s3.put(f"in/drops/f{i}.json", lines(range(i * 10, i * 10 + 10)))
    s3.put("in/events/d1.parquet", parquet_bytes(spark, tmp_path, [(1, "2024-01-01"), (2, "2024-01-02")]))
    config = pipeline(s3, postgres)

    first = run_driver(tmp_path, config)
    assert first.returncode == 0, first.stderr[-5000:]
    assert first.metrics is not None
    taken, daily = first.metrics["sequences"]["taken"], first.metrics["sequences"]["daily"]
    assert taken["rows_written"] == 30 and taken["incremental"]["batches"] == [0, 1]
    assert daily["incremental"]["full_refresh"] is True and daily["incremental"]["watermark_after"] == "2024-01-02"

    s3.put("in/drops/f3.json", lines(range(30, 33)))
    s3.put("in/events/d2.parquet", parquet_bytes(spark, tmp_path, [(3, "2024-01-02"), (4, "2024-01-03")]))
    second = run_driver(tmp_path, config)
    assert second.returncode == 0, second.stderr[-5000:]
    assert second.metrics is not None
    taken, daily = second.metrics["sequences"]["taken"], second.metrics["sequences"]["daily"]
    assert taken["rows_written"] == 3 and taken["incremental"]["batches"] == [2]
    assert daily["incremental"]["watermark_before"] == "2024-01-02"
    assert daily["incremental"]["rows_read"] == 3  # day >= 2024-01-02: the first file's second row, the new file

    with postgres.connect() as conn:
        assert sorted(r[0] for r in conn.execute("SELECT id FROM s3_taken").fetchall()) == list(range(33))
    # The checkpoint is in the bucket; processed objects are deleted once a later batch committed.
    keys = s3.list_keys()
    assert any(k.startswith("checkpoints/taken/commits/") for k in keys)
    assert "in/drops/f0.json" not in keys and "in/drops/f1.json" not in keys
    folder = s3.download("out/daily", tmp_path / "daily-copy")
    got = sorted(tuple(r) for r in spark.read.parquet(str(folder)).select("day", "n").collect())
    assert [(str(d), n) for d, n in got] == [("2024-01-01", 1), ("2024-01-02", 2), ("2024-01-03", 1)]
