"""The EMR runtimes end to end against moto: submit, success with metrics, failure with the driver's log
tail, re-attach on retry, cancel on kill, deferral and resume, and execution timeout.

The operator runs in this process with a minimal task-instance stand-in; its hook talks to the moto
server over HTTP through the Amazon provider's hooks. The test plays the driver (see ``FakeDriver``).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shlex
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowTaskTimeout, TaskDeferred
from airflow.sdk.execution_time.timeout import timeout
from moto.backends import get_backend

from airflow_provider_sparkpipe.exceptions import SparkPipelineFailed, SparkRuntimeError
from airflow_provider_sparkpipe.hooks.base import hook_for
from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator
from airflow_provider_sparkpipe.runs import PipelineRun, PipelineSubmission
from airflow_provider_sparkpipe.runtimes import runtime_from_dict
from airflow_provider_sparkpipe.triggers.spark_pipeline import SparkPipelineTrigger
from tests.provider.emr.conftest import (
    ACCOUNT,
    CANCELLED_STEPS,
    REGION,
    EmrRuntimes,
    FakeDriver,
    client,
    emr_clusters,
    in_background,
    remote_runs,
)
from tests.provider.strict_loop import first_event

KINDS = ["emr_cluster", "emr_serverless", "emr_on_eks"]
CONFIG = {
    "app_name": "orders_daily",
    "spark_conf": {"spark.sql.shuffle.partitions": 8},
    "sources": {"orders": {"type": "s3", "path": "s3://lake/orders", "format": "parquet"}},
    "sequences": [
        {"name": "daily", "query": "SELECT * FROM orders", "target": {"type": "parquet", "path": "s3://lake/daily"}}
    ],
}


@dataclass
class TaskInstanceStandIn:
    """What the operator reads from ``context["ti"]``, and the XComs it pushes."""

    dag_id: str
    task_id: str = "orders"
    run_id: str = "manual__2024-01-15T00:00:00+00:00"
    map_index: int = -1
    try_number: int = 1
    xcoms: dict[str, Any] = field(default_factory=dict)
    dag_run: Any = field(
        default_factory=lambda: SimpleNamespace(
            conf={}, clear_number=0, logical_date=datetime.datetime(2024, 1, 15, tzinfo=datetime.UTC)
        )
    )

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value

    def get_template_context(self) -> dict[str, Any]:
        return {"dag_run": self.dag_run}


def operator(runtime: Any, **kwargs: Any) -> SparkPipelineOperator:
    return SparkPipelineOperator(task_id="orders", config=CONFIG, runtime=runtime, poll_interval=0.05, **kwargs)


def context(request: pytest.FixtureRequest, try_number: int = 1) -> Any:
    """A context whose task key is unique per test (and the same across the tries of one test)."""
    return {"ti": TaskInstanceStandIn(dag_id=request.node.name.replace("[", "_").rstrip("]"), try_number=try_number)}


@pytest.fixture
def lineage_enabled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """OpenLineage configured (a console transport), as the openlineage provider reads it (uncached
    under pytest)."""
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "console")
    yield


@pytest.mark.parametrize("kind", KINDS)
def test_success_returns_the_driver_metrics(
    kind: str, emr: EmrRuntimes, driver: FakeDriver, request: pytest.FixtureRequest, lineage_enabled: None
) -> None:
    op, ctx = operator(emr.all()[kind]), context(request)
    thread, outcome = in_background(lambda: op.execute(ctx))
    run = driver.wait_for_new_run(kind)
    written = driver.finish(kind, run, "succeeded")
    thread.join(60)
    metrics = outcome["result"]
    assert metrics["sequences"] == written["sequences"]
    assert metrics["runtime"]["kind"] == kind
    assert metrics["runtime"]["job_id"] == run.id
    assert op.application_url == metrics["runtime"]["url"]
    expected_usage = {
        "emr_cluster": {"cluster_seconds": 90.0, "cluster_id": metrics["runtime"].get("job_flow_id")},
        "emr_serverless": {
            "vcpu_hours": 0.4,
            "memory_gb_hours": 1.6,
            "storage_gb_hours": 8.0,
            "billed_vcpu_hours": 0.5,
            "billed_memory_gb_hours": 2.0,
            "billed_storage_gb_hours": 10.0,
            "execution_seconds": 75,
        },
    }
    assert metrics["runtime"].get("usage") == expected_usage.get(kind), metrics["runtime"]
    # The OpenLineage parent job of the task reaches the Spark properties of the run.
    assert f"spark.openlineage.parentJobName={ctx['ti'].dag_id}.orders" in submitted_conf(kind, run)
    assert any(c.startswith("spark.openlineage.parentRunId=") for c in submitted_conf(kind, run))
    assert not any(c.startswith("spark.openlineage.transport") for c in submitted_conf(kind, run))
    # The driver runs on the Python 3.11 that EMR 7.13 installs beside its default 3.9.
    assert python_conf(kind, run) == {key: "/usr/bin/python3.11" for key in PYTHON_KEYS[kind]}
    assert str(op.application_url).startswith("https://console.aws.amazon.com/emr/home?region=eu-west-1#/")
    # Staged config removed once the metrics are read; metrics stay for a re-attaching retry.
    staged = {o.key for o in remote_objects(emr, driver.metrics_uri(kind, run).rsplit("/", 1)[0])}
    assert {k.rsplit("/", 1)[1] for k in staged} == {"metrics.json"}


def submitted_conf(kind: str, run: Any) -> list[str]:
    """The ``key=value`` Spark properties of a step's spark-submit or a job run's request, as EMR received them."""
    if kind == "emr_cluster":
        args = run.args if run.args[0] != "bash" else shlex.split(run.args[2].split("exec ", 1)[1])
        return [args[i + 1] for i, a in enumerate(args) if a == "--conf"]
    overrides = run.configuration_overrides
    (defaults,) = [c for c in overrides["applicationConfiguration"] if c["classification"] == "spark-defaults"]
    return [f"{k}={v}" for k, v in defaults["properties"].items()]


PYTHON_KEYS = {
    "emr_cluster": ("spark.pyspark.python", "spark.pyspark.driver.python"),
    "emr_on_eks": ("spark.pyspark.python", "spark.pyspark.driver.python"),
    "emr_serverless": (
        "spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON",
        "spark.emr-serverless.driverEnv.PYSPARK_PYTHON",
        "spark.executorEnv.PYSPARK_PYTHON",
    ),
}


def python_conf(kind: str, run: Any) -> dict[str, str]:
    """The submitted Spark properties that choose the driver's Python."""
    conf = dict(c.split("=", 1) for c in submitted_conf(kind, run))
    return {k: v for k, v in conf.items() if "PYSPARK" in k or k.startswith("spark.pyspark.")}


