"""SparkPipelineTrigger: serialisable for the triggerer, and it reports a finished run's state."""

from __future__ import annotations

import json
from pathlib import Path

from airflow_provider_sparkpipe.runs import PipelineRun, RunState
from airflow_provider_sparkpipe.runtimes import LocalSpark
from airflow_provider_sparkpipe.triggers.spark_pipeline import SparkPipelineTrigger
from tests.provider.strict_loop import first_event


def finished_run(tmp_path: Path, status: str) -> PipelineRun:
    """A run whose process is gone and whose driver wrote its metrics, as a triggerer would find it."""
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"app_name": "a", "status": status, "sequences": {}}))
    # Process group ids are positive pids; the largest possible pid leads no group on this machine.
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    return PipelineRun("local", str(pid_max), {"pgid": pid_max, "metrics_uri": str(metrics), "run_dir": str(tmp_path)})


def test_trigger_round_trips_through_its_serialised_form(tmp_path: Path) -> None:
    runtime = LocalSpark(master="local[1]").to_dict()
    trigger = SparkPipelineTrigger(runtime, finished_run(tmp_path, "succeeded").to_dict(), 0.1)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_sparkpipe.triggers.spark_pipeline.SparkPipelineTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert SparkPipelineTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_trigger_reports_the_final_state_of_a_run(tmp_path: Path) -> None:
    runtime = LocalSpark(master="local[1]").to_dict()
    for status in ("succeeded", "failed"):
        (tmp_path / status).mkdir()
        run = finished_run(tmp_path / status, status)
        assert first_event(SparkPipelineTrigger(runtime, run.to_dict(), 0.1)) == {
            "state": RunState(status).value,
            "run": run.to_dict(),
        }


def test_trigger_reports_a_runtime_it_cannot_build(tmp_path: Path) -> None:
    event = first_event(SparkPipelineTrigger({"runtime": "nope"}, finished_run(tmp_path, "succeeded").to_dict()))
    assert event["state"] == "failed"
    assert event["error"].startswith("runtime: unknown runtime 'nope': one of ") and "local" in event["error"]
