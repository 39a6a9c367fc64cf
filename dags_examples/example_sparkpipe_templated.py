"""Templated dates: a run aggregates the 7 days up to its ``run_date``.

The config file is a Jinja template rendered before it is parsed (Airflow's macros and params are
available): ``pipelines/shop_daily.yaml`` takes ``run_date`` from the ``run_date`` param, and when the
param is cleared, from the run's logical date (``ds``) or, for a run triggered without a logical
date, from the day it was triggered. The param's default is the last day of the example data, so a
run triggered from the UI with its defaults writes real rows; on a daily schedule over live data,
default the param to ``None`` and every run takes its own logical date.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import Param, dag

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator

DATA_DIR = os.environ.get("SPARKPIPE_EXAMPLE_DATA", str(Path(__file__).resolve().parent / "data" / "shop"))
OUTPUT_DIR = os.environ.get("SPARKPIPE_EXAMPLE_OUTPUT", "/tmp/sparkpipe-examples")


@dag(
    dag_id="sparkpipe_templated",
    description="A Jinja config file: the product sales of the 7 days up to the run_date param.",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={
        "run_date": Param(
            "2024-01-31",
            type=["null", "string"],
            format="date",
            title="Run date",
            description="The last day of the 7-day window (the example data covers January 2024). "
            "Empty: the run's logical date, or the day it was triggered.",
        )
    },
    tags=["sparkpipe", "example"],
)
def sparkpipe_templated() -> None:
    SparkPipelineOperator(
        task_id="product_sales_7d",
        config="pipelines/shop_daily.yaml",
        vars={"data_dir": DATA_DIR, "output_dir": OUTPUT_DIR},
        runtime="sparkpipe_default",
    )


sparkpipe_templated()
