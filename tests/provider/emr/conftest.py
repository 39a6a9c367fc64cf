"""Fixtures for the AWS runtimes: one moto server on 127.0.0.1 that the real boto3 clients of the Amazon
provider's hooks reach over HTTP (through an ``aws`` connection's ``endpoint_url``), plus a fake driver.

Moto does not run Spark: :class:`FakeDriver` stands in for the driver. It writes ``metrics.json`` to the
run's metrics URI in (moto's) S3 and moves the step / job run to its final state through moto's backend,
as EMR would once the driver exits.
"""

from __future__ import annotations

import datetime
import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto.backends import get_backend
from moto.core.responses import ActionResult
from moto.emr.responses import ElasticMapReduceResponse
from moto.emrserverless.models import EMRServerlessBackend
from moto.server import ThreadedMotoServer

from airflow_provider_sparkpipe.runtimes.emr import EmrCluster, EmrOnEks, EmrServerless

ACCOUNT = "123456789012"
REGION = "eu-west-1"
BUCKET = "sparkpipe-staging"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sparkpipe-job"
CONN_ID = "sparkpipe_aws_test"
STAGING = f"s3://{BUCKET}/staging"
LOGS = f"s3://{BUCKET}/logs"

CANCELLED_STEPS: list[str] = []
"""Step ids moto received a CancelSteps request for (moto has no CancelSteps: added below)."""


def _cancel_steps(self: ElasticMapReduceResponse) -> ActionResult:
    """CancelSteps for moto's EMR, which lacks it: pending and running steps become CANCELLED."""
    cluster = self.backend.describe_cluster(self._get_param("ClusterId"))
    wanted = self._get_param("StepIds", [])
    infos = []
    for step in cluster.steps:
        if step.id in wanted:
            CANCELLED_STEPS.append(step.id)
            if step.state in ("PENDING", "RUNNING"):
                step.state = "CANCELLED"
                infos.append({"StepId": step.id, "Status": "SUBMITTED", "Reason": ""})
            else:
                infos.append({"StepId": step.id, "Status": "FAILED", "Reason": f"step is {step.state}"})
    return ActionResult({"CancelStepsInfoList": infos})


def _list_job_runs(self: EMRServerlessBackend, application_id: str, *args: Any, **kwargs: Any) -> list[Any]:
    """Moto answers ResourceNotFound for an application without job runs yet; EMR Serverless lists none."""
    self.get_application(application_id)
    self.job_runs.setdefault(application_id, [])
    return _moto_list_job_runs(self, application_id, *args, **kwargs)


