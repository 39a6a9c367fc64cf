"""The shop summary pipeline on the three AWS runtimes: a step on an EMR cluster, EMR Serverless, EMR on EKS.

The same config runs everywhere; only the runtime changes. Ids come from Airflow Variables (with
placeholders so that the DAG parses without AWS access); ``aws_default`` holds the credentials. In
production the runtime is usually a ``sparkpipe`` connection instead, e.g. extras
``{"runtime": "emr_serverless", "application_id": "...", "execution_role_arn": "...", "staging_uri": "s3://..."}``.

The driver needs EMR 7 (Spark 3.5) or emr-spark-8 (Spark 4.0); an EMR 6 release is an import error of
this file. The cluster's and the application's releases are read from EMR before each run (the
``release_label`` stated here is checked when the DAG is parsed); the driver runs on Python 3.11,
which EMR 7.1+ installs beside its default 3.9 (``python`` chooses another).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator
from airflow_provider_sparkpipe.runtimes.emr import EmrCluster, EmrOnEks, EmrServerless

STAGING = "s3://my-company-sparkpipe/staging"
LAKE = "s3://my-company-lake"
ROLE = "arn:aws:iam::123456789012:role/sparkpipe-job"
VARS = {"data_dir": f"{LAKE}/raw/shop", "output_dir": f"{LAKE}/curated/shop"}


@dag(
    dag_id="sparkpipe_emr",
    description="The orders pipeline on EMR Serverless (needs an AWS account: set the runtime's ids first).",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["sparkpipe", "example", "aws"],
)
def sparkpipe_emr() -> None:
    SparkPipelineOperator(
        task_id="on_emr_cluster",
        config="pipelines/shop_summary.yaml",
        vars=VARS,
        runtime=EmrCluster(
            job_flow_name="analytics",  # or job_flow_id="j-..."
            staging_uri=STAGING,
            spark_conf={"spark.executor.memory": "4g"},
            release_label="emr-7.13.0",  # Spark 3.5.6, Python 3.9 and 3.11
        ),
        deferrable=True,
    )
    SparkPipelineOperator(
        task_id="on_emr_serverless",
        config="pipelines/shop_summary.yaml",
        vars=VARS,
        runtime=EmrServerless(
            application_id="00fexample0app",
            execution_role_arn=ROLE,
            staging_uri=STAGING,
            log_uri="s3://my-company-sparkpipe/logs",
            release_label="emr-spark-8.0.0",  # an application of the Spark 4.0 line (Python 3.11 to 3.13)
        ),
        deferrable=True,
    )
    SparkPipelineOperator(
        task_id="on_emr_on_eks",
        config="pipelines/shop_summary.yaml",
        vars=VARS,
        runtime=EmrOnEks(
            virtual_cluster_id="examplevirtualcluster0",
            execution_role_arn=ROLE,
            release_label="emr-7.13.0-latest",  # the job run's release: Spark 3.5.6
            python="3.11",  # the default on EMR 7.1+, stated: /usr/bin/python3.11
            staging_uri=STAGING,
            log_uri="s3://my-company-sparkpipe/logs",
        ),
        deferrable=True,
    )


sparkpipe_emr()
