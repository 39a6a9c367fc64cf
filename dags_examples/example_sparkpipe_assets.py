"""Chaining on Assets: this DAG runs whenever ``sparkpipe_basic`` rewrites the customer summary.

``SparkPipelineOperator`` declares the config's targets as outlets, so the ``shop_summary`` task of
``sparkpipe_basic`` updates ``file://<output_dir>/customer_summary``; scheduling on that Asset needs no
sensor and no cross-DAG dependency.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Asset, dag

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator

OUTPUT_DIR = os.environ.get("SPARKPIPE_EXAMPLE_OUTPUT", "/tmp/sparkpipe-examples")
CUSTOMER_SUMMARY = Asset(f"file://{OUTPUT_DIR}/customer_summary")


@dag(
    dag_id="sparkpipe_region_report",
    description="Runs when sparkpipe_basic updates the customer_summary Asset: the best customers per region.",
    schedule=[CUSTOMER_SUMMARY],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["sparkpipe", "example"],
)
def sparkpipe_region_report() -> None:
    SparkPipelineOperator(
        task_id="top_customers",
        config="pipelines/region_report.yaml",
        vars={"output_dir": OUTPUT_DIR},
        runtime="sparkpipe_default",
    )


sparkpipe_region_report()