def remote_objects(emr: EmrRuntimes, prefix_uri: str) -> list[Any]:
    import boto3

    bucket, _, prefix = prefix_uri.removeprefix("s3://").partition("/")
    s3 = boto3.resource(
        "s3", endpoint_url=emr.endpoint, region_name="eu-west-1", aws_access_key_id="t", aws_secret_access_key="t"
    )
    return list(s3.Bucket(bucket).objects.filter(Prefix=prefix + "/"))


@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_run_reports_the_state_and_the_driver_log_tail(
    kind: str, emr: EmrRuntimes, driver: FakeDriver, request: pytest.FixtureRequest
) -> None:
    op, ctx = operator(emr.all()[kind]), context(request)
    thread, outcome = in_background(lambda: op.execute(ctx))
    run = driver.wait_for_new_run(kind)
    stdout = "\n".join(f"line {i}" for i in range(100)) + "\nTraceback: java.lang.OutOfMemoryError"
    driver.finish(kind, run, "failed", metrics=False, stdout=stdout)
    thread.join(60)
    error = outcome["error"]
    assert isinstance(error, SparkPipelineFailed)
    assert error.metrics is None
    message = str(error)
    assert f"{run.id} FAILED" in message
    assert "java.lang.OutOfMemoryError" in message and "line 99" in message and "line 50" not in message


