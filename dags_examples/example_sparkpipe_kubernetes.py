"""Run the shop pipeline on Kubernetes as a Spark operator SparkApplication, waiting in the triggerer.

Needs a cluster with the Kubeflow Spark operator, the driver image built from the repository's
``Dockerfile`` (docs/runtimes/kubernetes.md: apache/spark 4.1.2 with Python 3.10, the runtime's default
``spark_version``) and an Airflow connection of type ``kubernetes``
(``kubernetes_default``). Data and outputs live in object storage the pods can reach; the S3
credentials come from a Kubernetes Secret straight into the pods, never through Airflow.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag, task

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator
from airflow_provider_sparkpipe.runtimes.kubernetes import SparkKubernetes

DATA_DIR = os.environ.get("SPARKPIPE_K8S_DATA", "s3a://sparkpipe-examples/shop")
OUTPUT_DIR = os.environ.get("SPARKPIPE_K8S_OUTPUT", "s3a://sparkpipe-examples/output")

SPARK_ON_KUBERNETES = SparkKubernetes(
    namespace=os.environ.get("SPARKPIPE_K8S_NAMESPACE", "spark-jobs"),
    image=os.environ.get("SPARKPIPE_K8S_IMAGE", "registry.example.com/sparkpipe-driver:0.1.0"),
    kubernetes_conn_id="kubernetes_default",
    service_account="spark-operator-spark",
    driver={"cores": 1, "memory": "1g"},
    executor={"instances": 2, "cores": 1, "memory": "2g"},
    conf={"spark.hadoop.fs.s3a.aws.credentials.provider": "com.amazonaws.auth.EnvironmentVariableCredentialsProvider"},
    secret_env={
        "AWS_ACCESS_KEY_ID": "sparkpipe-s3/access-key-id",
        "AWS_SECRET_ACCESS_KEY": "sparkpipe-s3/secret-access-key",
    },
    time_to_live_s=24 * 3600,
    delete_on_success=True,
)


@dag(
    dag_id="sparkpipe_kubernetes",
    description="The orders pipeline as a SparkApplication of the Kubeflow Spark operator (needs a cluster).",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["sparkpipe", "example", "kubernetes"],
)
def sparkpipe_kubernetes() -> None:
    summary = SparkPipelineOperator(
        task_id="shop_summary",
        config="pipelines/shop_summary.yaml",
        vars={"data_dir": DATA_DIR, "output_dir": OUTPUT_DIR},
        runtime=SPARK_ON_KUBERNETES,
        deferrable=True,
        poll_interval=15,
    )

    @task
    def report(metrics: dict) -> dict[str, int]:
        """The metrics document comes from the driver pod's log, the same as on every runtime."""
        return {name: seq["rows_written"] for name, seq in metrics["sequences"].items()}

    report(summary.output)


sparkpipe_kubernetes()
