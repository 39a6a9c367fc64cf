"""The shop summary pipeline on the three AWS runtimes: a step on an EMR cluster, EMR Serverless, EMR on EKS.

The same config runs everywhere; only the runtime changes. Ids come from Airflow Variables (with
placeholders so that the DAG parses without AWS access); ``aws_default`` holds the credentials. In
production the runtime is usually a ``sparkpipe`` connection instead, e.g. extras
``{"runtime": "emr_serverless", "application_id": "...", "execution_role_arn": "...", "staging_uri": "s3://..."}``.
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
            release_label="emr-7.2.0-latest",
            staging_uri=STAGING,
            log_uri="s3://my-company-sparkpipe/logs",
        ),
        deferrable=True,
    )


sparkpipe_emr()
