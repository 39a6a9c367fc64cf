"""A DAG whose pipeline config is broken: DagBag must report it as an import error of this file."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator

with DAG("sparkpipe_broken_config", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    SparkPipelineOperator(task_id="broken", config="pipelines/broken.yaml")
