"""A run's life through the real google-cloud-dataproc client (gRPC over TLS) against the fake
Dataproc, and GCSHook against the GCS emulator: submit, poll, metrics, failure, re-attach, cancel,
and the trigger's events."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from airflow_provider_sparkpipe.exceptions import SparkRuntimeError
from airflow_provider_sparkpipe.hooks.base import hook_for
from airflow_provider_sparkpipe.runs import PipelineRun, PipelineSubmission, RunState
from airflow_provider_sparkpipe.runtimes import runtime_from_dict
from airflow_provider_sparkpipe.triggers.spark_pipeline import SparkPipelineTrigger
from tests.provider.dataproc.conftest import STAGING_BUCKET, DataprocFakes
from tests.provider.strict_loop import first_event

KINDS = ["job", "batch"]


def submission(app_name: str, try_number: int = 1, task: str = "pipeline") -> PipelineSubmission:
    document = {
        "app_name": app_name,
        "sequences": [
            {"name": "first", "query": "SELECT 1 AS one", "target": {"type": "parquet", "path": "gs://out/first"}},
            {"name": "second", "query": "SELECT * FROM first", "target": {"type": "parquet", "path": "gs://out/2"}},
        ],
    }
    labels = {"dag_id": "lifecycle", "task_id": task, "run_id": "manual__2024-01-15T00:00:00+00:00"}
    return PipelineSubmission(document, app_name, f"lifecycle__{task}__manual__2024-01-15__-1", try_number, labels)


def runtime(fakes: DataprocFakes, kind: str) -> Any:
    return fakes.cluster() if kind == "job" else fakes.serverless()


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_is_staged_submitted_and_followed_to_its_metrics(fakes: DataprocFakes, kind: str) -> None:
    hook = hook_for(runtime(fakes, kind))
    run = hook.submit(submission("orders_daily"))
    assert hook.poll(run) == RunState.RUNNING
    assert hook.wait(run, poll_interval=0.01) == RunState.SUCCEEDED
    metrics = hook.fetch_metrics(run)
    assert metrics is not None and metrics["status"] == "succeeded"
    assert {n: s["rows_written"] for n, s in metrics["sequences"].items()} == {"first": 10, "second": 20}
    info = hook.runtime_info(run)
    assert info[f"{kind}_id"] == run.run_id and info["url"].startswith("https://console.cloud.google.com/dataproc/")

    (remote,) = fakes.dataproc.runs_of(kind)
    assert remote.remote_id == run.run_id and remote.config["app_name"] == "orders_daily"
    staged = fakes.list("sparkpipe/")
    assert f"sparkpipe/runs/{run.run_id}/config.json" in staged
    assert f"sparkpipe/runs/{run.run_id}/metrics.json" in staged
    assert len([n for n in staged if n.startswith("sparkpipe/bundles/") and n.endswith(".zip")]) == 1


def test_the_driver_bundle_is_uploaded_once_per_version(fakes: DataprocFakes) -> None:
    hook = hook_for(fakes.cluster())
    first = hook.staging.stage_bundle()
    uploads_before = [r for r in fakes.list("sparkpipe/bundles/")]
    assert hook.staging.stage_bundle() == first
    assert fakes.list("sparkpipe/bundles/") == uploads_before
    assert fakes.read(first.main_uri).startswith(b'"""spark-submit entry point of sparkpipe')


@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_run_reports_its_state_and_the_driver_output_tail(fakes: DataprocFakes, kind: str) -> None:
    hook = hook_for(runtime(fakes, kind))
    run = hook.submit(submission("crash_pipeline"))
    assert hook.wait(run, poll_interval=0.01) == RunState.FAILED
    assert hook.fetch_metrics(run) is None
    detail = hook.describe_failure(run)
    assert detail is not None
    assert "exited with code 1" in detail
    assert "RuntimeError: the fake driver crashed" in detail


@pytest.mark.parametrize("kind", KINDS)
def test_a_retry_reattaches_to_a_running_or_succeeded_run(fakes: DataprocFakes, kind: str) -> None:
    hook = hook_for(runtime(fakes, kind))
    first = hook.submit(submission("orders_daily", try_number=1))
    # The worker is lost while the run goes on; the retry, in a new worker, finds it.
    retry = hook_for(runtime(fakes, kind)).submit(submission("orders_daily", try_number=2))
    assert retry.run_id == first.run_id
    assert hook.wait(retry, poll_interval=0.01) == RunState.SUCCEEDED
    # A retry after success (the worker died before recording it) does not run the pipeline again.
    again = hook_for(runtime(fakes, kind)).submit(submission("orders_daily", try_number=3))
    assert again.run_id == first.run_id
    assert len(fakes.dataproc.runs_of(kind)) == 1
    assert hook.fetch_metrics(again) is not None


