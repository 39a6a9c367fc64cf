"""Fixtures for the SparkKubernetes tests: the CRD's schema, and a fake API server reached through a real
``kubernetes`` Airflow connection (a kube config pointing at it), by the real kubernetes clients."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from airflow_provider_sparkpipe.runs import PipelineRun, PipelineSubmission, RunState
from airflow_provider_sparkpipe.runtimes.kubernetes import SparkKubernetes
from tests.provider.kubernetes.fake_apiserver import TOKEN, FakeKubernetes, serve

CRD = Path(__file__).resolve().parents[1] / "schemas" / "sparkoperator.k8s.io_sparkapplications.crd.yaml"
CONN_ID = "sparkpipe_test_k8s"
NAMESPACE = "spark-jobs"
IMAGE = "registry.example.com/sparkpipe-driver:0.1.0"


def _strict(schema: Any) -> Any:
    """The CRD's structural schema with unknown fields refused.

    Kubernetes silently prunes fields a structural schema does not declare; refusing them instead
    turns a misspelt field (which the operator would never see) into a test failure.
    """
    if isinstance(schema, dict):
        strict = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in strict
            and "additionalProperties" not in strict
            and not strict.get("x-kubernetes-preserve-unknown-fields")
        ):
            strict["additionalProperties"] = False
        return strict
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@pytest.fixture(scope="session")
def crd_validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta2")
    return jsonschema.Draft7Validator(_strict(version["schema"]["openAPIV3Schema"]))


def schema_problems(validator: jsonschema.Draft7Validator, manifest: Mapping[str, Any]) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in validator.iter_errors(manifest)
    ]


def kube_config(server: str) -> dict[str, Any]:
    """A kube config for the fake: what a user pastes into a ``kubernetes`` connection's ``kube_config``."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "airflow", "user": {"token": TOKEN}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "airflow", "namespace": NAMESPACE}}],
        "current-context": "fake",
    }


def kubernetes_connection(server: str) -> str:
    """The ``AIRFLOW_CONN_*`` value of a ``kubernetes`` connection to the fake (the provider's own extras)."""
    return json.dumps({"conn_type": "kubernetes", "extra": {"in_cluster": False, "kube_config": kube_config(server)}})


@pytest.fixture(scope="session")
def fake_kubernetes(crd_validator: jsonschema.Draft7Validator) -> Iterator[FakeKubernetes]:
    fake = FakeKubernetes(validate=lambda manifest: schema_problems(crd_validator, manifest))
    server = serve(fake)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = kubernetes_connection(url)
    fake.url = url
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def apiserver(fake_kubernetes: FakeKubernetes) -> Iterator[FakeKubernetes]:
    """The fake, emptied for one test."""
    fake_kubernetes.reset()
    yield fake_kubernetes
    fake_kubernetes.reset()


def poll_until_running(hook: Any, run: PipelineRun) -> None:
    """Poll until the application runs (the fake moves it one step per read: a few polls)."""
    for _ in range(20):
        if hook.poll(run) == RunState.RUNNING:
            return
    raise AssertionError(f"{run.run_id} never reached RUNNING")


def runtime(**overrides: Any) -> SparkKubernetes:
    settings: dict[str, Any] = {"namespace": NAMESPACE, "image": IMAGE, "kubernetes_conn_id": CONN_ID}
    return SparkKubernetes(**{**settings, **overrides})


def pipeline_document(app_name: str = "shop_summary") -> dict[str, Any]:
    return {
        "app_name": app_name,
        "spark_conf": {"spark.sql.shuffle.partitions": "4"},
        "sources": {"orders_src": {"type": "file", "alias": "orders", "path": "s3a://lake/orders.csv"}},
        "sequences": [
            {
                "name": "daily_revenue",
                "query": "SELECT order_date, SUM(amount) AS revenue FROM orders GROUP BY order_date",
                "target": {"type": "parquet", "path": "s3a://lake/out/daily_revenue", "mode": "overwrite"},
            },
            {
                "name": "to_postgres",
                "query": "SELECT * FROM daily_revenue",
                "target": {
                    "type": "jdbc",
                    "url": "jdbc:postgresql://db:5432/shop",
                    "table": "daily_revenue",
                    "user": "etl",
                    "password": "${env:PG_PASSWORD}",
                },
            },
        ],
    }


def submission(
    task_id: str = "shop_summary",
    try_number: int = 1,
    document: Mapping[str, Any] | None = None,
    environment: Mapping[str, str] | None = None,
) -> PipelineSubmission:
    run_id = "manual__2024-01-15T00:00:00+00:00"
    return PipelineSubmission(
        document=dict(document or pipeline_document()),
        app_name="shop_summary",
        task_key=f"sparkpipe_kubernetes__{task_id}__{run_id.replace(':', '_').replace('+', '_')}__-1",
        try_number=try_number,
        labels={"dag_id": "sparkpipe_kubernetes", "task_id": task_id, "run_id": run_id},
        environment=dict(environment or {}),
    )
