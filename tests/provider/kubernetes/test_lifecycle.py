"""SparkKubernetes runs through the real kubernetes clients against the fake API server: submit, follow,
fail, re-attach, replace, cancel, defer and resume, clean up."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sparkpipe.exceptions import SparkPipelineFailed
from airflow_provider_sparkpipe.hooks.base import hook_for
from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator
from airflow_provider_sparkpipe.runs import PipelineRun, RunState
from airflow_provider_sparkpipe.triggers.spark_pipeline import SparkPipelineTrigger
from tests.provider.kubernetes.conftest import (
    NAMESPACE,
    pipeline_document,
    poll_until_running,
    runtime,
    submission,
)
from tests.provider.kubernetes.fake_apiserver import FakeKubernetes
from tests.provider.strict_loop import first_event, kill

APPS = "/sparkapplications"


def test_a_run_is_followed_to_completion_and_its_metrics_read_from_the_driver_log(apiserver: FakeKubernetes) -> None:
    hook = hook_for(runtime())
    run = hook.submit(submission())
    assert run.runtime_kind == "kubernetes" and run.details["attached"] is False
    config_map = apiserver.config_maps[(NAMESPACE, f"{run.run_id}-config")]
    assert json.loads(config_map["data"]["config.json"]) == pipeline_document()
    assert hook.wait(run, poll_interval=0.01) == RunState.SUCCEEDED
    # The driver's log was followed while it ran, then read to its end once.
    assert len(apiserver.calls("GET", "/log")) == 2
    assert [q.lower() for r in apiserver.calls("GET", "/log") for q in r.query.get("follow", [])] == ["true"]
    metrics = hook.fetch_metrics(run)
    assert metrics is not None
    assert metrics["status"] == "succeeded"
    assert {n: s["rows_written"] for n, s in metrics["sequences"].items()} == {"daily_revenue": 10, "to_postgres": 20}
    info = hook.runtime_info(run)
    assert info["application"] == run.run_id and info["driver_pod"] == f"{run.run_id}-driver"
    hook.cleanup(run, RunState.SUCCEEDED)
    assert (NAMESPACE, run.run_id) in apiserver.apps  # kept: delete_on_success is off


def test_a_failed_application_reports_its_error_and_the_driver_log_tail(apiserver: FakeKubernetes) -> None:
    apiserver.outcomes["shop_summary"] = "FAILED"
    hook = hook_for(runtime())
    run = hook.submit(submission())
    assert hook.wait(run, poll_interval=0.01) == RunState.FAILED
    assert hook.fetch_metrics(run)["sequences"]["to_postgres"]["status"] == "failed"  # type: ignore[index]
    failure = hook.describe_failure(run) or ""
    assert f"SparkApplication {NAMESPACE}/{run.run_id} FAILED: driver container failed with ExitCode: 1" in failure
    assert failure.endswith("sparkpipe: sequence daily_revenue: 10 rows\nsparkpipe: sequence to_postgres: failed")


def test_a_retry_re_attaches_to_the_running_application(apiserver: FakeKubernetes) -> None:
    apiserver.outcomes["shop_summary"] = None  # runs until deleted
    first = hook_for(runtime()).submit(submission(try_number=1))
    assert hook_for(runtime()).poll(first) == RunState.PENDING
    retry_hook = hook_for(runtime())
    retry = retry_hook.submit(submission(try_number=2))
    assert (retry.run_id, retry.details["uid"], retry.details["attached"]) == (first.run_id, first.details["uid"], True)
    assert len(apiserver.calls("POST", APPS)) == 1
    assert retry_hook.poll(retry) == RunState.RUNNING


def test_a_retry_replaces_a_failed_application(apiserver: FakeKubernetes) -> None:
    apiserver.outcomes["shop_summary"] = "FAILED"
    hook = hook_for(runtime())
    first = hook.submit(submission(try_number=1))
    assert hook.wait(first, poll_interval=0.01) == RunState.FAILED
    apiserver.outcomes["shop_summary"] = "COMPLETED"
    retry_hook = hook_for(runtime())
    retry = retry_hook.submit(submission(try_number=2))
    assert retry.run_id == first.run_id and retry.details["uid"] != first.details["uid"]
    deletes = apiserver.calls("DELETE", APPS)
    assert [d.body["preconditions"] for d in deletes] == [{"uid": first.details["uid"]}]
    assert len(apiserver.calls("POST", APPS)) == 2
    assert retry_hook.wait(retry, poll_interval=0.01) == RunState.SUCCEEDED
    assert retry_hook.fetch_metrics(retry)["status"] == "succeeded"  # type: ignore[index]


def test_a_retry_with_another_config_replaces_the_application(apiserver: FakeKubernetes) -> None:
    apiserver.outcomes["shop_summary"] = None
    first = hook_for(runtime()).submit(submission(try_number=1))
    retry = hook_for(runtime()).submit(submission(try_number=2, document=pipeline_document("changed")))
    assert retry.details["uid"] != first.details["uid"] and retry.details["attached"] is False
    config = json.loads(apiserver.config_maps[(NAMESPACE, f"{retry.run_id}-config")]["data"]["config.json"])
    assert config["app_name"] == "changed"


def test_cancel_deletes_the_application_not_just_the_pod(apiserver: FakeKubernetes) -> None:
    apiserver.outcomes["shop_summary"] = None
    hook = hook_for(runtime())
    run = hook.submit(submission())
    poll_until_running(hook, run)
    assert (NAMESPACE, f"{run.run_id}-driver") in apiserver.pods
    hook.cancel(run)
    assert (NAMESPACE, run.run_id) not in apiserver.apps
    assert apiserver.config_maps == {} and apiserver.pods == {}
    assert hook.poll(run) == RunState.CANCELLED
    assert "was deleted (the task was killed)" in (hook.describe_failure(run) or "")
    hook.cancel(run)  # cancelling again is harmless


def test_deferral_polls_through_the_async_client_and_the_operator_resumes(apiserver: FakeKubernetes) -> None:
    rt = runtime()
    run = hook_for(rt).submit(submission())
    trigger = SparkPipelineTrigger(rt.to_dict(), run.to_dict(), poll_interval=0.01)
    event = first_event(trigger)
    assert event == {"state": "succeeded", "run": run.to_dict()}
    # submit looked for an earlier attempt, then the trigger saw SUBMITTED, RUNNING, COMPLETED.
    assert len(apiserver.calls("GET", f"{APPS}/{run.run_id}")) == 1 + 3
    # A new worker resumes: a fresh hook reads the driver's log for the metrics.
    operator = SparkPipelineOperator(task_id="shop_summary", config=pipeline_document(), runtime=rt)
    metrics = operator.execute_complete({}, event)
    assert metrics["status"] == "succeeded"
    assert metrics["runtime"]["kind"] == "kubernetes" and metrics["runtime"]["application"] == run.run_id


def test_resuming_after_a_failed_run_fails_the_task_with_the_driver_log(apiserver: FakeKubernetes) -> None:
    apiserver.outcomes["shop_summary"] = "FAILED"
    rt = runtime()
    run = hook_for(rt).submit(submission())
    event = first_event(SparkPipelineTrigger(rt.to_dict(), run.to_dict(), poll_interval=0.01))
    assert event["state"] == "failed"

    class TaskInstance:
        pushed: dict[str, Any] = {}

        def xcom_push(self, key: str, value: Any) -> None:
            self.pushed[key] = value

    ti = TaskInstance()
    operator = SparkPipelineOperator(task_id="shop_summary", config=pipeline_document(), runtime=rt)
    with pytest.raises(SparkPipelineFailed, match="sequence 'to_postgres' failed: AnalysisException"):
        operator.execute_complete({"ti": ti}, event)  # type: ignore[typeddict-item]
    assert ti.pushed["metrics"]["status"] == "failed"


def test_a_user_kill_of_the_deferred_task_deletes_the_application(apiserver: FakeKubernetes) -> None:
    apiserver.outcomes["shop_summary"] = None
    rt = runtime()
    run = hook_for(rt).submit(submission())
    trigger = SparkPipelineTrigger(rt.to_dict(), run.to_dict(), poll_interval=0.01, cancel_on_kill=True)
    _, kwargs = trigger.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs
    kill(SparkPipelineTrigger(**kwargs))  # what the triggerer does on a user's kill
    assert apiserver.apps == {} and apiserver.config_maps == {}
    assert [d.body["preconditions"] for d in apiserver.calls("DELETE", APPS)] == [{"uid": run.details["uid"]}]
    assert first_event(trigger)["state"] == "cancelled"


def test_the_trigger_deletes_the_application_at_the_tasks_deadline(apiserver: FakeKubernetes) -> None:
    apiserver.outcomes["shop_summary"] = None
    rt = runtime()
    run = hook_for(rt).submit(submission())
    event = first_event(SparkPipelineTrigger(rt.to_dict(), run.to_dict(), poll_interval=0.01, deadline=0.0))
    assert event == {"state": "cancelled", "run": run.to_dict(), "timed_out": True}
    assert apiserver.apps == {} and apiserver.config_maps == {}


def test_delete_on_success_removes_a_successful_application(apiserver: FakeKubernetes) -> None:
    hook = hook_for(runtime(delete_on_success=True))
    run = hook.submit(submission())
    assert hook.wait(run, poll_interval=0.01) == RunState.SUCCEEDED
    assert hook.fetch_metrics(run) is not None
    hook.cleanup(run, RunState.SUCCEEDED)
    assert apiserver.apps == {} and apiserver.config_maps == {}


def test_metrics_are_read_from_the_staging_uri_when_given(apiserver: FakeKubernetes, tmp_path: Path) -> None:
    hook = hook_for(runtime(staging_uri=tmp_path.as_uri()))
    run = hook.submit(submission(try_number=2))
    assert (
        run.details["metrics_uri"]
        == f"{tmp_path.as_uri()}/runs/{run.run_id}/{submission(try_number=2).run_key}/metrics.json"
    )
    assert hook.wait(run, poll_interval=0.01) == RunState.SUCCEEDED
    assert hook.fetch_metrics(run)["written_to"] == "staging"  # type: ignore[index]


def test_the_connection_check_reads_sparkapplications(apiserver: FakeKubernetes) -> None:
    assert hook_for(runtime()).test_connection() == (
        True,
        f"{runtime().describe()}: SparkApplications readable in namespace '{NAMESPACE}'",
    )
    assert apiserver.calls("GET", APPS)[0].query["limit"] == ["1"]


def test_a_run_handle_survives_serialisation(apiserver: FakeKubernetes) -> None:
    run = hook_for(runtime()).submit(submission())
    again = PipelineRun.from_dict(json.loads(json.dumps(run.to_dict())))
    assert hook_for(runtime()).wait(again, poll_interval=0.01) == RunState.SUCCEEDED


def test_every_try_gives_the_driver_the_tasks_run_key_and_commit_log_in_staging(
    apiserver: FakeKubernetes, tmp_path: Path
) -> None:
    """A failed application is replaced by the retry's; both drivers get the task instance's run key and its
    commit log in the staging area, ``runs/<application name>/commits`` beside the tries' folders."""
    apiserver.outcomes["shop_summary"] = "FAILED"
    key = "sparkpipe_kubernetes.shop_summary-0123456789abcdef0123"
    first = hook_for(runtime(staging_uri=tmp_path.as_uri())).submit(
        dataclasses.replace(submission(try_number=1), resume_key=key)
    )
    assert hook_for(runtime()).wait(first, poll_interval=0.01) == RunState.FAILED
    apiserver.outcomes["shop_summary"] = "COMPLETED"
    retry = hook_for(runtime(staging_uri=tmp_path.as_uri())).submit(
        dataclasses.replace(submission(try_number=2), resume_key=key)
    )
    assert retry.run_id == first.run_id
    expected = ["--run-key", key, "--state-dir", f"{tmp_path.as_uri()}/runs/{first.run_id}/commits"]
    posted = [call.body["spec"]["arguments"] for call in apiserver.calls("POST", APPS)]
    assert [arguments[-4:] for arguments in posted] == [expected, expected]
    # Without staging there is no place kept across tries: no run key.
    apiserver.outcomes["shop_summary"] = None
    hook_for(runtime()).submit(dataclasses.replace(submission(task_id="other"), resume_key=key))
    assert "--run-key" not in apiserver.calls("POST", APPS)[-1].body["spec"]["arguments"]
