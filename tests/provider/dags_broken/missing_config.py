"""A DAG pointing at a config file that does not exist."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator

with DAG("sparkpipe_missing_config", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    SparkPipelineOperator(task_id="missing", config="pipelines/does_not_exist.yaml")
