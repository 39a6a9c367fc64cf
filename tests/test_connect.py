"""The driver on a real Spark Connect server (started from the installed pyspark on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from spark_job import METRICS_MARKER
from spark_job.config.validation import load_config
from spark_job.engine.capabilities import capabilities_of
from spark_job.engine.runner import PipelineRunner

from .support import ENDLESS, REPO, SparkConnectServer


def counts(spark_connect: Any, rows: int) -> set[int | None]:
    """What ``rows_written`` may be on this server: the rows; null on Spark Connect 3.5, whose client
    receives no observed values; either on a 4.0 server, which drops them when it is slow."""
    session = capabilities_of(spark_connect)
    if not session.counts_writes:
        return {None}
    return {rows, None} if session.counts_may_be_lost else {rows}


def example_config(out: Path) -> Any:
    config = load_config(
        REPO / "examples" / "pipeline.yaml", {"out_dir": str(out), "data_dir": str(REPO / "examples/data")}
    )
    return config


def test_the_example_pipeline_on_a_connect_session(spark_connect: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    metrics_file = tmp_path / "m" / "metrics.json"
    document = yaml.safe_load((REPO / "examples" / "pipeline.yaml").read_text())
    for seq in document["sequences"]:
        # the staged swap of path targets goes through Hadoop's FileSystem in this process's JVM,
        # which a connect client does not have: plain overwrite here
        seq["target"]["atomic"] = False
        seq.pop("query_file", None) and seq.update(query=(REPO / "examples" / "sql" / "top_countries.sql").read_text())
    config = load_config(document, {"out_dir": str(out), "data_dir": str(REPO / "examples/data")})
    # a Connect session does not say its cores: the default is one at a time; two show the overlap
    metrics = PipelineRunner(config, spark=spark_connect, metrics_out=str(metrics_file), max_parallel=2).run()
    assert metrics["status"] == "succeeded", metrics
    assert json.loads(metrics_file.read_text()) == metrics  # written by the client
    assert metrics["spark_app_id"] and metrics["max_concurrency"] >= 2
    seqs = metrics["sequences"]
    for name in ("daily_event_counts", "country_revenue", "top_countries"):
        fmt = "json" if name == "top_countries" else "parquet"
        written = spark_connect.read.format(fmt).load(str(out / name)).count()
        assert written > 0 and seqs[name]["rows_written"] in counts(spark_connect, written), (name, seqs[name])
    assert not spark_connect.catalog.isCached("country_revenue")


def cli(server: SparkConnectServer, config: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "spark_job", "run", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def test_cli_remote_and_spark_remote_report_a_failing_sequence(
    spark_connect_server: SparkConnectServer, spark_connect: Any, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    config = tmp_path / "p.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "app_name": "remote",
                "sequences": [
                    {
                        "name": "ok",
                        "query": "SELECT id FROM range(42)",
                        "target": {"type": "parquet", "path": str(out / "ok"), "mode": "append"},
                    },
                    {
                        "name": "broken",
                        "query": "SELECT CAST(raise_error('remote boom') AS STRING) AS x FROM range(2)",
                        "target": {"type": "parquet", "path": str(out / "broken"), "mode": "append"},
                    },
                    {
                        "name": "after",
                        "query": "SELECT * FROM broken",
                        "target": {"type": "json", "path": str(out / "after"), "mode": "append"},
                    },
                ],
            }
        )
    )
    for how in ("flag", "env"):
        metrics_file = tmp_path / f"{how}.json"
        if how == "flag":
            proc = cli(
                spark_connect_server, config, "--remote", spark_connect_server.url, "--metrics-out", str(metrics_file)
            )
        else:
            proc = cli(
                spark_connect_server,
                config,
                "--metrics-out",
                str(metrics_file),
                env={"SPARK_REMOTE": spark_connect_server.url},
            )
        assert proc.returncode == 1, proc.stderr[-3000:]
        metrics = json.loads(metrics_file.read_text())
        assert json.loads(proc.stdout.strip().splitlines()[-1][len(METRICS_MARKER) :]) == metrics
        seqs = metrics["sequences"]
        assert seqs["ok"]["status"] == "succeeded" and seqs["ok"]["rows_written"] in counts(spark_connect, 42)
        assert seqs["broken"]["status"] == "failed" and "remote boom" in seqs["broken"]["error"]
        assert seqs["after"]["status"] == "skipped"
        assert re.search(r"^  after +skipped: reads broken, which failed$", proc.stderr, flags=re.M), proc.stderr
    assert len(list((out / "ok").glob("part-*"))) >= 2  # appended by both runs


def test_fail_fast_interrupts_a_running_sequence_by_its_tag(spark_connect: Any, tmp_path: Path) -> None:
    import threading

    config = load_config(
        {
            "app_name": "ff-connect",
            "fail_fast": True,
            "max_parallel": 2,
            "sequences": [
                # atomic: false: the staged swap needs this process's JVM (see the example test)
                {
                    "name": "endless",
                    "query": ENDLESS,
                    "target": {"type": "parquet", "path": str(tmp_path / "e"), "atomic": False},
                },
                {
                    "name": "broken",
                    "query": "SELECT nope FROM range(1)",
                    "target": {"type": "parquet", "path": str(tmp_path / "b")},
                },
            ],
        }
    )
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(PipelineRunner(config, spark=spark_connect).run()))
    worker.start()
    worker.join(180)
    if worker.is_alive():
        spark_connect.interruptAll()
        worker.join(60)
        raise AssertionError("the connect run was not cancelled within 180 s")
    seqs = result["sequences"]
    assert seqs["broken"]["status"] == "failed"
    assert seqs["endless"]["status"] == "cancelled", seqs["endless"]
    assert "fail_fast" in seqs["endless"]["error"]
    assert not list((tmp_path / "e").glob("part-*"))
