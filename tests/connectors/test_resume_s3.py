"""Retries that resume with the run key's commit log on S3A (hadoop-aws against moto's S3 server on
loopback): records created only if absent through Hadoop's FileSystem, read back by the next try, the
copy of an appended batch kept beside them; a state folder in a bucket that does not exist is refused
before any source is read."""

from __future__ import annotations

import io
from pathlib import Path

from .conftest import S3Bucket
from .runs import run_driver


def test_a_retry_keeps_its_commit_log_on_s3a_and_a_missing_bucket_is_refused(s3: S3Bucket, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    flag = tmp_path / "flag.csv"
    flag.write_text("ok\n0\n")
    flaky = "SELECT CASE WHEN max(ok) = 1 THEN 1 ELSE raise_error('not yet') END AS x FROM flag"
    config = {
        "app_name": "resume-s3",
        "spark_conf": s3.spark_conf(),
        "sources": {
            "flag": {
                "type": "file",
                "format": "csv",
                "path": str(flag),
                "options": {"header": True, "inferSchema": True},
            }
        },
        "sequences": [
            {
                "name": "batch",
                "query": "SELECT id FROM range(5)",
                "target": {"type": "parquet", "path": f"{s3.root}/out/batch", "mode": "append"},
            },
            {
                "name": "report",
                "query": f"SELECT b.n, f.x FROM (SELECT count(*) AS n FROM batch) b CROSS JOIN ({flaky}) f",
                "target": {"type": "parquet", "path": f"{s3.root}/out/report"},
            },
        ],
    }
    state = ("--run-key", "dag.task.1", "--state-dir", f"{s3.root}/state")
    first = run_driver(tmp_path, config, *state)
    assert first.returncode == 1 and first.status("batch") == "succeeded", first.stderr[-3000:]
    assert first.status("report") == "failed"
    records = [k for k in s3.list_keys("state/") if k.endswith(".json") and "/results/" not in k]
    assert len(records) == 1 and any("/results/batch-" in k for k in s3.list_keys("state/")), s3.list_keys("state/")
    appended = [k for k in s3.list_keys("out/batch/") if k.endswith(".parquet")]

    flag.write_text("ok\n1\n")
    second = run_driver(tmp_path, config, *state)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.status("batch") == "reused" and second.status("report") == "succeeded"
    assert [k for k in s3.list_keys("out/batch/") if k.endswith(".parquet")] == appended  # appended once
    report = [k for k in s3.list_keys("out/report/") if k.endswith(".parquet")]
    rows = [pq.read_table(io.BytesIO(s3.read(k))).to_pylist() for k in report]
    assert [r for part in rows for r in part] == [{"n": 5, "x": 1}]
    assert len([k for k in s3.list_keys("state/") if k.endswith(".json") and "/results/" not in k]) == 2

    missing = run_driver(tmp_path, config, "--run-key", "k", "--state-dir", "s3a://sparkpipe-no-such-bucket/state")
    assert missing.returncode == 2, missing.stderr[-3000:]
    assert "cannot be kept in s3a://sparkpipe-no-such-bucket/state/sparkpipe-commits-" in missing.stderr
    assert "give --state-dir a folder this driver can write" in missing.stderr
    assert missing.metrics is not None and missing.status("batch") == "skipped"
    assert [k for k in s3.list_keys("out/batch/") if k.endswith(".parquet")] == appended