@pytest.mark.parametrize("kind", KINDS)
def test_a_retry_finds_the_last_run_with_one_request(fakes: DataprocFakes, kind: str) -> None:
    """Given the run the last try stored (the task state store), one state read; without it, one list by label."""
    first = hook_for(runtime(fakes, kind)).submit(submission("fail_pipeline", try_number=1))
    assert hook_for(runtime(fakes, kind)).wait(first, poll_interval=0.01) == RunState.FAILED
    for attempt, previous in ((2, first), (3, None)):
        fakes.dataproc.requests.clear()
        run = hook_for(runtime(fakes, kind)).submit(submission("fail_pipeline", try_number=attempt), previous=previous)
        assert run.run_id.endswith(f"-{attempt}")
        names = [name for name, _ in fakes.dataproc.requests]
        reads = {"get_job", "get_batch", "list_jobs", "list_batches"}
        expected = f"get_{kind}" if previous is not None else {"job": "list_jobs", "batch": "list_batches"}[kind]
        assert [n for n in names if n in reads] == [expected], names
        assert hook_for(runtime(fakes, kind)).wait(run, poll_interval=0.01) == RunState.FAILED
    # A stored run of another task (a cleared task's key changed) is no hint: the lookup decides.
    other = hook_for(runtime(fakes, kind)).submit(submission("orders_daily", task="other"), previous=first)
    assert other.run_id.rsplit("-", 1)[0] != first.run_id.rsplit("-", 1)[0]


@pytest.mark.parametrize("kind", KINDS)
def test_a_retry_after_a_failed_run_submits_a_new_one(fakes: DataprocFakes, kind: str) -> None:
    hook = hook_for(runtime(fakes, kind))
    first = hook.submit(submission("fail_pipeline", try_number=1))
    assert hook.wait(first, poll_interval=0.01) == RunState.FAILED
    failed_metrics = hook.fetch_metrics(first)
    assert failed_metrics is not None and failed_metrics["sequences"]["second"]["error"] == "AnalysisException: boom"
    second = hook.submit(submission("fail_pipeline", try_number=2))
    assert second.run_id != first.run_id
    assert second.run_id.rsplit("-", 1) == [first.run_id.rsplit("-", 1)[0], "2"]
    assert [r.remote_id for r in fakes.dataproc.runs_of(kind)] == [first.run_id, second.run_id]
    # Each attempt has its own metrics: the new run never reads the old one's.
    assert second.details["metrics_uri"] != first.details["metrics_uri"]


@pytest.mark.parametrize("kind", KINDS)
def test_cancel_stops_a_running_run_and_leaves_a_finished_one(fakes: DataprocFakes, kind: str) -> None:
    hook = hook_for(runtime(fakes, kind))
    run = hook.submit(submission("slow_pipeline"))
    assert hook.poll(run) == RunState.RUNNING
    hook.cancel(run)
    assert hook.wait(run, poll_interval=0.01) == RunState.CANCELLED
    hook.cancel(run)  # finished: nothing to do, no error
    cancels = [name for name, _ in fakes.dataproc.requests if name in ("cancel_job", "cancel_operation")]
    assert len(cancels) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_the_trigger_polls_asynchronously_until_the_run_ends(fakes: DataprocFakes, kind: str) -> None:
    rt = runtime(fakes, kind)
    run = hook_for(rt).submit(submission("orders_deferred"))
    trigger = SparkPipelineTrigger(rt.to_dict(), run.to_dict(), poll_interval=0.01)
    assert first_event(trigger) == {"state": "succeeded", "run": run.to_dict()}
    assert fakes.dataproc.runs_of(kind)[0].polls >= 3


