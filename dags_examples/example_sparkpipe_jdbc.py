"""JDBC to PostgreSQL: the customer revenue table is written to the ``example-postgres`` database.

The database user and password reach the Spark driver as environment variables (``${env:...}`` in the
config); the PostgreSQL JDBC driver jar is set on the ``sparkpipe_default`` connection (``spark.jars``)
in docker-compose.yaml.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import dag

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator

DATA_DIR = os.environ.get("SPARKPIPE_EXAMPLE_DATA", str(Path(__file__).resolve().parent / "data" / "shop"))
JDBC_URL = os.environ.get("SPARKPIPE_EXAMPLE_JDBC_URL", "jdbc:postgresql://example-postgres:5432/shop")


@dag(
    dag_id="sparkpipe_jdbc",
    description="Writes the customer revenue to a PostgreSQL table over JDBC (credentials as ${env:...}).",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["sparkpipe", "example"],
)
def sparkpipe_jdbc() -> None:
    SparkPipelineOperator(
        task_id="customer_revenue_to_postgres",
        config="pipelines/shop_to_postgres.yaml",
        vars={"data_dir": DATA_DIR, "jdbc_url": JDBC_URL},
        runtime="sparkpipe_default",
    )


sparkpipe_jdbc()