def test_a_failed_pipeline_pushes_its_metrics(
    emr: EmrRuntimes, driver: FakeDriver, request: pytest.FixtureRequest
) -> None:
    op, ctx = operator(emr.emr_serverless), context(request)
    thread, outcome = in_background(lambda: op.execute(ctx))
    run = driver.wait_for_new_run("emr_serverless")
    driver.finish("emr_serverless", run, "failed")
    thread.join(60)
    assert "sequence 'daily' failed: AnalysisException: boom" in str(outcome["error"])
    assert ctx["ti"].xcoms["metrics"]["status"] == "failed"


@pytest.mark.parametrize("kind", KINDS)
def test_a_retry_reattaches_to_the_running_job_and_a_failed_one_is_submitted_anew(
    kind: str, emr: EmrRuntimes, driver: FakeDriver, request: pytest.FixtureRequest
) -> None:
    runtime = emr.all()[kind]
    before = len(remote_runs(kind))
    # Try 1 submitted, then its worker died: the job keeps running.
    first = hook_for(runtime).submit(submission(request, try_number=1))
    job = driver.wait_for_new_run(kind)
    assert first.run_id == job.id

    op, ctx = operator(runtime), context(request, try_number=2)
    thread, outcome = in_background(lambda: op.execute(ctx))
    driver.finish(kind, job, "succeeded")
    thread.join(60)
    assert outcome["result"]["runtime"]["job_id"] == job.id
    assert len(remote_runs(kind)) == before + 1, "the retry submitted a duplicate"

    # A third try after a succeeded run re-attaches too (its metrics are still there) ...
    assert hook_for(runtime).submit(submission(request, try_number=3)).run_id == job.id
    # ... but after a failed run, a new one starts (run 2 of the task, its own files).
    job.state = {"emr_cluster": "FAILED", "emr_serverless": "FAILED", "emr_on_eks": "FAILED"}[kind]
    again = hook_for(runtime).submit(submission(request, try_number=4))
    assert again.run_id != job.id
    assert again.details["generation"] == 2 and again.details["metrics_uri"].endswith("/2/metrics.json")
    assert len(remote_runs(kind)) == before + 2
    # Given the run the last try kept in the task state store, its state decides, with no listing.
    second = driver.wait_for_new_run(kind)
    assert second.id == again.run_id
    hook = hook_for(runtime)
    calls: list[str] = []
    client = {"emr_cluster": "emr", "emr_serverless": "serverless", "emr_on_eks": "containers"}[kind]
    getattr(hook, client).conn.meta.events.register("before-call.*", lambda model, **_: calls.append(model.name))
    assert hook.submit(submission(request, try_number=5), previous=again).run_id == again.run_id
    second.state = job.state
    third = hook.submit(submission(request, try_number=6), previous=again)
    assert third.details["generation"] == 3 and len(remote_runs(kind)) == before + 3
    assert not [c for c in calls if c in ("ListSteps", "ListJobRuns")], calls  # the runs are not looked up


