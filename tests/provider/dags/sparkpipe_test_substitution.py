"""A DAG whose var comes from a param: whatever text the run is given must reach the SQL as that text.

The param's default is read from the test's environment (``SPARKPIPE_TEST_LABEL``), the way a trigger's
conf would set it; Jinja renders ``{{ params.label }}`` into the operator's vars either way."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator

with DAG(
    "sparkpipe_test_substitution",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    params={"label": Param(os.environ.get("SPARKPIPE_TEST_LABEL", ""), type="string")},
):
    SparkPipelineOperator(
        task_id="labelled",
        config="pipelines/substitution.yaml",
        vars={
            "label": "{{ params.label }}",
            "data_dir": os.environ.get("SPARKPIPE_TEST_DATA", ""),
            "output_dir": os.environ.get("SPARKPIPE_TEST_OUTPUT", ""),
        },
    )
