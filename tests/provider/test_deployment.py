"""The example DAGs in a real Airflow deployment (api-server, scheduler, dag-processor and triggerer as separate
processes, LocalExecutor, PostgreSQL metadata database), driven through the REST API as a user or CI job does."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.provider.conftest import EXAMPLES, read_output, revenue_by_customer
from tests.provider.deployment import AirflowDeployment, airflow_deployment

__all__ = ["airflow_deployment"]

BASIC = "sparkpipe_basic"
K8S, K8S_TASK = "deployment_k8s", "orders_summary"
KILLED, KILLED_TASK = "deployment_k8s_killed", "runs_until_killed"
TRIGGER_CLASSPATH = "airflow_provider_sparkpipe.triggers.spark_pipeline.SparkPipelineTrigger"


@dataclass(frozen=True)
class Runs:
    """The run id of each DAG the module triggered."""

    basic: str
    k8s: str
    killed: str


@pytest.fixture(scope="module")
def runs(airflow_deployment: AirflowDeployment) -> Runs:
    """Trigger every run of the module at once (each test waits for its own), so that they share the wait."""
    deployment = airflow_deployment
    deployment.wait_for_dags({BASIC, K8S, KILLED})
    # The fake keeps the first application RUNNING until its test has seen the task deferred, and the
    # second one running until the task is marked failed.
    deployment.apiserver.held.add(K8S_TASK)
    deployment.apiserver.outcomes[KILLED_TASK] = None
    return Runs(basic=deployment.trigger(BASIC), k8s=deployment.trigger(K8S), killed=deployment.trigger(KILLED))


def test_every_example_dag_file_is_imported_by_the_dag_processor(airflow_deployment: AirflowDeployment) -> None:
    airflow_deployment.wait_for_dags({BASIC})
    errors = airflow_deployment.api("GET", "importErrors", limit=100)["import_errors"]
    assert [(e["filename"], e["stack_trace"]) for e in errors] == []
    dags = airflow_deployment.api("GET", "dags", limit=100)["dags"]
    files = {d["relative_fileloc"] for d in dags if d["bundle_name"] == "examples"}
    assert files == {p.name for p in EXAMPLES.glob("*.py")}
    # The task's documentation the UI shows is the pipeline's plan as a Markdown table.
    task = airflow_deployment.api("GET", f"dags/{BASIC}/tasks/shop_summary")
    assert task["doc_md"].startswith("**"), task["doc_md"]
    assert "| 1 | `daily_revenue` |" in task["doc_md"], task["doc_md"]


def _rows_read_back(target: dict[str, Any]) -> int:
    directory = Path(target["uri"])
    if target["type"] == "parquet":
        assert (directory / "_SUCCESS").exists(), f"no _SUCCESS marker in {directory}"
        return int(pq.read_table(directory).num_rows)
    return len(read_output(directory, {"csv": ".csv", "json": ".json"}[target["type"]]))


def test_the_basic_example_succeeds_and_its_xcom_matches_the_written_files(
    airflow_deployment: AirflowDeployment, runs: Runs
) -> None:
    deployment = airflow_deployment
    state = deployment.wait_for_run(BASIC, runs.basic)
    assert state == "success", deployment.log_tails()

    metrics = deployment.xcom(BASIC, runs.basic, "shop_summary")
    assert metrics["status"] == "succeeded" and metrics["runtime"]["kind"] == "local"
    sequences = metrics["sequences"]
    assert set(sequences) == {"daily_revenue", "customer_summary", "region_revenue"}
    for name, sequence in sequences.items():
        assert sequence["status"] == "succeeded", (name, sequence)
        assert Path(sequence["target"]["uri"]).parent == deployment.output_dir
        assert sequence["rows_written"] == _rows_read_back(sequence["target"]), name
    # The numbers, not only the counts: one row per customer with the revenue of the source orders.
    expected = revenue_by_customer()
    written = read_output(Path(sequences["customer_summary"]["target"]["uri"]), ".csv")
    assert {int(r["customer_id"]): Decimal(r["revenue"]) for r in written} == {
        cid: expected.get(cid, Decimal(0)) for cid in range(1, 41)
    }
    # The downstream task got the metrics document through XCom.
    assert deployment.xcom(BASIC, runs.basic, "report") == {n: s["rows_written"] for n, s in sequences.items()}


def _deferred_in_the_triggerer(deployment: AirflowDeployment, dag_id: str, run_id: str, task_id: str) -> None:
    """Wait until the task is deferred and its trigger runs in the deployment's triggerer, polling the fake."""
    deployment.wait_for_task_state(dag_id, run_id, task_id, "deferred")
    # A triggerer that missed its heartbeats on a busy machine is alive again once it beats.
    jobs = deployment.wait(
        "a live triggerer",
        lambda: deployment.api("GET", "jobs", job_type="TriggererJob", is_alive=True)["jobs"] or None,
        120,
    )
    assert len(jobs) == 1, jobs

    def assigned() -> dict[str, Any] | None:
        trigger = deployment.task_instance(dag_id, run_id, task_id)["trigger"]
        return trigger if trigger and trigger["triggerer_id"] is not None else None

    trigger = deployment.wait(f"the trigger of {dag_id}/{task_id} in the triggerer", assigned, 120)
    assert trigger["classpath"] == TRIGGER_CLASSPATH
    assert trigger["triggerer_id"] == jobs[0]["id"]
    app = deployment.apiserver.application(dag_id)
    assert app is not None, deployment.log_tails()
    name = app["metadata"]["name"]

    def polls() -> int:
        return len(deployment.apiserver.calls("GET", f"/sparkapplications/{name}"))

    # While the task is deferred no worker runs it: the application's reads now come from the trigger.
    seen = polls()
    deployment.wait(f"the triggerer polling {name}", lambda: True if polls() >= seen + 2 else None, 120)
    assert deployment.task_instance(dag_id, run_id, task_id)["state"] == "deferred"


