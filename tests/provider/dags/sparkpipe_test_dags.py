"""DAGs the provider tests run with dag.test(): a failing sequence, a config broken only once
rendered, a config that renders only in a run with a logical date, a pipeline
slow enough to be killed, and JDBC credentials from an Airflow connection. Paths come from the
test's environment."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator

VARS = {
    "data_dir": os.environ.get("SPARKPIPE_TEST_DATA", ""),
    "output_dir": os.environ.get("SPARKPIPE_TEST_OUTPUT", ""),
}
START = pendulum.datetime(2024, 1, 1, tz="UTC")

with DAG("sparkpipe_test_failing", schedule=None, start_date=START):
    SparkPipelineOperator(task_id="failing", config="pipelines/failing.yaml", vars=VARS)

with DAG("sparkpipe_test_bad_render", schedule=None, start_date=START, params={"mode": "upsert"}):
    SparkPipelineOperator(task_id="bad_render", config="pipelines/bad_mode.yaml", vars=VARS)

with DAG("sparkpipe_test_needs_logical_date", schedule=None, start_date=START):
    SparkPipelineOperator(task_id="needs_logical_date", config="pipelines/needs_logical_date.yaml", vars=VARS)

with DAG("sparkpipe_test_slow", schedule=None, start_date=START):
    SparkPipelineOperator(task_id="slow", config="pipelines/slow.yaml", vars={"output_dir": VARS["output_dir"]})

with DAG("sparkpipe_test_connection", schedule=None, start_date=START):
    SparkPipelineOperator(
        task_id="to_postgres", config="pipelines/connection.yaml", vars={"data_dir": VARS["data_dir"]}
    )

with DAG("sparkpipe_test_expectations", schedule=None, start_date=START):
    SparkPipelineOperator(task_id="checked", config="pipelines/expectations.yaml", vars=VARS)
