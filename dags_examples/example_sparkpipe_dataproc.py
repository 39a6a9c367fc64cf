"""Run one pipeline on Google Cloud twice: as a job on a Dataproc cluster, and as a Dataproc
Serverless batch waiting in the triggerer.

The runtimes are plain objects: nothing here calls Google Cloud while the DAG is parsed. Replace the
``SPARKPIPE_GCP_*`` defaults with your project, region, cluster and staging bucket, or describe the
runtime in a ``sparkpipe`` connection (``{"runtime": "dataproc_serverless", "project_id": ...}``)
and pass its id as ``runtime=``. The ``google_cloud_default`` connection supplies the credentials.

The driver needs Spark 3.5 or later: Dataproc image 2.2, 2.3 or 3.0, Serverless runtime 1.2, 2.2, 2.3
or 3.0. The cluster's image is read from Dataproc before each run (``image_version`` states it for the
DAG parse); an older image or runtime is an error naming the setting and the versions to use.
"""

from __future__ import annotations

import datetime
import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator
from airflow_provider_sparkpipe.runtimes.dataproc import DataprocCluster, DataprocServerless

PROJECT = os.environ.get("SPARKPIPE_GCP_PROJECT", "my-project")
REGION = os.environ.get("SPARKPIPE_GCP_REGION", "europe-west1")
BUCKET = os.environ.get("SPARKPIPE_GCP_BUCKET", "my-project-sparkpipe")

# The pipeline reads raw orders from GCS and writes a daily summary next to them.
ORDERS_PIPELINE = {
    "app_name": "orders_daily",
    "vars": {"bucket": BUCKET, "run_date": "1970-01-01"},
    "spark_conf": {"spark.sql.shuffle.partitions": "16"},
    "sources": {
        "orders": {
            "type": "gcs",
            "alias": "orders",
            "path": "gs://${bucket}/raw/orders/",
            "format": "parquet",
        }
    },
    "sequences": [
        {
            "name": "daily_revenue",
            "query": "SELECT order_date, SUM(amount) AS revenue FROM orders "
            "WHERE order_date = DATE '${run_date}' GROUP BY order_date",
            "target": {
                "type": "gcs",
                "path": "gs://${bucket}/curated/daily_revenue/run_date=${run_date}",
                "format": "parquet",
                "mode": "overwrite",
            },
        }
    ],
}

# The day's partition: the run's logical date, or the day of the trigger for a run triggered without
# one (Airflow 3 runs may have no logical date, and then no ``ds``).
RUN_DATE = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"

ON_CLUSTER = DataprocCluster(
    project_id=PROJECT,
    region=REGION,
    cluster_name="etl-cluster",
    image_version="2.3",  # Spark 3.5, Python 3.11
    staging_uri=f"gs://{BUCKET}/sparkpipe",
    properties={"spark.executor.memory": "4g"},
    labels={"team": "data"},
)
SERVERLESS = DataprocServerless(
    project_id=PROJECT,
    region=REGION,
    staging_uri=f"gs://{BUCKET}/sparkpipe",
    runtime_version="2.3",  # the default: Spark 3.5, Python 3.11; "3.0" runs Spark 4.0
    service_account=f"sparkpipe@{PROJECT}.iam.gserviceaccount.com",
    properties={"spark.dynamicAllocation.maxExecutors": "10"},
    labels={"team": "data"},
)

with DAG(
    "sparkpipe_dataproc_cluster",
    description="The orders pipeline on a running Dataproc cluster, daily (needs a Google Cloud project).",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["sparkpipe", "example", "gcp"],
):
    SparkPipelineOperator(
        task_id="orders_daily",
        config=ORDERS_PIPELINE,
        vars={"run_date": RUN_DATE},
        runtime=ON_CLUSTER,
        retries=2,  # a retry re-attaches to the Dataproc job if it is still running: never two jobs
        execution_timeout=datetime.timedelta(hours=1),  # cancels the Dataproc job when reached
    )

with DAG(
    "sparkpipe_dataproc_serverless",
    description="The orders pipeline as a Dataproc Serverless batch, daily (needs a Google Cloud project).",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["sparkpipe", "example", "gcp"],
):
    SparkPipelineOperator(
        task_id="orders_daily",
        config=ORDERS_PIPELINE,
        vars={"run_date": RUN_DATE},
        runtime=SERVERLESS,
        deferrable=True,  # the batch is followed from the triggerer: no worker slot while it runs
        poll_interval=30,
        execution_timeout=datetime.timedelta(hours=1),
    )
