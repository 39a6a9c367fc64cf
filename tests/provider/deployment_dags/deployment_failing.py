"""A DAG the deployment test triggers to look at a failed run in the UI: the shop's orders on the
``sparkpipe_default`` runtime, one sequence naming a column that does not exist (the most common error),
one reading it (skipped), one whose Spark task fails (a Java stack trace in Spark's log), one that succeeds."""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator

SHOP = Path(__file__).resolve().parents[3] / "dags_examples" / "data" / "shop"
OUTPUT = os.environ.get("SPARKPIPE_EXAMPLE_OUTPUT", "/tmp/sparkpipe-examples")
CONFIG = {
    "app_name": "orders_report",
    "sources": {
        "orders": {"type": "file", "path": str(SHOP / "orders.csv"), "format": "csv", "options": {"header": True}}
    },
    "sequences": [
        {
            "name": "order_count",
            "query": "SELECT COUNT(*) AS orders FROM orders",
            "target": {"type": "json", "path": f"{OUTPUT}/order_count"},
        },
        {
            "name": "revenue",
            "query": "SELECT sum(amout) AS revenue FROM orders",
            "target": {"type": "json", "path": f"{OUTPUT}/revenue"},
        },
        {
            "name": "checked_amounts",
            "query": "SELECT raise_error('an order has a negative amount') AS amount FROM orders",
            "target": {"type": "json", "path": f"{OUTPUT}/checked_amounts"},
        },
        {
            "name": "revenue_report",
            "query": "SELECT * FROM revenue",
            "target": {"type": "json", "path": f"{OUTPUT}/revenue_report"},
        },
    ],
}

with DAG(
    "deployment_failing",
    description="A pipeline with a misspelt column: what a failed run shows",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["sparkpipe", "deployment-test"],
):
    SparkPipelineOperator(task_id="orders_report", config=CONFIG)
