"""OpenLineage from the Spark application itself: with openlineage-spark on the driver, the events Spark
emits (its file transport) name the Airflow task the operator handed over as their parent, and the
task's DAG run as their root, in a real dag.test() run on local Spark."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.provider.conftest import (  # the provider tests' Airflow: a migrated metadata database, dag.test()
    _remove_airflow_home,  # noqa: F401 - fixture
    airflow_home,  # noqa: F401 - fixture
    dag_runner,  # noqa: F401 - fixture
)
from tests.provider.support import SHOP, DagRunner, sparkpipe_connection

from .jars import spark_conf

DAGS = Path(__file__).resolve().parent / "lineage_dags"
LISTENER = "io.openlineage.spark.agent.OpenLineageSparkListener"


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def test_the_spark_applications_events_carry_the_task_as_their_parent(
    dag_runner: DagRunner,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    airflow_events, spark_events = tmp_path / "airflow.jsonl", tmp_path / "spark.jsonl"
    bundles = json.loads(os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    bundles.append(
        {
            "name": "connector-lineage-dags",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(DAGS)},
        }
    )
    conf = {
        **spark_conf("openlineage"),
        "spark.extraListeners": LISTENER,
        "spark.openlineage.transport.type": "file",
        "spark.openlineage.transport.location": str(spark_events),
        "spark.sql.shuffle.partitions": "2",
    }
    env = {
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(airflow_events), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "sparkpipe-tests",
        "AIRFLOW_CONN_SPARKPIPE_SPARK_LINEAGE": sparkpipe_connection(
            runtime="local", master="local[1]", work_dir=str(tmp_path / "work"), conf=conf
        ),
        "SPARKPIPE_TEST_DATA": str(SHOP),
        "SPARKPIPE_TEST_OUTPUT": str(tmp_path / "out"),
    }
    result = dag_runner.run([{"dag_folder": str(DAGS), "dag_id": "sparkpipe_spark_lineage"}], env)
    run = result["sparkpipe_spark_lineage"]
    assert run.tasks.get("per_product") == "success", run.log[-5000:]

    # The task's run, as the operator's own events name it
    task = [e for e in read_events(airflow_events) if e["job"]["name"] == "sparkpipe_spark_lineage.per_product"]
    assert {e["eventType"] for e in task} >= {"START", "COMPLETE"}, task
    task_run = task[0]["run"]["runId"]
    dag_run = task[0]["run"]["facets"]["parent"]["run"]["runId"]

    # Spark's events: the application's own run has the task as parent; every event has the DAG run as root
    spark = read_events(spark_events)
    application = [e for e in spark if e["job"]["name"] == "spark_lineage"]
    assert {e["eventType"] for e in application} >= {"START", "COMPLETE"}, [e["job"]["name"] for e in spark]
    for event in application:
        parent = event["run"]["facets"]["parent"]
        assert parent["run"]["runId"] == task_run
        assert parent["job"] == {"namespace": "sparkpipe-tests", "name": "sparkpipe_spark_lineage.per_product"}
    app_runs = {e["run"]["runId"] for e in application}
    jobs = [e for e in spark if e["job"]["name"] != "spark_lineage"]
    assert jobs and {e["run"]["facets"]["parent"]["run"]["runId"] for e in jobs} == app_runs
    assert {e["run"]["facets"]["parent"]["root"]["run"]["runId"] for e in spark} == {dag_run}
    # and the Spark jobs report what they read
    assert any(i["name"] == f"{SHOP}/orders.csv" for e in jobs for i in e.get("inputs", []))
