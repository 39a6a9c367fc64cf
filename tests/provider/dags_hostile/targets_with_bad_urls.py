"""DAGs whose targets carry credentials or URLs no Asset can hold: every DAG of the file must still load,
with no credential in any outlet. (A JDBC URL with a bad port is a config error of its own, with its
path and the port: tests/test_validation.py.)"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator

START = pendulum.datetime(2024, 1, 1, tz="UTC")


def pipeline(targets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "app_name": "hostile",
        "sources": {"events": {"type": "file", "format": "csv", "path": "/data/events.csv", "alias": "events"}},
        "sequences": [{"name": name, "query": "SELECT * FROM events", "target": t} for name, t in targets.items()],
    }


def jdbc(url: str, table: str = "out") -> dict[str, Any]:
    return {"type": "jdbc", "url": url, "table": table}


with DAG("hostile_credentials", schedule=None, start_date=START):
    SparkPipelineOperator(
        task_id="write",
        config=pipeline(
            {
                "mysql": jdbc("jdbc:mysql://app:Hunter2mysql@db:3306/shop"),
                "sqlserver": jdbc("jdbc:sqlserver://db:1433;databaseName=shop;user=sa;password=Hunter2mssql"),
                "query": jdbc("jdbc:postgresql://db:5432/shop?user=app&password=Hunter2query", "q"),
                "oracle": jdbc("jdbc:oracle:thin:scott/Hunter2oracle@//db:1521/orcl"),
                "userinfo_pg": jdbc("jdbc:postgresql://app:Hunter2pg@db:5432/shop", "u"),
                "s3_keys": {"type": "parquet", "path": "s3a://AKIAEXAMPLE:Hunter2s3@bucket/out"},
            }
        ),
    )

with DAG("hostile_neighbour", schedule=None, start_date=START):
    SparkPipelineOperator(task_id="write", config=pipeline({"good": {"type": "parquet", "path": "/data/out/n"}}))
