"""The operator's ``full_refresh`` (templated) reaches the driver: with Airflow's ``dag.test()`` and the
real spark-submit, a second incremental task reads only what is new and a third, given
``full_refresh: "{{ params.full_refresh }}"``, reads everything and replaces its target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_sparkpipe.exceptions import SparkPipelineConfigError
from airflow_provider_sparkpipe.operators.spark_pipeline import full_refresh_of
from tests.provider.support import QUIET_SPARK, TEST_DAGS, DagRunner, sparkpipe_connection


def test_full_refresh_is_a_templated_argument_reaching_the_driver(dag_runner: DagRunner, tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()
    source = tmp_path / "events" / "part-0.json"
    source.write_text("".join(json.dumps({"id": i, "day": f"2024-01-0{1 + i % 3}"}) + "\n" for i in range(9)))
    work = tmp_path / "work"
    env = {
        "AIRFLOW_CONN_SPARKPIPE_DEFAULT": sparkpipe_connection(
            runtime="local", master="local[1]", work_dir=str(work), conf=QUIET_SPARK
        ),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARKPIPE_TEST_INCREMENTAL": str(tmp_path),
    }
    result = dag_runner.run([{"dag_folder": str(TEST_DAGS), "dag_id": "sparkpipe_test_incremental"}], env=env)
    run = result["sparkpipe_test_incremental"]
    assert run.state == "success", run.log[-5000:]
    figures = {task: run.xcom(task)["sequences"]["daily"] for task in ("first", "second", "refreshed")}
    assert figures["first"]["incremental"]["full_refresh"] is True  # no target yet
    assert figures["second"]["incremental"]["full_refresh"] is False
    assert figures["second"]["incremental"]["watermark_before"] == "2024-01-03"
    assert figures["second"]["incremental"]["rows_read"] == 3  # the latest day only
    assert figures["refreshed"]["incremental"]["full_refresh"] is True
    assert figures["refreshed"]["incremental"]["rows_read"] == 9


def test_full_refresh_text_is_read_as_a_boolean() -> None:
    assert full_refresh_of("True", "t") is True and full_refresh_of(" yes ", "t") is True
    assert full_refresh_of("False", "t") is False and full_refresh_of("", "t") is False
    assert full_refresh_of(None, "t") is False and full_refresh_of(True, "t") is True
    with pytest.raises(SparkPipelineConfigError, match=r"t: full_refresh is 'sometimes': give true or false"):
        full_refresh_of("sometimes", "t")