def submission(request: pytest.FixtureRequest, try_number: int) -> PipelineSubmission:
    ti = context(request)["ti"]
    key = "__".join([ti.dag_id, ti.task_id, ti.run_id.replace(":", "_").replace("+", "_"), str(ti.map_index)])
    return PipelineSubmission(
        document=CONFIG,
        app_name="orders_daily",
        task_key=key,
        try_number=try_number,
        labels={"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id},
    )


@pytest.mark.parametrize("kind", KINDS)
def test_killing_the_task_cancels_the_remote_run(
    kind: str, emr: EmrRuntimes, driver: FakeDriver, request: pytest.FixtureRequest
) -> None:
    op, ctx = operator(emr.all()[kind]), context(request)
    thread, outcome = in_background(lambda: op.execute(ctx))
    job = driver.wait_for_new_run(kind)
    # The job exists in moto a moment before submit() returns it to the operator: wait for the handle.
    deadline = time.monotonic() + 60
    while op._run is None and time.monotonic() < deadline:
        time.sleep(0.01)
    op.on_kill()  # what the task runner does on SIGTERM
    thread.join(60)
    assert job.state == "CANCELLED"
    if kind == "emr_cluster":
        assert job.id in CANCELLED_STEPS
    assert "pipeline run cancelled" in str(outcome["error"])


@pytest.mark.parametrize("kind", KINDS)
def test_deferral_and_resume(kind: str, emr: EmrRuntimes, driver: FakeDriver, request: pytest.FixtureRequest) -> None:
    op, ctx = operator(emr.all()[kind], deferrable=True), context(request)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    assert deferred.value.method_name == "execute_complete"
    trigger = deferred.value.trigger
    _, kwargs = trigger.serialize()
    trigger = SparkPipelineTrigger(**kwargs)  # what the triggerer rebuilds
    job = driver.wait_for_new_run(kind)
    written = driver.finish(kind, job, "succeeded")
    event = first_event(trigger)
    assert event == {"state": "succeeded", "run": kwargs["run"]}
    metrics = operator(emr.all()[kind], deferrable=True).execute_complete(ctx, event)
    assert metrics["sequences"] == written["sequences"] and metrics["runtime"]["job_id"] == job.id


def test_a_trigger_error_keeps_the_job_id_so_the_job_can_be_cancelled(
    emr: EmrRuntimes, driver: FakeDriver, request: pytest.FixtureRequest
) -> None:
    """The official EMR Serverless operator loses the job id on a failed trigger event; this one keeps it."""
    run = hook_for(emr.emr_serverless).submit(submission(request, try_number=1))
    job = driver.wait_for_new_run("emr_serverless")
    broken = {**emr.emr_serverless.to_dict(), "aws_conn_id": "no_such_connection"}
    event = first_event(SparkPipelineTrigger(broken, run.to_dict(), 0.05))
    assert event["state"] == "failed" and event["error"]  # no credentials: polling failed
    assert event["run"]["run_id"] == job.id
    hook = hook_for(runtime_from_dict(emr.emr_serverless.to_dict()))
    hook.cancel(PipelineRun.from_dict(event["run"]))
    assert job.state == "CANCELLED"


@pytest.mark.parametrize("kind", ["emr_cluster", "emr_serverless"])
def test_execution_timeout_cancels_the_remote_run(
    kind: str, emr: EmrRuntimes, driver: FakeDriver, request: pytest.FixtureRequest
) -> None:
    """As Airflow's task runner does: the run is interrupted after execution_timeout, then ``on_kill``."""
    op, ctx = operator(emr.all()[kind]), context(request)

    def time_out_once_submitted() -> None:
        # The operator shows the run's link as soon as the submit returned: the alarm rings then.
        deadline = time.monotonic() + 120  # a readiness wait: without the link the test fails below
        while "sparkpipe_application_url" not in ctx["ti"].xcoms and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGALRM)  # the execution_timeout's alarm

    threading.Thread(target=time_out_once_submitted, daemon=True).start()
    with pytest.raises(AirflowTaskTimeout), timeout(600):
        op.execute(ctx)
    op.on_kill()
    job = remote_runs(kind)[-1]
    assert job.state == "CANCELLED"


