"""A DAG the provider tests run with dag.test(): one incremental pipeline run three times in a row, the
third with the operator's templated ``full_refresh``. Its folder comes from the test's environment."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator

FOLDER = os.environ.get("SPARKPIPE_TEST_INCREMENTAL", "/tmp/sparkpipe-incremental")
CONFIG = {
    "app_name": "incremental_operator",
    "sources": {
        "events": {"type": "file", "format": "json", "path": f"{FOLDER}/events/", "schema": "id INT, day DATE"}
    },
    "sequences": [
        {
            "name": "daily",
            "query": "SELECT day, count(*) AS n FROM events GROUP BY day",
            "incremental": {"source": "events", "column": "day"},
            "target": {
                "type": "parquet",
                "path": f"{FOLDER}/daily",
                "partition_by": "day",
                "dynamic_partition_overwrite": True,
            },
        }
    ],
}

# The source is a folder: a text ending in .json would be read by Airflow as a template file to render.
with DAG(
    "sparkpipe_test_incremental",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    params={"full_refresh": True},
):
    first = SparkPipelineOperator(task_id="first", config=CONFIG)
    second = SparkPipelineOperator(task_id="second", config=CONFIG)
    refreshed = SparkPipelineOperator(task_id="refreshed", config=CONFIG, full_refresh="{{ params.full_refresh }}")
    first >> second >> refreshed
