"""A config given as a dict nested 3,000 levels deep: an import error saying so, not a RecursionError."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator

deep: dict[str, Any] = {}
level = deep
for _ in range(3000):
    level["x"] = {}
    level = level["x"]

with DAG("hostile_deep_config", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    SparkPipelineOperator(task_id="deep", config={"app_name": "deep", "sources": deep, "sequences": []})
