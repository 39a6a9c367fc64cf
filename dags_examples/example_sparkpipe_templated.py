"""Templated dates: a daily run aggregates the 7 days up to its logical date.

``vars={"run_date": "{{ ds }}"}`` feeds ``${run_date}`` in the SQL, and the config file itself is a
Jinja template (``{{ macros.ds_add(ds, -6) }}`` for the window start), rendered before it is parsed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import dag

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator

DATA_DIR = os.environ.get("SPARKPIPE_EXAMPLE_DATA", str(Path(__file__).resolve().parent / "data" / "shop"))
OUTPUT_DIR = os.environ.get("SPARKPIPE_EXAMPLE_OUTPUT", "/tmp/sparkpipe-examples")


@dag(
    dag_id="sparkpipe_templated",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 7, tz="UTC"),
    end_date=pendulum.datetime(2024, 1, 31, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["sparkpipe", "example"],
)
def sparkpipe_templated() -> None:
    SparkPipelineOperator(
        task_id="product_sales_7d",
        config="pipelines/shop_daily.yaml",
        vars={"data_dir": DATA_DIR, "output_dir": OUTPUT_DIR, "run_date": "{{ ds }}"},
        runtime="sparkpipe_default",
    )


sparkpipe_templated()
