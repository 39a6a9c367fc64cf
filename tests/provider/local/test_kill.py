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
from typing import Any

import pytest

from airflow_provider_sparkpipe.hooks.base import hook_for
from tests.provider.support import QUIET_SPARK, RUNNER, TEST_DAGS, live_group_members, sparkpipe_connection, split_logs


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
    # The Python driver gets the SIGTERM too: when it writes its metrics before the group is gone, the
    # task fails with its account of the run (the sequence it cancelled), else with the hook's.
    (run_dir,) = (tmp_path / "work" / "runs").glob("*__try1")
    if (run_dir / "metrics.json").is_file():
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["sequences"]["sleepy"]["status"] == "cancelled", metrics
        assert "pipeline 'slow_pipeline' failed: terminated by SIGTERM: running sequences were cancelled" in log
    else:
        assert "pipeline run cancelled: spark-submit was stopped" in log


def test_a_retry_stops_the_run_an_earlier_attempt_left_running(tmp_path: Path) -> None:
    """A worker that died hard could not cancel its spark-submit; the next attempt stops it."""
    from airflow_provider_sparkpipe.runs import PipelineSubmission
    from airflow_provider_sparkpipe.runtimes import LocalSpark
    from spark_job.config.validation import load_config

    runtime = LocalSpark(master="local[1]", work_dir=str(tmp_path / "work"), conf=QUIET_SPARK, kill_grace_s=20)
    pipeline = load_config(TEST_DAGS / "pipelines" / "slow.yaml", {"output_dir": str(tmp_path / "out")})
    attempt = {"document": pipeline.to_document(), "app_name": pipeline.app_name, "task_key": "dag__slow__run__-1"}
    first_hook, second_hook = hook_for(runtime), hook_for(runtime)  # as two worker processes would
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


