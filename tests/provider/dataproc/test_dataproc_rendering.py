"""What the Dataproc runtimes send: jobs and batches the library's own messages accept without loss,
ids and labels within Dataproc's rules, runtimes built from ``sparkpipe`` connections."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from typing import Any, cast

import pytest
from google.cloud import dataproc_v1

from airflow_provider_sparkpipe.exceptions import SparkRuntimeError
from airflow_provider_sparkpipe.hooks.base import hook_for
from airflow_provider_sparkpipe.hooks.dataproc import remote_id_base
from airflow_provider_sparkpipe.runs import PipelineSubmission
from airflow_provider_sparkpipe.runtimes import runtime_from_dict
from airflow_provider_sparkpipe.runtimes.dataproc import DataprocCluster, DataprocServerless
from airflow_provider_sparkpipe.staging import StagedBundle, StagedRun

DOCUMENT = {
    "app_name": "orders_daily",
    "spark_conf": {"spark.sql.shuffle.partitions": 8, "spark.executor.memory": "1g"},
    "sequences": [{"name": "s", "query": "SELECT 1", "target": {"type": "parquet", "path": "gs://out/s"}}],
}
TASK_KEY = "orders.daily__Load_Orders__scheduled__2024-01-15T00_00_00_00_00__-1"
SUBMISSION = PipelineSubmission(
    DOCUMENT,
    "orders_daily",
    TASK_KEY,
    try_number=3,
    labels={"dag_id": "Orders.Daily", "task_id": "Load Orders", "run_id": "scheduled__2024-01-15T00:00:00+00:00"},
)
SETTINGS: dict[str, Any] = {
    "project_id": "acme-data",
    "region": "europe-west1",
    "staging_uri": "gs://acme-staging/sparkpipe/",
}
BATCH_ID = re.compile(r"^[a-z][a-z0-9-]{2,61}[a-z0-9]$")
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


def staged(runtime: Any) -> StagedRun:
    """Where the hook stages a run ``sp-x-1``, with a bundle at ``gs://b/``: the layout of every runtime."""
    run_uri = f"{runtime.staging_uri}/runs/sp-x-1"
    bundle = StagedBundle(main_uri="gs://b/main.py", py_files_uri="gs://b/sparkpipe-abc.zip", digest="abc")
    return StagedRun(bundle, run_uri, f"{run_uri}/config.json", None, f"{run_uri}/metrics.json")


def without_loss(message_type: Any, body: dict[str, Any]) -> None:
    """The dict becomes the library's message and comes back unchanged (an unknown key raises)."""
    message = message_type(body)
    assert message_type.to_dict(message, always_print_fields_with_no_presence=False) == json.loads(json.dumps(body))


def test_cluster_job_is_a_valid_dataproc_job() -> None:
    runtime = DataprocCluster(
        cluster_name="etl", properties={"spark.executor.memory": "4g"}, labels={"team": "data"}, **SETTINGS
    )
    body = hook_for(runtime).render(SUBMISSION, "sp-x-1", staged(runtime))
    without_loss(dataproc_v1.Job, body)
    job = body["pyspark_job"]
    assert body["reference"] == {"project_id": "acme-data", "job_id": "sp-x-1"}
    assert body["placement"] == {"cluster_name": "etl"}
    assert job["main_python_file_uri"] == "gs://b/main.py"
    assert job["python_file_uris"] == ["gs://b/sparkpipe-abc.zip"]
    assert job["file_uris"] == ["gs://acme-staging/sparkpipe/runs/sp-x-1/config.json"]
    assert job["args"] == [
        "run",
        "--config",
        "config.json",
        "--metrics-out",
        "gs://acme-staging/sparkpipe/runs/sp-x-1/metrics.json",
    ]
    # The config's spark_conf, overridden by the runtime's properties.
    assert job["properties"] == {"spark.sql.shuffle.partitions": "8", "spark.executor.memory": "4g"}
    assert body["labels"] == {
        "team": "data",
        "airflow-dag-id": "orders_daily",
        "airflow-task-id": "load_orders",
        "airflow-run-id": "scheduled__2024-01-15t00_00_00_00_00",
    }


