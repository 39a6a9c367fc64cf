"""A DAG the provider tests run with dag.test(): a pipeline whose first try fails in its second sequence,
retried once, three times: resuming (the default), with ``resume=False`` and with ``full_refresh``.

The first sequence appends the events to a parquet target; the second reads it and fails on the task's
first try (its query asserts ``${attempt} > 1``, ``attempt`` being ``{{ ti.try_number }}``). Each task
has a folder of its own under the one the test's environment names.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_provider_sparkpipe.operators.spark_pipeline import SparkPipelineOperator

FOLDER = os.environ.get("SPARKPIPE_TEST_RESUME", "/tmp/sparkpipe-resume")


def config(task: str) -> dict[str, Any]:
    return {
        "app_name": f"resume_{task}",
        "vars": {"attempt": "1"},
        "sources": {"events": {"type": "file", "format": "json", "path": f"{FOLDER}/events/", "schema": "id INT"}},
        "sequences": [
            {
                "name": "appended",
                "query": "SELECT id FROM events",
                "target": {"type": "parquet", "path": f"{FOLDER}/{task}/appended", "mode": "append"},
            },
            {
                "name": "checked",
                "query": "SELECT id, assert_true(${attempt} > 1, 'the first try fails here') AS ok FROM appended",
                "target": {"type": "parquet", "path": f"{FOLDER}/{task}/checked"},
            },
        ],
    }


with DAG("sparkpipe_test_resume", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    retried: dict[str, Any] = {
        "retries": 1,
        "retry_delay": datetime.timedelta(0),
        "vars": {"attempt": "{{ ti.try_number }}"},
    }
    resumed = SparkPipelineOperator(task_id="resumed", config=config("resumed"), **retried)
    rerun = SparkPipelineOperator(task_id="rerun", config=config("rerun"), resume="{{ 'false' }}", **retried)
    refreshed = SparkPipelineOperator(task_id="refreshed", config=config("refreshed"), full_refresh=True, **retried)
    resumed >> rerun >> refreshed
