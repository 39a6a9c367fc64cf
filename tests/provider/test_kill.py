"""Killing a running task stops spark-submit's whole process group (JVM and Python driver)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.provider.conftest import (
    QUIET_SPARK,
    RUNNER,
    TEST_DAGS,
    live_group_members,
    sparkpipe_connection,
    split_logs,
)


def test_sigterm_to_the_task_kills_the_spark_submit_process_group(airflow_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "out": str(out),
                "runs": [{"dag_folder": str(TEST_DAGS), "dag_id": "sparkpipe_test_slow", "logical_date": "2024-01-15"}],
            }
        )
    )
    connection = sparkpipe_connection(
        master="local[1]", work_dir=str(tmp_path / "work"), conf=QUIET_SPARK, kill_grace_s=20
    )
    env = {
        **os.environ,
        "AIRFLOW_CONN_SPARKPIPE_DEFAULT": connection,
        "SPARKPIPE_TEST_OUTPUT": str(tmp_path / "output"),
    }
    runner = subprocess.Popen(
        [sys.executable, str(RUNNER), str(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert runner.stdout is not None
        for line in runner.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    pgid = None
    try:
        # Wait (event driven, generous upper bound) until the first sequence is done and the second
        # one sleeps inside Spark.
        deadline = time.monotonic() + 300
        while True:
            line = lines.get(timeout=max(1.0, deadline - time.monotonic()))
            assert line is not None, "".join(seen)[-5000:]
            seen.append(line)
            if match := re.search(r"spark-submit started: pid \d+, process group (\d+)", line):
                pgid = int(match.group(1))
            if "sparkpipe: sequence quick succeeded" in line:
                break
        assert pgid is not None
        members = live_group_members(pgid)
        assert len(members) >= 2, members  # the spark-submit JVM and the Python driver it started

        runner.send_signal(signal.SIGTERM)  # what the Airflow supervisor sends a task it kills
        while (line := lines.get(timeout=300)) is not None:
            seen.append(line)
        assert runner.wait(timeout=60) == 0, "".join(seen)[-5000:]
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        if pgid is not None and live_group_members(pgid):
            os.killpg(pgid, signal.SIGKILL)
            pytest.fail(f"process group {pgid} survived the kill")

    log = split_logs("".join(seen))["sparkpipe_test_slow"]
    assert "Task killed: cancelling the pipeline run" in log
    assert f"spark-submit process group {pgid} stopped" in log
    result = json.loads(out.read_text())["sparkpipe_test_slow"]
    assert (result["state"], result["tasks"]) == ("failed", {"slow": "failed"})
    assert "pipeline run cancelled: spark-submit was stopped" in log


def test_a_retry_stops_the_run_an_earlier_attempt_left_running(tmp_path: Path) -> None:
    """A worker that died hard could not cancel its spark-submit; the next attempt stops it."""
    from airflow_provider_sparkpipe.hooks.base import PipelineSubmission
    from airflow_provider_sparkpipe.runtimes import LocalSpark
    from spark_job.config import load_config

    runtime = LocalSpark(master="local[1]", work_dir=str(tmp_path / "work"), conf=QUIET_SPARK, kill_grace_s=20)
    pipeline = load_config(TEST_DAGS / "pipelines" / "slow.yaml", {"output_dir": str(tmp_path / "out")})
    attempt = {"document": pipeline.to_document(), "app_name": pipeline.app_name, "task_key": "dag__slow__run__-1"}
    first_hook, second_hook = runtime.hook(), runtime.hook()  # as two worker processes would
    first = first_hook.submit(PipelineSubmission(**attempt, try_number=1))
    pgid = first.details["pgid"]
    second = None
    try:
        assert live_group_members(pgid)
        second = second_hook.submit(PipelineSubmission(**attempt, try_number=2))
        assert live_group_members(pgid) == []
        assert live_group_members(second.details["pgid"])
    finally:
        if second is not None:
            second_hook.cancel(second)
            assert live_group_members(second.details["pgid"]) == []
        first_hook.cancel(first)
        first_hook.wait(first)  # reaps the first spark-submit, our child here