@pytest.mark.parametrize("kind", KINDS)
def test_the_trigger_cancels_the_run_at_the_task_deadline(fakes: DataprocFakes, kind: str) -> None:
    rt = runtime(fakes, kind)
    run = hook_for(rt).submit(submission("slow_pipeline"))
    trigger = SparkPipelineTrigger(rt.to_dict(), run.to_dict(), poll_interval=0.01, deadline=time.time())
    event = first_event(trigger)
    assert event == {"state": "cancelled", "run": run.to_dict(), "timed_out": True}
    assert hook_for(rt).wait(run, poll_interval=0.01) == RunState.CANCELLED


@pytest.mark.parametrize("kind", KINDS)
def test_killing_the_deferred_task_cancels_the_run(fakes: DataprocFakes, kind: str) -> None:
    rt = runtime(fakes, kind)
    run = hook_for(rt).submit(submission("slow_pipeline"))
    trigger = SparkPipelineTrigger(rt.to_dict(), run.to_dict(), poll_interval=0.01)
    asyncio.run(trigger.on_kill())
    assert hook_for(rt).wait(run, poll_interval=0.01) == RunState.CANCELLED


def test_the_trigger_round_trips_a_dataproc_runtime_through_its_serialised_form(fakes: DataprocFakes) -> None:
    for rt in (fakes.cluster(), fakes.serverless(network_tags=["a"], impersonation_chain=["x@y", "z@y"])):
        run = PipelineRun(rt.kind, "sp-x-1", {"project_id": "p"})
        trigger = SparkPipelineTrigger(rt.to_dict(), run.to_dict(), 5.0, deadline=1.5e9)
        classpath, kwargs = trigger.serialize()
        assert json.loads(json.dumps(kwargs)) == kwargs
        assert SparkPipelineTrigger(**kwargs).serialize() == (classpath, kwargs)
        assert runtime_from_dict(kwargs["runtime"]) == rt


def test_metrics_fall_back_to_the_driver_output_marker(fakes: DataprocFakes) -> None:
    hook = hook_for(fakes.cluster())
    run = hook.submit(submission("orders_daily"))
    assert hook.wait(run, poll_interval=0.01) == RunState.SUCCEEDED
    hook.gcs.delete(STAGING_BUCKET, f"sparkpipe/runs/{run.run_id}/metrics.json")
    metrics = hook.fetch_metrics(run)
    assert metrics is not None and metrics["app_name"] == "orders_daily"


def test_a_cluster_on_an_image_before_2_2_is_refused_before_anything_is_staged(fakes: DataprocFakes) -> None:
    """The cluster was created elsewhere: its image is read (GetCluster) before each submission, and one
    whose Spark is older than 3.5 is refused; the connection's Test button says the same."""
    fakes.dataproc.clusters["legacy-cluster"] = "2.1.80-debian11"
    legacy = fakes.cluster(cluster_name="legacy-cluster")
    hook = hook_for(legacy)
    with pytest.raises(SparkRuntimeError) as raised:
        hook.submit(submission("orders_daily", task="legacy"))
    message = str(raised.value)
    assert message.startswith(
        "Dataproc cluster 'legacy-cluster' (image 2.1.80-debian11) runs Spark 3.3, Python 3.10; "
        "the sparkpipe driver needs Spark 3.5.x or 4.x with Python 3.9 to 3.13: use a supported Dataproc image"
    )
    assert "2.3 (Spark 3.5, Python 3.11)" in message and "3.0 (Spark 4.0, Python 3.11)" in message
    assert fakes.dataproc.runs_of("job") == []
    assert not [n for n in fakes.list("sparkpipe/runs/") if "legacy" in n]
    assert hook_for(legacy).test_connection() == (False, message)
    # Stating a supported image does not make the cluster's own one pass.
    with pytest.raises(SparkRuntimeError, match=r"image 2\.1\.80-debian11"):
        hook_for(fakes.cluster(cluster_name="legacy-cluster", image_version="2.3")).submit(submission("o", task="l2"))


def test_a_cluster_image_newer_than_sparkpipe_knows_is_accepted(fakes: DataprocFakes) -> None:
    fakes.dataproc.clusters["future-cluster"] = "3.4.1-debian13"
    hook = hook_for(fakes.cluster(cluster_name="future-cluster"))
    run = hook.submit(submission("orders_daily", task="future"))
    assert hook.wait(run, poll_interval=0.01) == RunState.SUCCEEDED
    names = [name for name, _ in fakes.dataproc.requests]
    assert names.index("get_cluster") < names.index("submit_job")
