"""Run the seed-style shop pipeline on the ``sparkpipe_default`` runtime and report its metrics.

The pipeline's targets become the task's outlets (Assets such as
``file:///tmp/sparkpipe-examples/customer_summary``): ``example_sparkpipe_assets.py`` is scheduled on one.
Point the ``sparkpipe_default`` connection at ``local[*]`` or at a standalone cluster; the DAG stays the same.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import dag, task

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator

DATA_DIR = os.environ.get("SPARKPIPE_EXAMPLE_DATA", str(Path(__file__).resolve().parent / "data" / "shop"))
OUTPUT_DIR = os.environ.get("SPARKPIPE_EXAMPLE_OUTPUT", "/tmp/sparkpipe-examples")


@dag(
    dag_id="sparkpipe_basic",
    description="The shop summary pipeline on the sparkpipe_default runtime; a downstream task reads its metrics.",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["sparkpipe", "example"],
)
def sparkpipe_basic() -> None:
    summary = SparkPipelineOperator(
        task_id="shop_summary",
        config="pipelines/shop_summary.yaml",
        vars={"data_dir": DATA_DIR, "output_dir": OUTPUT_DIR},
        runtime="sparkpipe_default",
    )

    @task
    def report(metrics: dict) -> dict[str, int]:
        """The metrics document arrives through XCom: one entry per sequence."""
        rows = {name: seq["rows_written"] for name, seq in metrics["sequences"].items()}
        for name, count in rows.items():
            print(f"{name}: {count} rows written to {metrics['sequences'][name]['target']}")
        return rows

    report(summary.output)


sparkpipe_basic()