def test_a_deferred_kubernetes_run_waits_in_the_triggerer_and_succeeds(
    airflow_deployment: AirflowDeployment, runs: Runs
) -> None:
    deployment = airflow_deployment
    _deferred_in_the_triggerer(deployment, K8S, runs.k8s, K8S_TASK)

    deployment.apiserver.held.discard(K8S_TASK)  # the driver finishes
    state = deployment.wait_for_run(K8S, runs.k8s)
    assert state == "success", deployment.log_tails()
    ti = deployment.task_instance(K8S, runs.k8s, K8S_TASK)
    assert (ti["state"], ti["try_number"]) == ("success", 1)  # resumed after the deferral, not retried
    metrics = deployment.xcom(K8S, runs.k8s, K8S_TASK)
    assert metrics["status"] == "succeeded" and metrics["runtime"]["kind"] == "kubernetes"
    # The fake's driver writes 10 rows for the first sequence, 20 for the second.
    assert {n: s["rows_written"] for n, s in metrics["sequences"].items()} == {"by_day": 10, "by_week": 20}
    assert deployment.xcom(K8S, runs.k8s, "rows") == 30


def test_marking_a_deferred_run_failed_deletes_its_spark_application(
    airflow_deployment: AirflowDeployment, runs: Runs
) -> None:
    deployment = airflow_deployment
    _deferred_in_the_triggerer(deployment, KILLED, runs.killed, KILLED_TASK)
    app = deployment.apiserver.application(KILLED)
    assert app is not None
    name, uid = app["metadata"]["name"], app["metadata"]["uid"]

    patched = deployment.api(
        "PATCH", f"dags/{KILLED}/dagRuns/{runs.killed}/taskInstances/{KILLED_TASK}", {"new_state": "failed"}
    )
    assert [ti["state"] for ti in patched["task_instances"]] == ["failed"]

    # The triggerer cancels the trigger, whose on_kill deletes the application (with its uid as precondition).
    deployment.wait(
        f"SparkApplication {name} deleted",
        lambda: True if deployment.apiserver.application(KILLED) is None else None,
        120,
    )
    deletes = deployment.apiserver.calls("DELETE", f"/sparkapplications/{name}")
    assert [(r.body or {}).get("preconditions", {}).get("uid") for r in deletes] == [uid]
    assert ("spark-jobs", f"{name}-config") not in deployment.apiserver.config_maps
    assert deployment.wait_for_run(KILLED, runs.killed) == "failed"
    # What the user sees in the task's log: the worker deferred, the triggerer cancelled the run.
    log = deployment.task_log(KILLED, runs.killed, KILLED_TASK)
    assert f"Submitting SparkApplication spark-jobs/{name}" in log
    assert "Trigger cancelled by user action, invoking on_kill" in log
    assert f"Deleting SparkApplication spark-jobs/{name}" in log
    states = {
        ti["task_id"]: ti["state"]
        for ti in deployment.api("GET", f"dags/{KILLED}/dagRuns/{runs.killed}/taskInstances")["task_instances"]
    }
    assert states == {KILLED_TASK: "failed", "rows": "upstream_failed"}
