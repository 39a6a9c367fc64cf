"""The driver on the Spark and Python at hand: the session capabilities, and the bundle as clusters run it.

Run by the main environment and by every cell of the test matrix (``tests/matrix/``): each assertion
holds on classic and Spark Connect sessions of Spark 3.5 and 4.x, on Python 3.9 to 3.13.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from spark_job import METRICS_MARKER
from spark_job.engine.capabilities import (
    ClassicSession,
    ConnectSpark4,
    ConnectSpark35,
    capabilities_of,
    pyspark_version,
)

from .support import ENDLESS, REPO, spark_home

SPARK_4 = pyspark_version() >= (4, 0)


def test_capabilities_are_chosen_once_per_session_by_kind_and_version(spark: Any, spark_connect: Any) -> None:
    classic, remote = capabilities_of(spark), capabilities_of(spark_connect)
    assert capabilities_of(spark) is classic and capabilities_of(spark_connect) is remote
    assert type(classic) is ClassicSession
    assert type(remote) is (ConnectSpark4 if SPARK_4 else ConnectSpark35)
    assert classic.functions.__name__ == "pyspark.sql.functions"
    assert remote.functions.__name__ == "pyspark.sql.connect.functions"
    assert classic.reaches_hadoop and not remote.reaches_hadoop
    assert classic.counts_writes and remote.counts_writes is SPARK_4
    assert not classic.counts_may_be_lost
    assert remote.counts_may_be_lost is str(spark_connect.version).startswith("4.0.")
    assert classic.application_id() == spark.sparkContext.applicationId
    assert str(remote.application_id()).startswith("local-")
    assert remote.ui_url() is None


@pytest.mark.parametrize("by", ["tag", "job group"])
def test_a_sequence_s_running_job_is_cancelled_by_its_tag_and_by_its_job_group(spark: Any, by: str) -> None:
    """On classic sessions the SparkContext's job tag, beside the job group (session tags exist only on
    Spark Connect in 3.5 and do not reach the jobs of PySpark's threads on classic 4.x)."""
    session = capabilities_of(spark)
    tag = f"sparkpipe-test-{uuid.uuid4().hex[:8]}"
    outcome: list[BaseException] = []

    def endless() -> None:
        with session.jobs_of(tag, "an endless query", None):
            try:
                spark.sql(ENDLESS).collect()
            except Exception as exc:
                outcome.append(exc)

    worker = threading.Thread(target=endless)
    worker.start()
    while worker.is_alive() and not session.jobs_ran(tag):
        worker.join(0.1)
    if by == "tag":
        session.cancel_tag(tag)
    else:
        spark.sparkContext.cancelJobGroup(tag)
    worker.join(120)
    if worker.is_alive():
        spark.sparkContext.cancelAllJobs()
        worker.join()
        raise AssertionError(f"cancelling by {by} did not stop the job")
    assert outcome and "cancel" in str(outcome[0]).lower(), outcome
    assert not session.jobs_ran(f"{tag}-other")


def expected_example(run_date: str) -> dict[str, list[dict[str, Any]]]:
    """The example pipeline's results, computed from its CSV files without Spark."""
    data = REPO / "examples" / "data"
    with (data / "events.csv").open() as fh:
        events = [e for e in csv.DictReader(fh) if e["event_date"] == run_date]
    with (data / "users.csv").open() as fh:
        country = {u["user_id"]: u["country"] for u in csv.DictReader(fh)}
    counts = Counter(e["event_type"] for e in events)
    revenue: dict[str, float] = defaultdict(float)
    purchases: Counter[str] = Counter()
    for e in events:
        if e["event_type"] == "purchase" and e["user_id"] in country:
            revenue[country[e["user_id"]]] += float(e["amount"])
            purchases[country[e["user_id"]]] += 1
    ranked = sorted(revenue, key=lambda c: -revenue[c])
    return {
        "daily_event_counts": [{"event_type": t, "events": n} for t, n in counts.items()],
        "country_revenue": [{"country": c, "revenue": revenue[c], "purchases": purchases[c]} for c in revenue],
        "top_countries": [
            {"country": c, "revenue_rank": 1 + sum(revenue[o] > revenue[c] for o in ranked)} for c in ranked
        ],
    }


def same_rows(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple((k, round(v, 6) if isinstance(v, float) else v) for k, v in sorted(row.items()))

    projected = [{k: row[k] for k in expected[0]} for row in actual] if expected else actual
    return sorted(map(key, projected)) == sorted(map(key, expected))


def test_the_bundle_runs_under_spark_submit_as_clusters_run_it(spark: Any, tmp_path: Path) -> None:
    """``sparkpipe bundle``, then ``spark-submit --py-files sparkpipe-<digest>.zip sparkpipe_main.py run``
    with this environment's Spark on a bare interpreter of this Python: pyspark only from Spark's own
    ``python/lib``, spark_job and PyYAML only from the bundle."""
    built = subprocess.run(
        [sys.executable, "-m", "spark_job", "bundle", "--out", str(tmp_path / "bundle")],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    bundle = json.loads(built.stdout.strip().splitlines()[-1])
    assert Path(bundle["py_files"]).name == f"sparkpipe-{bundle['digest']}.zip"

    run_date, out = "2024-01-05", tmp_path / "out"
    doc = yaml.safe_load((REPO / "examples" / "pipeline.yaml").read_text())
    doc["vars"].update({"data_dir": str(REPO / "examples" / "data"), "out_dir": str(out), "run_date": run_date})
    doc["sequences"][2]["query_file"] = str(REPO / "examples" / "sql" / "top_countries.sql")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(doc))

    python = Path(os.__file__).parents[2] / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "SPARK_REMOTE")}
    env.update({"SPARK_HOME": str(spark_home()), "PYSPARK_PYTHON": str(python), "PYSPARK_DRIVER_PYTHON": str(python)})
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    submit = [
        str(spark_home() / "bin" / "spark-submit"),
        *("--master", "local[2]", "--conf", "spark.ui.enabled=false"),
        *("--py-files", bundle["py_files"], bundle["main_file"]),
        *("run", "--config", str(config), "--metrics-out", f"file://{tmp_path}/metrics/metrics.json"),
    ]
    done = subprocess.run(submit, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    metrics = json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    marker = [line for line in done.stdout.splitlines() if line.startswith(METRICS_MARKER)]
    assert json.loads(marker[-1][len(METRICS_MARKER) :]) == metrics
    assert metrics["status"] == "succeeded" and metrics["spark_app_id"].startswith("local-")
    expected = expected_example(run_date)
    formats = {"daily_event_counts": "parquet", "country_revenue": "parquet", "top_countries": "json"}
    for name, fmt in formats.items():
        rows = [r.asDict() for r in spark.read.format(fmt).load(str(out / name)).collect()]
        assert same_rows(rows, expected[name]), (name, rows, expected[name])
        seq = metrics["sequences"][name]
        assert seq["status"] == "succeeded" and seq["rows_written"] == len(rows) > 0, seq
    assert (out / "daily_event_counts" / f"event_date={run_date}").is_dir()
    assert sorted(p.name for p in out.iterdir()) == sorted(formats)  # no staging or lease left beside
