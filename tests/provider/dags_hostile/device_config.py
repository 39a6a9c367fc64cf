"""A config path the test points at a link to /dev/zero (SPARKPIPE_TEST_DEVICE_CONFIG): an import
error naming it, and the parse neither blocks nor reads it whole."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator

with DAG("hostile_device_config", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    SparkPipelineOperator(task_id="read", config=os.environ["SPARKPIPE_TEST_DEVICE_CONFIG"])