_moto_list_job_runs = EMRServerlessBackend.list_job_runs


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on a free loopback port, and the ``aws`` connection pointing the hooks at it."""
    patch = pytest.MonkeyPatch()
    patch.setattr(ElasticMapReduceResponse, "cancel_steps", _cancel_steps, raising=False)
    patch.setattr(EMRServerlessBackend, "list_job_runs", _list_job_runs)
    # Moto's EMR Serverless job runs are born SUCCESS; real ones start SUBMITTED and the driver decides.
    patch.setattr("moto.emrserverless.models.JOB_STATUS", "SUBMITTED")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    extra = {"endpoint_url": endpoint, "region_name": REGION, "config_kwargs": {"s3": {"addressing_style": "path"}}}
    patch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}),
    )
    try:
        yield endpoint
    finally:
        server.stop()
        patch.undo()


def client(endpoint: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=boto3.session.Config(s3={"addressing_style": "path"}),
    )


@dataclass(frozen=True)
class EmrRuntimes:
    """One EMR cluster, one EMR Serverless application and one EMR on EKS virtual cluster in moto."""

    endpoint: str
    emr_cluster: EmrCluster
    emr_serverless: EmrServerless
    emr_on_eks: EmrOnEks

    def all(self) -> dict[str, Any]:
        return {r.kind: r for r in (self.emr_cluster, self.emr_serverless, self.emr_on_eks)}


@pytest.fixture(scope="session")
def emr(moto_endpoint: str) -> EmrRuntimes:
    s3 = client(moto_endpoint, "s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    client(moto_endpoint, "emr").run_job_flow(
        Name="sparkpipe-test",
        ReleaseLabel="emr-7.13.0",
        LogUri=f"s3n://{BUCKET}/emr-logs/",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]
    application_id = client(moto_endpoint, "emr-serverless").create_application(
        name="sparkpipe-test", releaseLabel="emr-7.13.0", type="SPARK"
    )["applicationId"]
    virtual_cluster_id = client(moto_endpoint, "emr-containers").create_virtual_cluster(
        name="sparkpipe-test",
        containerProvider={"id": "eks-test", "type": "EKS", "info": {"eksInfo": {"namespace": "spark"}}},
    )["id"]
    return EmrRuntimes(
        endpoint=moto_endpoint,
        emr_cluster=EmrCluster(job_flow_name="sparkpipe-test", staging_uri=STAGING, aws_conn_id=CONN_ID),
        emr_serverless=EmrServerless(
            application_id=application_id,
            execution_role_arn=ROLE,
            staging_uri=STAGING,
            aws_conn_id=CONN_ID,
            log_uri=LOGS,
        ),
        emr_on_eks=EmrOnEks(
            virtual_cluster_id=virtual_cluster_id,
            execution_role_arn=ROLE,
            release_label="emr-7.13.0-latest",
            staging_uri=STAGING,
            aws_conn_id=CONN_ID,
            log_uri=LOGS,
        ),
    )


def remote_runs(kind: str) -> list[Any]:
    """The steps / job runs moto holds for one runtime, oldest first."""
    if kind == "emr_cluster":
        return [s for c in emr_clusters() for s in c.steps]
    if kind == "emr_serverless":
        return [j for jobs in get_backend("emr-serverless")[ACCOUNT][REGION].job_runs.values() for j in jobs]
    return list(get_backend("emr-containers")[ACCOUNT][REGION].job_runs.values())


def emr_clusters() -> list[Any]:
    # Moto's EMR reads the region from the host name, which an endpoint on 127.0.0.1 does not carry.
    return [c for region in get_backend("emr")[ACCOUNT].values() for c in region.clusters.values()]


FINAL_STATES = {
    "emr_cluster": {"succeeded": "COMPLETED", "failed": "FAILED"},
    "emr_serverless": {"succeeded": "SUCCESS", "failed": "FAILED"},
    "emr_on_eks": {"succeeded": "COMPLETED", "failed": "FAILED"},
}
RUNNING_STATE = {"emr_cluster": "RUNNING", "emr_serverless": "RUNNING", "emr_on_eks": "RUNNING"}


@dataclass
class FakeDriver:
    """Acts as the Spark driver of runs submitted to moto: writes their metrics and ends them."""

    endpoint: str
    seen: set[str] = field(default_factory=set)

    def wait_for_new_run(self, kind: str, timeout_s: float = 60) -> Any:
        """The next step / job run moto receives (a readiness wait, not a timed assertion)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for run in remote_runs(kind):
                if run.id not in self.seen:
                    self.seen.add(run.id)
                    run.state = RUNNING_STATE[kind]
                    return run
            time.sleep(0.02)
        raise AssertionError(f"no new {kind} run reached moto")

    def metrics_uri(self, kind: str, run: Any) -> str:
        """The driver's ``--metrics-out`` argument, read from the submitted step / job driver."""
        if kind == "emr_cluster":
            args = run.args if run.args[0] != "bash" else run.args[2].split()
        elif kind == "emr_serverless":
            args = run.job_driver["sparkSubmit"]["entryPointArguments"]
        else:
            args = run.job_driver["sparkSubmitJobDriver"]["entryPointArguments"]
        return str(args[args.index("--metrics-out") + 1])

    def finish(self, kind: str, run: Any, status: str, *, metrics: bool = True, stdout: str | None = None) -> dict:
        """Write the metrics (status ``succeeded``/``failed``) and the driver log, then end the run."""
        document = {
            "app_name": "orders_daily",
            "status": status,
            "duration_s": 1.5,
            "spark_app_id": f"application_{run.id}",
            "sequences": {
                "daily": {
                    "status": status,
                    "rows_written": 42 if status == "succeeded" else None,
                    "duration_s": 1.0,
                    "target": {"type": "parquet", "uri": f"s3://{BUCKET}/out/daily"},
                    "error": None if status == "succeeded" else "AnalysisException: boom",
                }
            },
        }
        s3 = client(self.endpoint, "s3")
        if metrics:
            bucket, _, key = self.metrics_uri(kind, run).removeprefix("s3://").partition("/")
            s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(document).encode())
        if stdout is not None:
            bucket, _, key = driver_log(kind, run).removeprefix("s3://").partition("/")
            s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(stdout.encode()))
        run.state = FINAL_STATES[kind][status]
        if kind == "emr_cluster":
            run.start_date_time = run.start_date_time or datetime.datetime.now(datetime.UTC)
            run.end_date_time = run.start_date_time + datetime.timedelta(seconds=90)
        elif kind == "emr_serverless":  # what EMR Serverless reports of a finished job run
            run.total_execution_duration_seconds = 75
            run.billed_resource_utilization = {"vCPUHour": 0.5, "memoryGBHour": 2.0, "storageGBHour": 10.0}
            run.total_resource_utilization = {"vCPUHour": 0.4, "memoryGBHour": 1.6, "storageGBHour": 8.0}
        return document


def driver_log(kind: str, run: Any) -> str:
    """Where EMR would put the driver's stdout for this run (see the hooks' driver_log_uri)."""
    if kind == "emr_cluster":
        cluster = next(c for c in emr_clusters() if run in c.steps)
        return f"s3://{BUCKET}/emr-logs/{cluster.id}/steps/{run.id}/stderr.gz"
    if kind == "emr_serverless":
        return f"{LOGS}/applications/{run.application_id}/jobs/{run.id}/SPARK_DRIVER/stdout.gz"
    return f"{LOGS}/{run.virtual_cluster_id}/jobs/{run.id}/containers/spark-{run.id}/spark-{run.id}-driver/stdout.gz"


@pytest.fixture
def driver(emr: EmrRuntimes) -> FakeDriver:
    return FakeDriver(emr.endpoint, {r.id for kind in emr.all() for r in remote_runs(kind)})


def in_background(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``fn`` in a thread; the dict receives its ``result`` or ``error``."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = fn()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome
