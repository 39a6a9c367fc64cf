"""SparkPipelineOperator on the Dataproc runtimes, run for real with ``dag.test()`` against the fake
Dataproc and the GCS emulator: metrics in XCom, failures with the driver's last lines in the log,
deferral through the trigger, and ``execution_timeout`` cancelling the job."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import pytest

from tests.provider.dataproc.conftest import DATAPROC_DAGS, DataprocFakes
from tests.provider.support import DagRunner, DagRunResult

DAG_IDS = [
    "sparkpipe_dataproc_succeeds",
    "sparkpipe_dataproc_fails",
    "sparkpipe_dataproc_crashes",
    "sparkpipe_dataproc_deferred",
    "sparkpipe_dataproc_times_out",
    "sparkpipe_dataproc_retried",
    "sparkpipe_serverless_deferred",
    "sparkpipe_serverless_fails",
    "sparkpipe_serverless_connection",
]
WAREHOUSE_SECRET = "projects/sparkpipe-test/secrets/warehouse-password"
WAREHOUSE_CONNECTION = (
    "postgres://reporter:not-this-one@wh.internal:5432/warehouse?password_secret=gcp%3A"
    + WAREHOUSE_SECRET.replace("/", "%2F")
)


@pytest.fixture(scope="module")
def dag_runs(
    dag_runner: DagRunner, dataproc_fakes: DataprocFakes, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, DagRunResult]:
    """All the DAGs, run once in one Airflow process (its start-up is the slow part)."""
    dataproc_fakes.dataproc.reset()
    bundles = json.loads(os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    bundles.append(
        {
            "name": "dataproc-test-dags",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(DATAPROC_DAGS)},
        }
    )
    env = {
        # OpenLineage on (a file transport): the runs hand their jobs and batches the parent job.
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(tmp_path_factory.mktemp("dataproc-lineage") / "events.jsonl")}
        ),
        "SPARKPIPE_TEST_DATAPROC_ENDPOINT": dataproc_fakes.endpoint,
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
        "AIRFLOW_CONN_WAREHOUSE_PG": WAREHOUSE_CONNECTION,
    }
    runs: list[Mapping[str, Any]] = [
        {"dag_folder": str(DATAPROC_DAGS), "dag_id": d, "logical_date": "2024-01-15"} for d in DAG_IDS
    ]
    return dag_runner.run(runs, env)


def jobs_of(fakes: DataprocFakes, kind: str, app_name: str) -> list:
    return [r for r in fakes.dataproc.runs_of(kind) if r.config["app_name"] == app_name]


def test_a_cluster_job_returns_its_metrics(dag_runs: dict[str, DagRunResult], dataproc_fakes: DataprocFakes) -> None:
    result = dag_runs["sparkpipe_dataproc_succeeds"]
    assert result.state == "success", result.log[-5000:]
    metrics = result.xcom("pipeline")
    assert metrics["status"] == "succeeded"
    assert {n: s["rows_written"] for n, s in metrics["sequences"].items()} == {"first": 10, "second": 20}
    (job,) = jobs_of(dataproc_fakes, "job", "orders_daily")
    assert metrics["runtime"]["kind"] == "dataproc_cluster"
    assert metrics["runtime"]["job_id"] == job.remote_id
    labels = dict(job.message.labels)
    assert labels["airflow-dag-id"] == "sparkpipe_dataproc_succeeds"
    assert labels["airflow-task-id"] == "pipeline"
    assert re.fullmatch(r"manual__[0-9t_-]+", labels["airflow-run-id"]), labels
    properties = dict(job.message.pyspark_job.properties)
    lineage = {k: properties.pop(k) for k in list(properties) if k.startswith("spark.openlineage.")}
    assert properties == {"spark.sql.shuffle.partitions": "8", "spark.executor.memory": "2g"}
    assert lineage["spark.openlineage.parentJobName"] == "sparkpipe_dataproc_succeeds.pipeline"
    assert lineage["spark.openlineage.parentRunId"] and not any(".transport" in k for k in lineage)
    # What the job consumed, as Dataproc reports it: its time on the cluster.
    usage = metrics["runtime"]["usage"]
    assert usage["cluster_id"] == "uuid-of-test-cluster" and usage["cluster_seconds"] >= 0
    assert result.xcom("pipeline", "sparkpipe_application_url") == metrics["runtime"]["url"]


def test_a_failing_sequence_fails_the_task_with_its_metrics(dag_runs: dict[str, DagRunResult]) -> None:
    result = dag_runs["sparkpipe_dataproc_fails"]
    assert result.state == "failed"
    assert "sequence 'second' failed: AnalysisException: boom" in result.log
    assert result.xcom("pipeline", "metrics")["status"] == "failed"


def test_a_crashed_driver_fails_the_task_with_its_last_output_lines(dag_runs: dict[str, DagRunResult]) -> None:
    result = dag_runs["sparkpipe_dataproc_crashes"]
    assert result.state == "failed"
    assert "RuntimeError: the fake driver crashed" in result.log
    assert "Job failed with message [driver exited with code 1]" in result.log


def test_a_deferred_task_resumes_with_the_metrics(
    dag_runs: dict[str, DagRunResult], dataproc_fakes: DataprocFakes
) -> None:
    result = dag_runs["sparkpipe_dataproc_deferred"]
    assert result.state == "success", result.log[-5000:]
    assert result.xcom("pipeline")["status"] == "succeeded"
    (job,) = jobs_of(dataproc_fakes, "job", "orders_deferred")
    assert job.polls >= 3  # followed to its end by the trigger, then read once more on resume


def test_execution_timeout_cancels_the_job(dag_runs: dict[str, DagRunResult], dataproc_fakes: DataprocFakes) -> None:
    result = dag_runs["sparkpipe_dataproc_times_out"]
    assert result.state == "failed"
    (job,) = jobs_of(dataproc_fakes, "job", "slow_pipeline")
    assert job.cancel_requested
    assert "Task killed: cancelling the pipeline run" in result.log


def test_a_serverless_batch_runs_deferred(dag_runs: dict[str, DagRunResult], dataproc_fakes: DataprocFakes) -> None:
    result = dag_runs["sparkpipe_serverless_deferred"]
    assert result.state == "success", result.log[-5000:]
    metrics = result.xcom("pipeline")
    (batch,) = jobs_of(dataproc_fakes, "batch", "orders_serverless")
    assert metrics["runtime"]["batch_id"] == batch.remote_id
    assert batch.message.runtime_config.version == "2.2"
    assert metrics["runtime"]["usage"] == {"dcu_seconds": 7200.0, "shuffle_storage_gb_seconds": 1800}
    properties = dict(batch.message.runtime_config.properties)
    assert properties["spark.openlineage.parentJobName"] == "sparkpipe_serverless_deferred.pipeline"


def test_a_failed_batch_fails_the_task(dag_runs: dict[str, DagRunResult]) -> None:
    result = dag_runs["sparkpipe_serverless_fails"]
    assert result.state == "failed"
    assert "sequence 'second' failed" in result.log


def test_a_connection_naming_a_secret_runs_on_serverless_with_references_only(
    dag_runs: dict[str, DagRunResult], dataproc_fakes: DataprocFakes
) -> None:
    result = dag_runs["sparkpipe_serverless_connection"]
    assert result.state == "success", result.log[-5000:]
    (batch,) = jobs_of(dataproc_fakes, "batch", "orders_from_connection")
    source = batch.config["sources"]["orders"]
    assert source == {
        "type": "jdbc",
        "table": "orders",
        "url": "jdbc:postgresql://wh.internal:5432/warehouse",
        "user": "reporter",
        "password": f"${{secret:gcp:{WAREHOUSE_SECRET}}}",
    }
    assert "not-this-one" not in json.dumps(batch.config) + str(batch.message) + result.log


def test_a_retry_reattaches_through_the_task_state_store_without_a_lookup(
    dag_runs: dict[str, DagRunResult], dataproc_fakes: DataprocFakes
) -> None:
    """The first try's execution_timeout ends it while its job runs on; the retry reads the job from
    Airflow's task state store and follows it: one job, and no list request from the retry."""
    result = dag_runs["sparkpipe_dataproc_retried"]
    assert result.state == "success", result.log[-5000:]
    (job,) = jobs_of(dataproc_fakes, "job", "late_pipeline")
    assert result.xcom("pipeline")["runtime"]["job_id"] == job.remote_id
    assert "re-attaching instead of submitting again" in result.log
    stem = job.remote_id.rsplit("-", 1)[0]
    listed = [r for name, r in dataproc_fakes.dataproc.requests if name == "list_jobs" and stem in r.filter]
    assert len(listed) == 1  # the first try's lookup; the retry asked for the stored job only
    assert dict(job.message.labels)["sparkpipe-run"] == stem
