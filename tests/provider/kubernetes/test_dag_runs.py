"""Whole DAG runs with Airflow's ``dag.test()`` (a real metadata database) on SparkKubernetes against the fake
API server: the example DAG deferred to the triggerer, a run waited for in the worker, a failed run, and
credentials of an Airflow connection handed to the driver."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.provider.kubernetes.conftest import kubernetes_connection
from tests.provider.kubernetes.fake_apiserver import FakeKubernetes
from tests.provider.support import EXAMPLES, TEST_DAGS, DagRunner, DagRunResult

KUBERNETES_DAGS = Path(__file__).resolve().parent / "dags"
DB_USER, DB_PASSWORD = "k8s_loader_3Vb", "k8s-pw/Hq7$Lm2!x"
DB_ENVIRONMENT = {"SPARKPIPE_CONN_SHOP_DB_USER": DB_USER, "SPARKPIPE_CONN_SHOP_DB_PASSWORD": DB_PASSWORD}


@pytest.fixture(scope="module")
def runs(
    dag_runner: DagRunner, fake_kubernetes: FakeKubernetes, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, DagRunResult]:
    lineage_events = tmp_path_factory.mktemp("k8s-lineage") / "events.jsonl"
    fake_kubernetes.reset()
    fake_kubernetes.outcomes["failing_summary"] = "FAILED"
    # The Secret the example's secret_env reads, as the cluster's administrator created it.
    fake_kubernetes.secrets[("spark-jobs", "sparkpipe-s3")] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "sparkpipe-s3", "namespace": "spark-jobs", "uid": "s3-secret"},
        "data": {"access-key-id": "QUtJQUVYQU1QTEU=", "secret-access-key": "ZXhhbXBsZS1zZWNyZXQ="},
    }
    bundles = [("examples", EXAMPLES), ("test-dags", TEST_DAGS), ("kubernetes-test-dags", KUBERNETES_DAGS)]
    env = {
        # OpenLineage on (a file transport): the runs hand their Spark applications the parent job.
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(lineage_events)}),
        "AIRFLOW_CONN_KUBERNETES_DEFAULT": kubernetes_connection(fake_kubernetes.url),
        "AIRFLOW_CONN_SHOP_DB": f"postgres://{DB_USER}:{quote(DB_PASSWORD, safe='')}@db.example.com:5432/shop",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
            [
                {
                    "name": name,
                    "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                    "kwargs": {"path": str(path)},
                }
                for name, path in bundles
            ]
        ),
    }
    return dag_runner.run(
        [
            {
                "dag_folder": str(EXAMPLES / "example_sparkpipe_kubernetes.py"),
                "dag_id": "sparkpipe_kubernetes",
                "logical_date": "2024-01-15",
            },
            {"dag_folder": str(KUBERNETES_DAGS), "dag_id": "k8s_sync_success", "logical_date": "2024-01-15"},
            {"dag_folder": str(KUBERNETES_DAGS), "dag_id": "k8s_failure", "logical_date": "2024-01-15"},
            {"dag_folder": str(KUBERNETES_DAGS), "dag_id": "k8s_connection", "logical_date": "2024-01-15"},
        ],
        env=env,
    )


def test_the_example_dag_defers_resumes_and_hands_metrics_downstream(runs: dict[str, DagRunResult]) -> None:
    result = runs["sparkpipe_kubernetes"]
    assert result.state == "success", result.log[-5000:]
    metrics = result.xcom("shop_summary")
    assert metrics["status"] == "succeeded" and metrics["runtime"]["kind"] == "kubernetes"
    assert result.xcom("report") == {"daily_revenue": 10, "customer_summary": 20, "region_revenue": 30}
    assert "[DAG TEST] running trigger in line" in result.log
    assert "Deleting SparkApplication spark-jobs/" in result.log  # the example's delete_on_success


def test_the_application_names_the_task_as_the_openlineage_parent(
    runs: dict[str, DagRunResult], fake_kubernetes: FakeKubernetes
) -> None:
    (created,) = [
        r.body
        for r in fake_kubernetes.calls("POST", "sparkapplications")
        if r.body["metadata"]["name"].startswith("k8s-sync")
    ]
    conf = created["spec"]["sparkConf"]
    assert conf["spark.openlineage.parentJobName"] == "k8s_sync_success.orders_summary"
    assert conf["spark.openlineage.rootParentJobName"] == "k8s_sync_success" and conf["spark.openlineage.parentRunId"]
    assert not any(k.startswith("spark.openlineage.transport") for k in conf)


def test_a_run_waited_for_in_the_worker_streams_the_driver_log(runs: dict[str, DagRunResult]) -> None:
    result = runs["k8s_sync_success"]
    assert result.state == "success", result.log[-5000:]
    assert result.xcom("rows") == 30
    assert "Following the log of driver pod k8s-sync-success-orders-summary" in result.log
    assert "sparkpipe: sequence by_week: 20 rows" in result.log


def test_a_failed_application_fails_the_task_with_the_driver_log_tail(runs: dict[str, DagRunResult]) -> None:
    result = runs["k8s_failure"]
    assert result.state == "failed"
    assert result.tasks == {"failing_summary": "failed"}
    assert "sequence 'by_week' failed: AnalysisException: [TABLE_OR_VIEW_NOT_FOUND] missing_table" in result.log
    assert result.xcom("failing_summary", "metrics")["status"] == "failed"
    assert "kubectl describe sparkapplication -n spark-jobs k8s-failure-failing-summary" in result.log


def test_connection_credentials_reach_the_driver_through_a_secret_and_nowhere_else(
    runs: dict[str, DagRunResult], fake_kubernetes: FakeKubernetes
) -> None:
    result = runs["k8s_connection"]
    assert result.state == "success", result.log[-5000:]
    assert result.xcom("to_database")["sequences"]["export"]["status"] == "succeeded"
    (created,) = [r.body for r in fake_kubernetes.calls("POST", "/secrets")]
    name = created["metadata"]["name"].removesuffix("-credentials")
    assert {k: base64.b64decode(v).decode() for k, v in created["data"].items()} == DB_ENVIRONMENT
    app = fake_kubernetes.apps[("spark-jobs", name)]
    assert created["metadata"]["ownerReferences"][0]["uid"] == app["metadata"]["uid"]
    assert fake_kubernetes.driver_env[app["metadata"]["uid"]] == DB_ENVIRONMENT
    config = json.loads(fake_kubernetes.config_maps[("spark-jobs", f"{name}-config")]["data"]["config.json"])
    assert config["sequences"][1]["target"] == {
        "type": "jdbc",
        "url": "jdbc:postgresql://db.example.com:5432/shop",
        "table": "public.by_day",
        "mode": "overwrite",
        "user": "${env:SPARKPIPE_CONN_SHOP_DB_USER}",
        "password": "${env:SPARKPIPE_CONN_SHOP_DB_PASSWORD}",
    }
    # The run ended: its Secret is gone, the application (kept: no delete_on_success) stays.
    assert ("spark-jobs", f"{name}-credentials") not in fake_kubernetes.secrets
    # The values are in no other request, in no log and in no XCom.
    forbidden = [DB_USER, DB_PASSWORD, base64.b64encode(DB_PASSWORD.encode()).decode()]
    others = [r for r in fake_kubernetes.requests if r.body is not created]
    places = {
        "requests": json.dumps([r.body for r in others]),
        "logs": "\n".join(r.log for r in runs.values()),
        "xcoms": json.dumps([r.xcoms for r in runs.values()], default=str),
    }
    assert {where: [v for v in forbidden if v in text] for where, text in places.items()} == {
        "requests": [],
        "logs": [],
        "xcoms": [],
    }
