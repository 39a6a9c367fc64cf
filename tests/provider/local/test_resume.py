"""Airflow retries resume on local Spark: with Airflow's ``dag.test()`` and the real spark-submit, a task whose
first try fails in its second sequence is retried; the retry reuses the first sequence (an append, written
once) and runs the second. With ``resume=False`` or ``full_refresh`` the retry runs every sequence again."""

from __future__ import annotations

import json
from pathlib import Path

from tests.provider.support import QUIET_SPARK, TEST_DAGS, DagRunner, sparkpipe_connection

EVENTS = 4


def test_a_retry_reuses_what_the_failed_try_committed(dag_runner: DagRunner, tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "part-0.json").write_text("".join(json.dumps({"id": i}) + "\n" for i in range(EVENTS)))
    work = tmp_path / "work"
    env = {
        "AIRFLOW_CONN_SPARKPIPE_DEFAULT": sparkpipe_connection(
            runtime="local", master="local[1]", work_dir=str(work), conf=QUIET_SPARK
        ),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARKPIPE_TEST_RESUME": str(tmp_path),
    }
    result = dag_runner.run([{"dag_folder": str(TEST_DAGS), "dag_id": "sparkpipe_test_resume"}], env=env)
    run = result["sparkpipe_test_resume"]
    assert run.state == "success", run.log[-8000:]
    assert run.tasks == {"resumed": "success", "rerun": "success", "refreshed": "success"}, run.log[-8000:]
    # Every first try failed in its second sequence, after the first had appended the events.
    assert run.log.count("the first try fails here") >= 3, run.log[-8000:]

    statuses = {task: {n: s["status"] for n, s in run.xcom(task)["sequences"].items()} for task in run.tasks}
    assert statuses["resumed"] == {"appended": "reused", "checked": "succeeded"}
    assert statuses["rerun"] == {"appended": "succeeded", "checked": "succeeded"}
    assert statuses["refreshed"] == {"appended": "succeeded", "checked": "succeeded"}
    # The reused sequence keeps the figures of its commit.
    assert run.xcom("resumed")["sequences"]["appended"]["rows_written"] == EVENTS

    appended = {task: _parquet_ids(tmp_path / task / "appended") for task in run.tasks}
    assert appended["resumed"] == list(range(EVENTS))  # written once
    assert appended["rerun"] == sorted([*range(EVENTS), *range(EVENTS)])  # each try appended
    assert appended["refreshed"] == sorted([*range(EVENTS), *range(EVENTS)])
    assert _parquet_ids(tmp_path / "resumed" / "checked") == list(range(EVENTS))

    # Only the resuming task gave the driver a run key, the same on both tries, and a state folder in the
    # work dir's runs/<task key>/commits; the local runtime removed it once the task succeeded.
    commands = [line for line in run.log.splitlines() if "Running: " in line and "spark-submit" in line]
    assert len(commands) == 6, commands
    keys = [_argument(line, "--run-key") for line in commands]
    assert [k is not None for k in keys] == [True, True, False, False, False, False], commands
    key = keys[0]
    assert key is not None and key == keys[1] and key.startswith("sparkpipe_test_resume.resumed-")
    state_dir = Path(_argument(commands[0], "--state-dir") or "")
    assert state_dir.name == "commits" and state_dir.parent.parent == work / "runs"
    assert not state_dir.parent.exists()
    assert "committed by an earlier try of run " + key in run.log


def _argument(command: str, name: str) -> str | None:
    words = command.split()
    return words[words.index(name) + 1] if name in words else None


def _parquet_ids(folder: Path) -> list[int]:
    import pyarrow.parquet as pq

    return sorted(pq.read_table(folder).column("id").to_pylist())
