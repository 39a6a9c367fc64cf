"""A DAG the OpenLineage connector test runs with dag.test(): one pipeline on the ``sparkpipe_spark_lineage``
connection, whose Spark carries openlineage-spark. Paths come from the test's environment."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator

DATA = os.environ.get("SPARKPIPE_TEST_DATA", "/data")
OUT = os.environ.get("SPARKPIPE_TEST_OUTPUT", "/out")

with DAG("sparkpipe_spark_lineage", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    SparkPipelineOperator(
        task_id="per_product",
        config={
            "app_name": "spark_lineage",
            "sources": {
                "orders": {"type": "file", "path": f"{DATA}/orders.csv", "format": "csv", "options": {"header": True}}
            },
            "sequences": [
                {
                    "name": "per_product",
                    "query": "SELECT product, count(*) AS orders FROM orders GROUP BY product",
                    "target": {"type": "parquet", "path": f"{OUT}/per_product"},
                }
            ],
        },
        runtime="sparkpipe_spark_lineage",
        poll_interval=0.2,
    )
