"""DAGs the Dataproc tests run with dag.test() against the fake Dataproc and the GCS emulator.

The fake's endpoint comes from the test's environment; the config's ``app_name`` tells the fake
driver how to end (see ``fake_dataproc.py``).
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator
from airflow_provider_sparkpipe.runtimes.dataproc import DataprocCluster, DataprocServerless

START = pendulum.datetime(2024, 1, 1, tz="UTC")
SETTINGS: dict[str, Any] = {
    "project_id": "sparkpipe-test",
    "region": "europe-west1",
    "staging_uri": "gs://sparkpipe-staging/sparkpipe",
    "api_endpoint": os.environ.get("SPARKPIPE_TEST_DATAPROC_ENDPOINT", "127.0.0.1:1"),
    "properties": {"spark.executor.memory": "2g"},
}
CLUSTER = DataprocCluster(cluster_name="test-cluster", **SETTINGS)
SERVERLESS = DataprocServerless(runtime_version="2.2", **SETTINGS)


def config(app_name: str) -> dict[str, Any]:
    return {
        "app_name": app_name,
        "spark_conf": {"spark.sql.shuffle.partitions": "8"},
        "sequences": [
            {"name": "first", "query": "SELECT 1 AS one", "target": {"type": "parquet", "path": "gs://out/first"}},
            {
                "name": "second",
                "query": "SELECT one FROM first",
                "target": {"type": "parquet", "path": "gs://out/second"},
            },
        ],
    }


def pipeline_dag(dag_id: str, app_name: str, runtime: Any, **operator_args: Any) -> DAG:
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        SparkPipelineOperator(
            task_id="pipeline", config=config(app_name), runtime=runtime, **{"poll_interval": 0.05, **operator_args}
        )
    return dag


pipeline_dag("sparkpipe_dataproc_succeeds", "orders_daily", CLUSTER)
pipeline_dag("sparkpipe_dataproc_fails", "fail_pipeline", CLUSTER)
pipeline_dag("sparkpipe_dataproc_crashes", "crash_pipeline", CLUSTER)
pipeline_dag("sparkpipe_dataproc_deferred", "orders_deferred", CLUSTER, deferrable=True)
pipeline_dag("sparkpipe_dataproc_times_out", "slow_pipeline", CLUSTER, execution_timeout=datetime.timedelta(seconds=3))
# The first try times out while the job runs on (no cancel); the retry re-attaches to it through the
# task state store, and the job ends during the retry (the fake's "late" outcome: 3.5 s after its submission).
pipeline_dag(
    "sparkpipe_dataproc_retried",
    "late_pipeline",
    CLUSTER,
    execution_timeout=datetime.timedelta(seconds=3),
    cancel_on_kill=False,
    retries=1,
    retry_delay=datetime.timedelta(0),
    poll_interval=0.2,
)
pipeline_dag("sparkpipe_serverless_deferred", "orders_serverless", SERVERLESS, deferrable=True)
pipeline_dag("sparkpipe_serverless_fails", "fail_serverless", SERVERLESS)


with DAG("sparkpipe_serverless_connection", schedule=None, start_date=START):
    # The connection (from the test's environment) names a Secret Manager secret for its password.
    SparkPipelineOperator(
        task_id="pipeline",
        config={
            "app_name": "orders_from_connection",
            "sources": {"orders": {"type": "jdbc", "connection": "warehouse_pg", "table": "orders"}},
            "sequences": [
                {"name": "first", "query": "SELECT * FROM orders", "target": {"type": "parquet", "path": "gs://o/1"}},
                {"name": "second", "query": "SELECT * FROM first", "target": {"type": "parquet", "path": "gs://o/2"}},
            ],
        },
        runtime=SERVERLESS,
        poll_interval=0.05,
    )