def test_serverless_batch_is_a_valid_dataproc_batch() -> None:
    runtime = DataprocServerless(
        runtime_version="2.2",
        service_account="etl@acme-data.iam.gserviceaccount.com",
        subnetwork_uri="projects/acme-data/regions/europe-west1/subnetworks/etl",
        network_tags=["spark"],
        kms_key="projects/acme-data/locations/europe-west1/keyRings/k/cryptoKeys/k",
        properties=cast(dict[str, str], {"spark.dynamicAllocation.maxExecutors": 4}),  # numbers become strings
        **SETTINGS,
    )
    body = hook_for(runtime).render(SUBMISSION, "sp-x-1", staged(runtime))
    without_loss(dataproc_v1.Batch, body)
    assert body["runtime_config"] == {
        "version": "2.2",
        "properties": {
            "spark.sql.shuffle.partitions": "8",
            "spark.executor.memory": "1g",
            "spark.dynamicAllocation.maxExecutors": "4",
        },
    }
    assert body["environment_config"]["execution_config"]["network_tags"] == ["spark"]
    assert body["pyspark_batch"]["args"][:3] == ["run", "--config", "config.json"]
    for key, value in body["labels"].items():
        assert LABEL_KEY.match(key) and LABEL_VALUE.match(value), (key, value)


def test_remote_ids_are_deterministic_valid_and_distinct() -> None:
    stem = remote_id_base(TASK_KEY)
    assert stem == remote_id_base(TASK_KEY)
    assert BATCH_ID.match(f"{stem}-99"), stem
    long_key = "d" * 200 + "__t__r__-1"
    assert BATCH_ID.match(f"{remote_id_base(long_key)}-99")
    # Keys that only differ past the readable part still get their own ids.
    assert remote_id_base(long_key) != remote_id_base(long_key.replace("__r__", "__s__"))


def test_runtimes_come_from_sparkpipe_connection_extras() -> None:
    runtime = runtime_from_dict(
        {
            "runtime": "dataproc_serverless",
            "project_id": "acme-data",
            "region": "europe-west1",
            "staging_uri": "gs://acme-staging",
            "properties": '{"spark.executor.cores": 4}',
            "network_tags": "a, b",
        },
        where="connection 'sparkpipe_serverless'",
    )
    assert runtime == DataprocServerless(
        project_id="acme-data",
        region="europe-west1",
        staging_uri="gs://acme-staging",
        properties={"spark.executor.cores": "4"},
        network_tags=("a", "b"),
    )
    cluster = DataprocCluster(cluster_name="etl", **SETTINGS)
    assert runtime_from_dict(cluster.to_dict()) == cluster


@pytest.mark.parametrize(
    ("extras", "message"),
    [
        ({"region": "r", "staging_uri": "gs://b", "cluster_name": "c"}, "project_id"),
        ({**SETTINGS, "cluster_name": "c", "staging_uri": "/tmp/staging"}, "staging_uri must be a gs://"),
        ({**SETTINGS, "cluster_name": "c", "labels": {"Team": "x"}}, "label rules"),
        ({**SETTINGS, "cluster_nmae": "c"}, "did you mean 'cluster_name'"),
    ],
)
def test_invalid_runtime_settings_say_what_is_wrong(extras: dict, message: str) -> None:
    with pytest.raises(SparkRuntimeError, match=message):
        runtime_from_dict({"runtime": "dataproc_cluster", **extras}, where="connection 'c'")


def test_importing_the_runtimes_imports_no_google_client() -> None:
    code = (
        "import sys\n"
        "import airflow_provider_sparkpipe.operators.spark_pipeline\n"
        "from airflow_provider_sparkpipe.runtimes.dataproc import DataprocCluster, DataprocServerless\n"
        "print([m for m in sys.modules if m.startswith(('google.cloud.', 'google.api_core', 'grpc'))])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("kind", ["cluster", "serverless"])
def test_jobs_and_batches_give_the_driver_the_tasks_run_key_and_commit_log(kind: str) -> None:
    """The commit log is the task's folder in staging, ``runs/<id stem>/commits`` beside its attempts'
    ``runs/<stem>-<n>``: every attempt of the task instance gets the same run key and folder."""
    runtime: Any = DataprocServerless(**SETTINGS)
    if kind == "cluster":
        runtime = DataprocCluster(cluster_name="etl", **SETTINGS)
    resumed = dataclasses.replace(SUBMISSION, resume_key="orders.daily.load-0123456789abcdef0123")
    stem = remote_id_base(TASK_KEY)
    for attempt in (1, 2):
        body = hook_for(runtime).render(resumed, f"{stem}-{attempt}", staged(runtime))
        without_loss(dataproc_v1.Job if kind == "cluster" else dataproc_v1.Batch, body)
        args = (body.get("pyspark_job") or body["pyspark_batch"])["args"]
        assert args[5:] == [
            *("--run-key", "orders.daily.load-0123456789abcdef0123"),
            *("--state-dir", f"gs://acme-staging/sparkpipe/runs/{stem}/commits"),
        ]
    body = hook_for(runtime).render(SUBMISSION, f"{stem}-1", staged(runtime))
    assert "--run-key" not in (body.get("pyspark_job") or body["pyspark_batch"])["args"]
