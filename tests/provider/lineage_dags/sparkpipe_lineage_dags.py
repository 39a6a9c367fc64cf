"""A DAG whose tasks the lineage test runs with dag.test() and the openlineage provider's file transport:
``good`` writes a parquet path, a PostgreSQL table and a catalog table; ``bad`` writes one path, then
fails a sequence. Paths and the database come from the test's environment."""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator

DATA = os.environ.get("SPARKPIPE_TEST_DATA", "/data")
OUT = os.environ.get("SPARKPIPE_TEST_OUTPUT", "/out")
JDBC_URL = os.environ.get("SPARKPIPE_TEST_JDBC_URL", "jdbc:postgresql://localhost:5432/shop")

ORDERS: dict[str, Any] = {
    "type": "file",
    "path": f"{DATA}/orders.csv",
    "format": "csv",
    "options": {"header": "true"},
    "schema": "order_id BIGINT, customer_id BIGINT, order_date DATE, product STRING, quantity INT, "
    "amount DECIMAL(10,2)",
}

with DAG("sparkpipe_lineage", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    SparkPipelineOperator(
        task_id="good",
        config={
            "app_name": "lineage_good",
            "spark_conf": {"spark.sql.warehouse.dir": f"{OUT}/warehouse"},
            "sources": {"orders": ORDERS},
            "sequences": [
                {
                    "name": "per_customer",
                    "query": "SELECT customer_id, COUNT(*) AS orders, SUM(amount) AS revenue "
                    "FROM orders GROUP BY customer_id",
                    "target": {"type": "file", "path": f"{OUT}/per_customer", "format": "parquet", "mode": "overwrite"},
                    "expectations": [
                        {"name": "has_customer", "condition": "customer_id IS NOT NULL"},
                        {"name": "positive_revenue", "condition": "revenue > 0", "on_fail": "fail"},
                    ],
                },
                {
                    "name": "to_postgres",
                    "query": "SELECT * FROM per_customer",
                    "target": {
                        "type": "jdbc",
                        "url": JDBC_URL,
                        "table": "public.lineage_per_customer",
                        "user": "${env:SPARKPIPE_PG_USER}",
                        "password": "${env:SPARKPIPE_PG_PASSWORD}",
                        "driver": "org.postgresql.Driver",
                        "mode": "overwrite",
                    },
                },
                {
                    "name": "to_table",
                    "query": "SELECT customer_id, orders FROM per_customer",
                    "target": {"type": "table", "table": "default.lineage_orders", "mode": "overwrite"},
                },
            ],
        },
        runtime="sparkpipe_lineage",
        poll_interval=0.2,
    )
    SparkPipelineOperator(
        task_id="bad",
        config={
            "app_name": "lineage_bad",
            "sources": {"orders": ORDERS},
            "sequences": [
                {
                    "name": "products",
                    "query": "SELECT DISTINCT product FROM orders",
                    "target": {"type": "file", "path": f"{OUT}/products", "format": "parquet", "mode": "overwrite"},
                },
                {
                    "name": "broken",
                    "query": "SELECT raise_error('lineage boom') AS x FROM products",
                    "target": {"type": "file", "path": f"{OUT}/broken", "format": "parquet", "mode": "overwrite"},
                },
            ],
        },
        runtime="sparkpipe_lineage",
        poll_interval=0.2,
    )