def test_a_retry_stops_only_the_group_its_earlier_attempt_started(tmp_path: Path) -> None:
    """The earlier attempt's record names a process group and the start time of its leader: a group
    that got the same number later (pid reuse) is left alone, the recorded one is stopped, however
    early in its start-up (before any of its processes names the run directory)."""
    from airflow_provider_sparkpipe.hooks.process_group import start_time
    from airflow_provider_sparkpipe.runs import PipelineSubmission
    from airflow_provider_sparkpipe.runtimes import LocalSpark

    runtime = LocalSpark(master="local[1]", work_dir=str(tmp_path), kill_grace_s=5)
    earlier = tmp_path / "runs" / "dag__t__run__try1"
    earlier.mkdir(parents=True)
    retry = PipelineSubmission(document={}, app_name="t", task_key="dag__t__run", try_number=2)
    group = subprocess.Popen(["sleep", "600"], start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        leader_start = start_time(group.pid)
        assert leader_start is not None
        (earlier / "spark-submit.pgid").write_text(f"{group.pid} {leader_start + 1}\n")  # another process's
        hook_for(runtime)._stop_earlier_attempts(retry)
        assert group.poll() is None, "a group that is not the attempt's own was stopped"
        (earlier / "spark-submit.pgid").write_text("not a record\n")
        hook_for(runtime)._stop_earlier_attempts(retry)
        assert group.poll() is None
        (earlier / "spark-submit.pgid").write_text(f"{group.pid} {leader_start}\n")
        hook_for(runtime)._stop_earlier_attempts(retry)
        assert group.wait(timeout=120) == -signal.SIGTERM  # a bound against a hang, not a timing
    finally:
        if group.poll() is None:
            group.kill()
            group.wait()


def _stubborn_group() -> subprocess.Popen[bytes]:
    """A process group (in a session of its own) whose members all ignore SIGTERM."""
    group = subprocess.Popen(
        ["bash", "-c", "trap '' TERM; sleep 600 & sleep 600 & wait"],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    while len(live_group_members(group.pid)) < 3:  # bash and its two sleeps
        assert group.poll() is None
        time.sleep(0.05)
    return group


def _local_run(pgid: int) -> Any:
    from airflow_provider_sparkpipe.runs import PipelineRun

    return PipelineRun(runtime_kind="local", run_id=str(pgid), details={"pgid": pgid})


def _wait_until(condition: Any, what: str, bound_s: float = 120) -> None:
    """Event-driven wait with a generous bound, so a broken kill fails the test instead of hanging it."""
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        time.sleep(0.05)


def test_a_group_that_ignores_sigterm_is_killed_even_when_the_cancelling_process_dies(tmp_path: Path) -> None:
    """Airflow's supervisor SIGKILLs a task a few seconds after its SIGTERM, before ``kill_grace_s`` is
    over: the SIGKILL must still reach the spark-submit group, which lives in a session of its own."""
    group = _stubborn_group()
    canceller = None
    try:
        script = (
            "import sys\n"
            "from airflow_provider_sparkpipe.hooks.base import hook_for\n"
            "from airflow_provider_sparkpipe.runs import PipelineRun\n"
            "from airflow_provider_sparkpipe.runtimes import LocalSpark\n"
            f"run = PipelineRun(runtime_kind='local', run_id='{group.pid}', details={{'pgid': {group.pid}}})\n"
            f"hook_for(LocalSpark(master='local[1]', work_dir={str(tmp_path)!r}, kill_grace_s=3)).cancel(run)\n"
            "sys.exit(3)  # not reached: the test kills this process while it waits\n"
        )
        canceller = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.DEVNULL)
        reaper_args = f"process_group.py {group.pid} "

        def reaper_started() -> bool:
            assert canceller is not None and canceller.poll() is None, "the cancel returned: the group died of SIGTERM?"
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    if reaper_args in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                        return True
                except OSError:
                    continue
            return False

        _wait_until(reaper_started, "the hook to send SIGTERM and start its reaper")
        assert len(live_group_members(group.pid)) == 3  # SIGTERM ignored
        canceller.kill()  # what the supervisor does once its own grace is over
        canceller.wait()
        _wait_until(lambda: group.poll() is not None, "the reaper to SIGKILL the group")
        assert group.returncode == -signal.SIGKILL
        _wait_until(lambda: not live_group_members(group.pid), "the sleeps to die")
    finally:
        if canceller is not None and canceller.poll() is None:
            canceller.kill()
        if live_group_members(group.pid):
            os.killpg(group.pid, signal.SIGKILL)
        group.wait()


def test_on_kill_returns_at_once_and_cancels_from_a_thread_of_its_own(tmp_path: Path) -> None:
    """``on_kill`` runs inside the SIGTERM handler, on the thread the signal interrupted (maybe while it
    held a logging lock): it must neither log nor wait there; ``execute`` waits for the cancel."""
    import logging

    from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator
    from airflow_provider_sparkpipe.runtimes import LocalSpark

    group = _stubborn_group()
    try:
        runtime = LocalSpark(master="local[1]", work_dir=str(tmp_path), kill_grace_s=1)
        operator = SparkPipelineOperator(
            task_id="killed",
            config=TEST_DAGS / "pipelines" / "slow.yaml",
            vars={"output_dir": str(tmp_path)},
            runtime=runtime,
        )
        records: list[tuple[str, str]] = []

        class Recorder(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append((record.threadName or "", record.getMessage()))

        log = logging.getLogger("sparkpipe-test-kill")  # stands in for the task's structlog logger
        log.addHandler(Recorder())
        log.setLevel(logging.INFO)
        log.propagate = False
        hook = hook_for(runtime)
        operator._cached_logger = hook._log = log  # type: ignore[assignment]
        operator._hook, operator._run = hook, _local_run(group.pid)
        operator.on_kill()
        assert all(thread != threading.current_thread().name for thread, _ in records)
        cancelling = operator._cancelling
        assert cancelling is not None and cancelling.name == "sparkpipe-cancel"
        operator.on_kill()  # a second SIGTERM starts no second cancel
        assert operator._cancelling is cancelling
        cancelling.join()
        assert group.wait() == -signal.SIGKILL
        messages = {message: thread for thread, message in records}
        assert messages[f"Task killed: cancelling the pipeline run {group.pid}"] == "sparkpipe-cancel"
        assert messages[f"spark-submit process group {group.pid} killed"] == "sparkpipe-cancel"
    finally:
        if live_group_members(group.pid):
            os.killpg(group.pid, signal.SIGKILL)
        group.wait()


def test_the_reaper_says_whether_it_had_to_kill_the_group() -> None:
    """The hook words its log line from the reaper's exit code: when the group ignored SIGTERM and the
    reaper's SIGKILL came as the grace period ended (before the hook's own), it still says killed."""
    from airflow_provider_sparkpipe.hooks.process_group import REAPER_KILLED, start_reaper

    group = _stubborn_group()
    try:
        assert start_reaper(group.pid, 0.2).wait(timeout=60) == REAPER_KILLED
        assert group.wait(timeout=60) == -signal.SIGKILL
    finally:
        if live_group_members(group.pid):
            os.killpg(group.pid, signal.SIGKILL)
    quiet = subprocess.Popen(["sleep", "600"], start_new_session=True)
    reaper = start_reaper(quiet.pid, 120)
    quiet.terminate()
    quiet.wait()
    assert reaper.wait(timeout=60) == 0  # the group went on its own: the reaper ends without a kill
