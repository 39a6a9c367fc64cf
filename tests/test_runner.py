"""Running pipelines on a real local Spark: outputs, observed row counts, modes, failures, metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from spark_job import METRICS_MARKER
from spark_job.cli import main
from spark_job.config.validation import load_config
from spark_job.engine.runner import PipelineRunner

from .support import REPO


def run(spark: Any, config: dict | Path, **kwargs: Any) -> dict:
    return PipelineRunner(load_config(config, kwargs.pop("vars", None)), spark=spark, **kwargs).run()


def pipeline(tmp_path: Path, sequences: list[dict], sources: dict | None = None, **top: Any) -> dict:
    return {"app_name": "t", "sources": sources or {}, "sequences": sequences, **top}


@pytest.fixture()
def events(spark: Any, tmp_path: Path) -> str:
    path = str(tmp_path / "events")
    spark.range(0, 1000).selectExpr(
        "id",
        "id % 10 AS user_id",
        "CASE WHEN id % 3 = 0 THEN 'buy' ELSE 'view' END AS kind",
        "date_add(DATE'2024-01-01', CAST(id % 4 AS INT)) AS day",
    ).write.parquet(path)
    return path


def test_example_pipeline_end_to_end(spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    metrics_file = tmp_path / "m" / "metrics.json"
    config = load_config(
        REPO / "examples" / "pipeline.yaml", {"out_dir": str(out), "data_dir": str(REPO / "examples/data")}
    )
    metrics = PipelineRunner(config, spark=spark, metrics_out=str(metrics_file)).run()

    assert metrics["status"] == "succeeded", metrics
    assert json.loads(metrics_file.read_text()) == metrics
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert last_line.startswith(METRICS_MARKER) and json.loads(last_line[len(METRICS_MARKER) :]) == metrics
    assert metrics["spark_app_id"] == spark.sparkContext.applicationId

    seqs = metrics["sequences"]
    assert list(seqs) == ["daily_event_counts", "country_revenue", "top_countries"]
    events = spark.read.csv(str(REPO / "examples/data/events.csv"), header=True, inferSchema=True)
    day = events.where("event_date = DATE'2024-01-03'")
    expected_counts = day.groupBy("event_type").count().collect()
    written = spark.read.parquet(str(out / "daily_event_counts"))
    assert sorted((r.event_type, r.events) for r in written.collect()) == sorted(
        (r.event_type, r["count"]) for r in expected_counts
    )
    assert [p.name for p in (out / "daily_event_counts").iterdir() if p.is_dir()] == ["event_date=2024-01-03"]
    for name in seqs:
        assert seqs[name]["status"] == "succeeded"
        assert (
            seqs[name]["rows_written"]
            == spark.read.format("json" if name == "top_countries" else "parquet").load(str(out / name)).count()
        )
        assert seqs[name]["duration_s"] >= 0 and seqs[name]["started_at"] <= seqs[name]["ended_at"]
    assert seqs["top_countries"]["target"] == {"type": "json", "uri": str(out / "top_countries")}
    assert len(list((out / "top_countries").glob("part-*"))) == 1  # coalesce: 1
    top = spark.read.json(str(out / "top_countries")).orderBy("revenue_rank").first()
    assert top.revenue_rank == 1
    # the intermediate result kept for top_countries is released once its readers ran
    assert not spark.catalog.isCached("country_revenue")


def test_row_counts_cost_no_extra_spark_job(spark: Any, events: str, tmp_path: Path) -> None:
    """The observed count rides on the write: the pipeline runs as many jobs as the bare write."""
    query = "SELECT user_id, kind, id FROM events WHERE kind = 'buy'"
    tracker = spark.sparkContext.statusTracker()
    spark.sparkContext.setJobGroup("handwritten", "bare write")
    spark.read.parquet(events).createOrReplaceTempView("events")
    spark.sql(query).write.mode("overwrite").parquet(str(tmp_path / "hand"))
    hand_jobs = len(tracker.getJobIdsForGroup("handwritten"))

    config = pipeline(
        tmp_path,
        [{"name": "buys", "query": query, "target": {"type": "parquet", "path": str(tmp_path / "pipe")}}],
        {"events": {"type": "file", "path": events}},
    )
    spark.sparkContext.setJobGroup("rest", "rest")
    runner = PipelineRunner(load_config(config), spark=spark)
    metrics = runner.run()
    # every job of the run is in the job group of the sources or of a sequence
    pipe_jobs = sum(len(tracker.getJobIdsForGroup(runner.job_tag(name))) for name in ("sources", "buys"))
    assert len(tracker.getJobIdsForGroup("rest")) == 0
    assert metrics["sequences"]["buys"]["rows_written"] == 334
    assert pipe_jobs == hand_jobs


def test_failed_sequence_skips_dependents_and_runs_the_rest(spark: Any, events: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = pipeline(
        tmp_path,
        [
            {
                "name": "broken",
                "query": "SELECT CAST(raise_error('boom from broken') AS STRING) AS x FROM events",
                "target": {"type": "parquet", "path": str(out / "broken")},
            },
            {
                "name": "after_broken",
                "query": "SELECT * FROM broken",
                "target": {"type": "parquet", "path": str(out / "a")},
            },
            {
                "name": "after_after",
                "query": "SELECT * FROM after_broken",
                "target": {"type": "csv", "path": str(out / "b")},
            },
            {
                "name": "independent",
                "query": "SELECT kind, count(*) n FROM events GROUP BY kind",
                "target": {"type": "parquet", "path": str(out / "i")},
            },
        ],
        {"events": {"type": "file", "path": events}},
    )
    metrics = run(spark, config, metrics_out=str(tmp_path / "metrics.json"))
    seqs = metrics["sequences"]
    assert metrics["status"] == "failed"
    assert seqs["broken"]["status"] == "failed" and "boom from broken" in seqs["broken"]["error"]
    assert seqs["after_broken"]["status"] == "skipped" and "broken" in seqs["after_broken"]["error"]
    assert seqs["after_after"]["status"] == "skipped"
    assert seqs["independent"]["status"] == "succeeded" and seqs["independent"]["rows_written"] == 2
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "failed"
    assert not (out / "a").exists()

    stopped = run(spark, {**config, "fail_fast": True, "max_parallel": 1})["sequences"]
    assert stopped["independent"]["status"] == "skipped" and "fail_fast" in stopped["independent"]["error"]


def test_cli_exit_codes(spark: Any, events: str, tmp_path: Path) -> None:
    import yaml

    good = tmp_path / "good.yaml"
    good.write_text(
        yaml.safe_dump(
            pipeline(
                tmp_path,
                [
                    {
                        "name": "s",
                        "query": "SELECT * FROM events",
                        "target": {"type": "parquet", "path": str(tmp_path / "o1")},
                    }
                ],
                {"events": {"type": "file", "path": events}},
            )
        )
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            pipeline(
                tmp_path,
                [
                    {
                        "name": "s",
                        "query": "SELECT nope FROM events",
                        "target": {"type": "parquet", "path": str(tmp_path / "o2")},
                    }
                ],
                {"events": {"type": "file", "path": events}},
            )
        )
    )
    assert main(["run", "--config", str(good)]) == 0
    assert main(["run", "--config", str(bad)]) == 1
    assert main(["run", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert spark.range(3).count() == 3  # the session the CLI found running is left running


def test_the_cli_stops_the_session_it_started(tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    config = tmp_path / "one.yaml"
    sequence = {"name": "s", "query": "SELECT 1 AS x", "target": {"type": "parquet", "path": str(tmp_path / "o")}}
    config.write_text(yaml.safe_dump(pipeline(tmp_path, [sequence], {})))
    code = (
        "import sys; from spark_job.cli import main; rc = main(sys.argv[1:]); from pyspark import SparkContext; "
        "print('STOPPED' if SparkContext._active_spark_context is None else 'RUNNING'); sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "run", "--config", str(config), "--master", "local[1]"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1] == "STOPPED"


def test_modes_append_error_ignore(spark: Any, events: str, tmp_path: Path) -> None:
    target = str(tmp_path / "t")

    def once(mode: str) -> dict:
        return run(
            spark,
            pipeline(
                tmp_path,
                [
                    {
                        "name": "s",
                        "query": "SELECT id FROM events WHERE id < 10",
                        "target": {"type": "orc", "path": target, "mode": mode},
                    }
                ],
                {"events": {"type": "file", "path": events}},
            ),
        )

    assert once("overwrite")["sequences"]["s"]["rows_written"] == 10
    assert once("append")["sequences"]["s"]["rows_written"] == 10
    assert spark.read.orc(target).count() == 20
    failed = once("error")["sequences"]["s"]
    assert failed["status"] == "failed" and "already exists" in failed["error"]
    ignored = once("ignore")["sequences"]["s"]
    assert ignored["status"] == "succeeded" and ignored["rows_written"] == 0
    assert once("overwrite")["sequences"]["s"]["rows_written"] == 10
    assert spark.read.orc(target).count() == 10


def test_partitioning_and_dynamic_partition_overwrite(spark: Any, events: str, tmp_path: Path) -> None:
    target = tmp_path / "by_day"
    src = {"events": {"type": "file", "path": events}}

    def once(where: str, dynamic: bool) -> dict:
        return run(
            spark,
            pipeline(
                tmp_path,
                [
                    {
                        "name": "s",
                        "query": f"SELECT id, day FROM events WHERE {where}",
                        "target": {
                            "type": "parquet",
                            "path": str(target),
                            "partition_by": "day",
                            "repartition": ["day"],
                            "dynamic_partition_overwrite": dynamic,
                        },
                    }
                ],
                src,
            ),
        )

    once("true", False)
    assert sorted(p.name for p in target.iterdir() if p.is_dir())[0] == "day=2024-01-01"
    assert once("day = DATE'2024-01-02' AND id < 8", True)["sequences"]["s"]["rows_written"] == 2
    counts = {r.day.isoformat(): r["count"] for r in spark.read.parquet(str(target)).groupBy("day").count().collect()}
    assert counts == {"2024-01-01": 250, "2024-01-02": 2, "2024-01-03": 250, "2024-01-04": 250}


def test_sources_list_schema_options_and_formats(spark: Any, tmp_path: Path) -> None:
    csv = tmp_path / "in.csv"
    csv.write_text("a;b\n1;x\n2;y\n3;z\n")
    text = tmp_path / "in.txt"
    text.write_text("hello\nworld\n")
    out = tmp_path / "out"
    metrics = run(
        spark,
        {
            "app_name": "formats",
            "sources": [
                {
                    "type": "file",
                    "format": "csv",
                    "path": str(csv),
                    "alias": "letters",
                    "schema": "a INT, b STRING",
                    "options": {"header": True, "sep": ";"},
                },
                {"type": "file", "format": "text", "path": str(text), "alias": "lines"},
            ],
            "sequences": [
                {
                    "name": "big",
                    "query": "SELECT a, b FROM letters WHERE a >= 2",
                    "target": {"type": "json", "path": str(out / "j")},
                },
                {
                    "name": "words",
                    "query": "SELECT upper(value) AS v FROM lines",
                    "target": {"type": "csv", "path": str(out / "c"), "options": {"header": True}},
                },
                {
                    "name": "both",
                    "query": "SELECT * FROM big CROSS JOIN words",
                    "target": {"type": "file", "format": "orc", "path": str(out / "o"), "coalesce": 1},
                },
            ],
        },
    )
    assert metrics["status"] == "succeeded", metrics
    assert sorted(r.a for r in spark.read.json(str(out / "j")).collect()) == [2, 3]
    assert sorted(r.v for r in spark.read.csv(str(out / "c"), header=True).collect()) == ["HELLO", "WORLD"]
    assert metrics["sequences"]["both"]["rows_written"] == 4 == spark.read.orc(str(out / "o")).count()


def test_catalog_tables_save_insert_and_read(spark: Any, events: str, tmp_path: Path) -> None:
    spark.sql("DROP TABLE IF EXISTS default.kind_counts")
    src = {"events": {"type": "file", "path": events}}
    created = run(
        spark,
        pipeline(
            tmp_path,
            [
                {
                    "name": "s",
                    "query": "SELECT kind, count(*) AS n FROM events GROUP BY kind",
                    "target": {"type": "table", "table": "default.kind_counts", "format": "parquet"},
                }
            ],
            src,
        ),
    )
    assert created["sequences"]["s"]["target"] == {"type": "table", "table": "default.kind_counts"}
    inserted = run(
        spark,
        pipeline(
            tmp_path,
            [
                {
                    "name": "s",
                    "query": "SELECT 'other' AS kind, 5L AS n",
                    "target": {"type": "table", "table": "default.kind_counts", "insert_into": True, "mode": "append"},
                }
            ],
        ),
    )
    assert inserted["sequences"]["s"]["rows_written"] == 1
    read_back = run(
        spark,
        {
            "app_name": "r",
            "sources": {"k": {"type": "table", "table": "default.kind_counts"}},
            "sequences": [
                {
                    "name": "total",
                    "query": "SELECT sum(n) AS n FROM k",
                    "target": {"type": "json", "path": str(tmp_path / "sum")},
                }
            ],
        },
    )
    assert read_back["status"] == "succeeded"
    assert spark.read.json(str(tmp_path / "sum")).first().n == 1005


def test_missing_source_fails_its_readers_with_the_source_named(spark: Any, events: str, tmp_path: Path) -> None:
    metrics = run(
        spark,
        pipeline(
            tmp_path,
            [
                {
                    "name": "a",
                    "query": "SELECT * FROM ghost",
                    "target": {"type": "parquet", "path": str(tmp_path / "a")},
                },
                {
                    "name": "b",
                    "query": "SELECT * FROM events",
                    "target": {"type": "parquet", "path": str(tmp_path / "b")},
                },
            ],
            {"ghost": {"type": "file", "path": str(tmp_path / "nowhere")}, "events": {"type": "file", "path": events}},
        ),
    )
    assert metrics["status"] == "failed"
    assert metrics["sequences"]["a"]["status"] == "failed"
    assert "source 'ghost' (sources.ghost)" in metrics["sequences"]["a"]["error"]
    assert "nowhere" in metrics["sequences"]["a"]["error"]
    assert metrics["sequences"]["b"]["status"] == "succeeded"


def test_sigterm_cancels_the_run_keeps_the_target_and_writes_the_metrics(spark: Any, tmp_path: Path) -> None:
    """What YARN, Kubernetes and Airflow send first: jobs cancelled, metrics written, exit 143."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import threading
    import time

    import yaml

    out = tmp_path / "out"
    spark.range(7).write.parquet(str(out / "endless"))  # the target as it was before the run
    # It reads ``quick``: it starts only once ``quick`` succeeded (no race for local[2]'s two cores),
    # and the SIGTERM comes right after it started, maybe before its first Spark job did.
    endless = (
        "SELECT count(*) AS n FROM quick CROSS JOIN range(3000000) a CROSS JOIN range(3000000) b"
        " WHERE a.id + b.id + quick.x = -1"
    )
    config = tmp_path / "p.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "app_name": "term",
                "max_parallel": 2,
                "sequences": [
                    {"name": "quick", "query": "SELECT 1 AS x", "target": {"type": "parquet", "path": str(out / "q")}},
                    {"name": "endless", "query": endless, "target": {"type": "parquet", "path": str(out / "endless")}},
                    {
                        "name": "after",
                        "query": "SELECT * FROM endless",
                        "target": {"type": "json", "path": str(out / "a")},
                    },
                ],
            }
        )
    )
    metrics_file = tmp_path / "metrics.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spark_job",
            "run",
            "-c",
            str(config),
            "--master=local[2]",
            f"--metrics-out={metrics_file}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    lines: list[str] = []
    out_lines: list[str] = []
    # One reader per pipe, and nothing else reads them (communicate() would take stderr lines too).
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    out_reader = threading.Thread(target=lambda: out_lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    out_reader.start()
    try:
        deadline = time.monotonic() + 300
        while not any("sequence endless started" in line for line in lines):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the run did not get to its long sequence:\n" + "".join(lines)[-3000:])
            time.sleep(0.2)
        assert any("sequence quick succeeded" in line for line in lines)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(10)
    out_reader.join(10)
    stderr, stdout = "".join(lines), "".join(out_lines)
    assert proc.returncode == 143, stderr[-3000:]
    metrics = json.loads(metrics_file.read_text())
    assert json.loads(stdout.strip().splitlines()[-1][len(METRICS_MARKER) :]) == metrics
    assert metrics["status"] == "failed" and metrics["error"].startswith("terminated by SIGTERM")
    seqs = metrics["sequences"]
    assert seqs["quick"]["status"] == "succeeded"
    assert seqs["endless"]["status"] == "cancelled" and "terminated (SIGTERM)" in seqs["endless"]["error"]
    assert seqs["after"]["status"] == "skipped"
    assert sorted(r.id for r in spark.read.parquet(str(out / "endless")).collect()) == list(range(7))
    assert not (out / "a").exists()
    # every line is whole: the JVM's forwarded lines and sparkpipe's never cut each other
    assert "sequence endless cancelled after" in stderr and "the driver was terminated (SIGTERM)" in stderr, stderr
    assert re.search(r"^  endless +cancelled after [\d.]+ s: cancelled: the driver was terminated", stderr, re.M)
    assert re.search(r"^  after +skipped: the driver was terminated \(SIGTERM\)$", stderr, re.M), stderr
    assert "sparkpipe: not run: after\n" in stderr


def test_a_session_given_to_a_run_keeps_its_settings_for_the_next_pipeline(spark: Any, tmp_path: Path) -> None:
    """The settings a run's ``spark_conf`` changed on a session it was given are put back after it (unset
    where they were unset; a static one it could not change stays as it is): the next pipeline on that
    session overwrites its partitioned target whole, not with the first one's dynamic overwrite."""
    target = tmp_path / "by_day"
    spark.range(3).selectExpr("id", "1 AS day").write.partitionBy("day").parquet(str(target))
    keys = ["spark.sql.sources.partitionOverwriteMode", "spark.sql.shuffle.partitions", "spark.sql.warehouse.dir"]
    before = {key: spark.conf.get(key, None) for key in keys}
    assert before["spark.sql.sources.partitionOverwriteMode"] is None  # unset on the test session

    def pipeline(day: int, spark_conf: dict[str, str]) -> dict:
        sequence = {
            "name": "s",
            "query": f"SELECT id, {day} AS day FROM range(2)",
            "target": {"type": "parquet", "path": str(target), "partition_by": "day"},
        }
        config = {"app_name": "owner", "spark_conf": spark_conf, "sequences": [sequence]}
        return PipelineRunner(load_config(config), spark=spark).run()

    dynamic = {
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.shuffle.partitions": "3",
        "spark.sql.warehouse.dir": str(tmp_path / "elsewhere"),  # static: cannot change, left alone
    }
    assert pipeline(2, dynamic)["status"] == "succeeded"
    days = {r.day for r in spark.read.parquet(str(target)).select("day").distinct().collect()}
    assert days == {1, 2}  # the run itself overwrote dynamically
    assert {key: spark.conf.get(key, None) for key in keys} == before
    assert pipeline(3, {})["status"] == "succeeded"
    days = {r.day for r in spark.read.parquet(str(target)).select("day").distinct().collect()}
    assert days == {3}  # replaced whole: the first pipeline's setting did not stay


def test_a_run_leaves_no_pools_file_behind(spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The FAIR pools' allocation file is read when a session starts: a run on a session it found running
    (a notebook's) or a driver killed mid-run leaves no folder of it in the temporary folder."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    sequence = {"name": "s", "query": "SELECT 1 AS x", "target": {"type": "parquet", "path": str(tmp_path / "o")}}
    runner = PipelineRunner(load_config(pipeline(tmp_path, [sequence], {})))  # finds the test's session
    assert runner.run()["status"] == "succeeded"
    assert not runner.owns_session
    assert list((tmp_path / "tmp").glob("sparkpipe-pools-*")) == []


def test_no_usage_request_where_the_ui_is_off(spark: Any) -> None:
    """The usage figures come from the driver's own UI: a session without one (the tests') gets no request
    made in the background, and no figures, rather than an error."""
    from spark_job.engine.metrics import executor_usage, prepare_usage

    assert spark.conf.get("spark.ui.enabled") == "false"
    assert prepare_usage(spark) is None
    assert executor_usage(spark) is None
