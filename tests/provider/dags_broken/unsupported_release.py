"""A DAG whose runtime names an EMR release whose Spark the driver does not run on (EMR 6: Spark 3.4):
DagBag must report it as an import error of this file, naming the setting and the supported range."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator
from airflow_provider_sparkpipe.runtimes.emr import EmrOnEks

CONFIG = {
    "app_name": "orders",
    "sequences": [{"name": "one", "query": "SELECT 1 AS one", "target": {"type": "parquet", "path": "s3://b/one"}}],
}

with DAG("sparkpipe_unsupported_release", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    SparkPipelineOperator(
        task_id="on_emr_6",
        config=CONFIG,
        runtime=EmrOnEks(
            virtual_cluster_id="examplevirtualcluster0",
            execution_role_arn="arn:aws:iam::123456789012:role/sparkpipe-job",
            release_label="emr-6.15.0-latest",
            staging_uri="s3://my-company-sparkpipe/staging",
        ),
    )
