"""DAGs the Kubernetes tests run with ``dag.test()`` against the fake API server (connection ``sparkpipe_test_k8s``);
``k8s_connection`` writes to a database named by the Airflow connection ``shop_db``."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator
from airflow_provider_sparkpipe.runtimes.kubernetes import SparkKubernetes

RUNTIME = SparkKubernetes(
    namespace="spark-jobs", image="registry.example.com/sparkpipe-driver:0.1.0", kubernetes_conn_id="sparkpipe_test_k8s"
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

with DAG("k8s_sync_success", schedule=None, start_date=START, catchup=False):
    summary = SparkPipelineOperator(task_id="orders_summary", config=CONFIG, runtime=RUNTIME, poll_interval=0.05)

    @task
    def rows(metrics: dict) -> int:
        return sum(s["rows_written"] for s in metrics["sequences"].values())

    rows(summary.output)

with DAG("k8s_failure", schedule=None, start_date=START, catchup=False):
    SparkPipelineOperator(task_id="failing_summary", config=CONFIG, runtime=RUNTIME, poll_interval=0.05)

with DAG("k8s_connection", schedule=None, start_date=START, catchup=False):
    SparkPipelineOperator(
        task_id="to_database",
        config={
            **CONFIG,
            "app_name": "orders_to_database",
            "sequences": [
                CONFIG["sequences"][0],
                {
                    "name": "export",
                    "query": "SELECT * FROM by_day",
                    "target": {"type": "jdbc", "connection": "shop_db", "table": "public.by_day", "mode": "overwrite"},
                },
            ],
        },
        runtime=RUNTIME,
        poll_interval=0.05,
    )
