"""DAGs the deployment test triggers through the REST API: deferrable SparkKubernetes runs against the fake
Kubernetes API server (connection ``sparkpipe_deployment_k8s``), one the fake completes and one it keeps running."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator
from airflow_provider_sparkpipe.runtimes.kubernetes import SparkKubernetes

RUNTIME = SparkKubernetes(
    namespace="spark-jobs",
    image="registry.example.com/sparkpipe-driver:0.1.0",
    kubernetes_conn_id="sparkpipe_deployment_k8s",
)
CONFIG = {
    "app_name": "orders_summary",
    "sources": {"orders_src": {"type": "file", "alias": "orders", "path": "s3a://lake/orders.csv", "format": "csv"}},
    "sequences": [
        {"name": "by_day", "query": "SELECT * FROM orders", "target": {"type": "parquet", "path": "s3a://lake/by_day"}},
        {"name": "by_week", "query": "SELECT * FROM by_day", "target": {"type": "parquet", "path": "s3a://lake/wk"}},
    ],
}
START = pendulum.datetime(2024, 1, 1, tz="UTC")

# The fake decides how an application ends by its task id: the test keeps "runs_until_killed" running.
for dag_id, task_id in (("deployment_k8s", "orders_summary"), ("deployment_k8s_killed", "runs_until_killed")):
    with DAG(dag_id, schedule=None, start_date=START, catchup=False, tags=["sparkpipe", "deployment-test"]):
        summary = SparkPipelineOperator(
            task_id=task_id, config=CONFIG, runtime=RUNTIME, deferrable=True, poll_interval=1.0
        )

        @task
        def rows(metrics: dict) -> int:
            return sum(s["rows_written"] for s in metrics["sequences"].values())

        rows(summary.output)