def release_runtime(kind: str, emr: EmrRuntimes, release: str, **settings: Any) -> Any:
    """A cluster or application of ``release`` in moto, and the runtime (stating no release) that uses it."""
    name = f"sparkpipe-{release}"
    if kind == "emr_cluster":
        if not any(c.name == name for c in emr_clusters()):
            client(emr.endpoint, "emr").run_job_flow(
                Name=name,
                ReleaseLabel=release,
                Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
                JobFlowRole="EMR_EC2_DefaultRole",
                ServiceRole="EMR_DefaultRole",
            )
        return dataclasses.replace(emr.emr_cluster, job_flow_name=name, **settings)
    # Moto's CreateApplication knows only emr-X.Y.0 labels: the release is set on its record afterwards.
    application_id = client(emr.endpoint, "emr-serverless").create_application(
        name=name, releaseLabel="emr-7.13.0", type="SPARK"
    )["applicationId"]
    get_backend("emr-serverless")[ACCOUNT][REGION].applications[application_id].release_label = release
    return dataclasses.replace(emr.emr_serverless, application_id=application_id, **settings)


@pytest.mark.parametrize("kind", ["emr_cluster", "emr_serverless"])
def test_a_cluster_or_application_before_emr_7_is_refused_before_anything_is_staged(
    kind: str, emr: EmrRuntimes, request: pytest.FixtureRequest
) -> None:
    """The runtime states no release (the cluster / application was created elsewhere): the hook reads
    it from EMR before staging and refuses a release whose Spark the driver does not run on."""
    runtime = release_runtime(kind, emr, "emr-6.15.0")
    runs_before = len(remote_runs(kind))
    ctx = context(request)
    with pytest.raises(SparkRuntimeError) as raised:
        operator(runtime).execute(ctx)
    message = str(raised.value)
    target = "EMR cluster j-" if kind == "emr_cluster" else f"EMR Serverless application {runtime.application_id}"
    assert target in message
    assert "(release emr-6.15.0) runs Spark 3.4, Python 3.7" in message
    assert "the sparkpipe driver needs Spark 3.5.x or 4.x with Python 3.9 to 3.13" in message
    assert "emr-7.13.0 (Spark 3.5, Python 3.9, 3.11)" in message
    assert len(remote_runs(kind)) == runs_before
    assert remote_objects(emr, f"{emr.emr_cluster.staging_uri}/runs/{ctx['ti'].dag_id}") == []
    # The connection form's Test button says the same.
    assert hook_for(runtime).test_connection() == (False, message)


@pytest.mark.parametrize("kind", ["emr_cluster", "emr_serverless"])
def test_the_release_emr_runs_chooses_the_drivers_python(
    kind: str, emr: EmrRuntimes, driver: FakeDriver, request: pytest.FixtureRequest
) -> None:
    """What EMR reports decides, not what the runtime states: an emr-spark-8 cluster / application
    (Spark 4.0; Python 3.11 to 3.13) stated as EMR 7.0 (Python 3.9 only) runs the driver on 3.11, and
    ``python`` picks another of the release's interpreters."""
    for n, (settings, interpreter) in enumerate(
        (({"release_label": "emr-7.0.0"}, "/usr/bin/python3.11"), ({"python": "3.13"}, "/usr/bin/python3.13"))
    ):
        op, ctx = operator(release_runtime(kind, emr, "emr-spark-8.0.0", **settings)), context(request)
        ctx["ti"].dag_id += f"_{n}"  # another task: no re-attaching to the first one's run
        thread, outcome = in_background(lambda op=op, ctx=ctx: op.execute(ctx))
        run = driver.wait_for_new_run(kind)
        driver.finish(kind, run, "succeeded")
        thread.join(60)
        assert outcome["result"]["status"] == "succeeded"
        assert python_conf(kind, run) == dict.fromkeys(PYTHON_KEYS[kind], interpreter)
    # EMR 7 installs no Python 3.13: asking for it there is refused before submitting.
    on_emr7 = release_runtime(kind, emr, "emr-7.13.0", python="3.13")
    with pytest.raises(
        SparkRuntimeError, match=r"python '3.13': EMR .*\(release emr-7.13.0\) installs Python 3.9, 3.11 only"
    ):
        operator(on_emr7).execute(context(request))
