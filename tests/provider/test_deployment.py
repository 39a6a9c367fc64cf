"""The example DAGs in a real Airflow deployment (api-server, scheduler, dag-processor and triggerer as separate
processes, LocalExecutor, PostgreSQL metadata database), driven through the REST API as a user or CI job does,
and looked at in a browser (Debian's Chromium, headless) as a person does: the screenshots are kept under
build/test-artifacts/deployment/."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.provider.deployment import AIRFLOW, USER, AirflowDeployment, airflow_deployment
from tests.provider.support import EXAMPLES, read_output, revenue_by_customer
from tests.support import REPO

__all__ = ["airflow_deployment"]

BASIC = "sparkpipe_basic"
K8S, K8S_TASK = "deployment_k8s", "orders_summary"
KILLED, KILLED_TASK = "deployment_k8s_killed", "runs_until_killed"
FAILING, FAILING_TASK = "deployment_failing", "orders_report"
BROWSER = Path(__file__).resolve().parent / "browser"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "build" / "test-artifacts" / "deployment"
TRIGGER_CLASSPATH = "airflow_provider_sparkpipe.triggers.spark_pipeline.SparkPipelineTrigger"


@dataclass(frozen=True)
class Runs:
    """The run id of each DAG the module triggered."""

    basic: str
    k8s: str
    killed: str
    failing: str


@pytest.fixture(scope="module")
def runs(airflow_deployment: AirflowDeployment) -> Runs:
    """Trigger every run of the module at once (each test waits for its own), so that they share the wait."""
    deployment = airflow_deployment
    deployment.wait_for_dags({BASIC, K8S, KILLED, FAILING})
    # The fake keeps the first application RUNNING until its test has seen the task deferred, and the
    # second one running until the task is marked failed.
    deployment.apiserver.held.add(K8S_TASK)
    deployment.apiserver.outcomes[KILLED_TASK] = None
    return Runs(
        basic=deployment.trigger(BASIC),
        k8s=deployment.trigger(K8S),
        killed=deployment.trigger(KILLED),
        failing=deployment.trigger(FAILING),
    )


def test_every_example_dag_file_is_imported_by_the_dag_processor(airflow_deployment: AirflowDeployment) -> None:
    airflow_deployment.wait_for_dags({BASIC})
    errors = airflow_deployment.api("GET", "importErrors", limit=100)["import_errors"]
    assert [(e["filename"], e["stack_trace"]) for e in errors] == []
    dags = airflow_deployment.api("GET", "dags", limit=100)["dags"]
    files = {d["relative_fileloc"] for d in dags if d["bundle_name"] == "examples"}
    assert files == {p.name for p in EXAMPLES.glob("*.py")}
    # Each example says what it is for in the DAG list.
    assert [d["dag_id"] for d in dags if d["bundle_name"] == "examples" and not d["description"]] == []
    # The task's documentation the UI shows is the pipeline's plan as a Markdown table.
    task = airflow_deployment.api("GET", f"dags/{BASIC}/tasks/shop_summary")
    assert task["doc_md"].startswith("**"), task["doc_md"]
    assert "**Stage 1**" in task["doc_md"] and "| `daily_revenue` | `orders` |" in task["doc_md"], task["doc_md"]


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
    # The short answer first, as the API serves it from PostgreSQL (whose JSON type orders keys its way).
    assert list(metrics)[:2] == ["status", "outcome"]
    assert list(metrics["outcome"]["daily_revenue"]) == ["rows", "status", "target", "duration_s"]
    assert list(metrics)[-2:] == ["output_schemas", "max_concurrency"]
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


def _log(deployment: AirflowDeployment, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
    """The task's log records as the API serves them to the UI (event, level, logger)."""
    path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1"
    return [e for e in deployment.api("GET", path, full_content=True)["content"] if isinstance(e, dict)]


def test_a_failed_run_says_each_fact_once_or_twice_at_one_level(
    airflow_deployment: AirflowDeployment, runs: Runs
) -> None:
    deployment = airflow_deployment
    assert deployment.wait_for_run(FAILING, runs.failing) == "failed"
    records = _log(deployment, FAILING, runs.failing, FAILING_TASK)
    ours = [r for r in records if r.get("logger") not in ("spark", "task")]
    misspelt = [r for r in ours if "`amout` cannot be resolved" in r["event"]]
    assert 1 <= len(misspelt) <= 2 and {r["level"] for r in misspelt} == {"error"}, misspelt
    skipped = [r for r in ours if "revenue_report" in r["event"] and "skipped" in r["event"]]
    assert 1 <= len(skipped) <= 2 and {r["level"] for r in skipped} == {"warning"}, skipped
    # Spark's own lines: a source of their own, at Spark's level, their stack traces folded.
    spark = [r for r in records if r.get("logger") == "spark"]
    executor = [r for r in spark if r["event"].startswith("Executor: Exception in task")]
    assert executor and {r["level"] for r in executor} == {"error"}
    traced = [r["event"] for r in spark if "\n\tat " in r["event"]]
    assert traced and re.search(r"\n\t\.\.\. \d+ more stack lines$", traced[0]), traced
    assert not [r for r in records if r["event"].lstrip().startswith('{"ts"')]


def test_the_sparkpipe_connection_tests_ok_from_the_api_and_the_cli(airflow_deployment: AirflowDeployment) -> None:
    """The UI's Test button sends port 0 for a connection without one, which Airflow 3.3 refuses ("Bad
    Request", docs/provider.md); the API without that field, and the CLI, test it."""
    deployment = airflow_deployment
    conn = deployment.api("GET", "connections/sparkpipe_default")
    body = {"connection_id": "sparkpipe_default", "conn_type": "sparkpipe", "extra": conn["extra"]}
    tested = deployment.api("POST", "connections/test", body)
    assert tested["status"] is True and "LocalSpark(master='local[1]'" in tested["message"], tested
    done = subprocess.run(
        [str(AIRFLOW), "connections", "test", "sparkpipe_default"],
        capture_output=True,
        text=True,
        env=deployment.env,
        timeout=300,
    )
    assert done.returncode == 0 and "Connection success!" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]


def test_what_a_person_sees_in_the_browser(airflow_deployment: AirflowDeployment, runs: Runs) -> None:
    """Log in, open a failed task's log and a successful one's, its "Spark application" link and its
    documentation, its Rendered Templates, the metrics, the connections and the connection form."""
    deployment = airflow_deployment
    assert CHROMIUM.is_file() and (BROWSER / "node_modules" / "playwright-core").is_dir(), (
        "the browser test needs Debian's chromium and playwright-core: run scripts/bootstrap.sh"
    )
    assert deployment.wait_for_run(BASIC, runs.basic) == "success", deployment.log_tails()
    assert deployment.wait_for_run(FAILING, runs.failing) == "failed", deployment.log_tails()
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    spec = {
        "url": deployment.url,
        "user": USER,
        "password": deployment.password,
        "artifacts": str(ARTIFACTS),
        "chromium": str(CHROMIUM),
        "failed": {"dag": FAILING, "run": runs.failing, "task": FAILING_TASK},
        "succeeded": {"dag": BASIC, "run": runs.basic, "task": "shop_summary"},
        "connection_id": "sparkpipe_default",
        "new_connection_id": "sparkpipe_from_the_form",
    }
    spec_file = ARTIFACTS / "spec.json"
    spec_file.write_text(json.dumps(spec))
    done = subprocess.run(
        ["node", str(BROWSER / "airflow_ui.mjs"), str(spec_file)],
        capture_output=True,
        text=True,
        cwd=BROWSER,
        timeout=900,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("UI_REPORT ")), None)
    assert line is not None, done.stdout[-5000:] + done.stderr[-5000:]
    ui = json.loads(line.removeprefix("UI_REPORT "))
    (ARTIFACTS / "report.json").write_text(json.dumps(ui, indent=2))
    assert "error" not in ui, f"{ui['error']}\n(see {ARTIFACTS}/99-error.png)"

    # The failed task's log: levels as Airflow shows them, Spark's lines a source of their own, no
    # unfolded stack trace, the misspelt column's error said at most twice before the exception.
    failed = ui["failed_log"]["lines"]
    assert "spark" in ui["failed_log"]["sources"]
    said = [line for line in failed if "`amout` cannot be resolved" in line and "Task failed" not in line]
    assert 1 <= len(said) <= 2 and all(" ERROR - " in line for line in said), said
    skipped = [line for line in failed if "revenue_report" in line and "skipped" in line and "Task failed" not in line]
    assert skipped and all(" WARNING - " in line for line in skipped), skipped
    for line in failed:
        assert len(re.findall(r"\n\s*at ", line)) <= 3, f"an unfolded stack trace:\n{line}"
    assert any(re.search(r"\.\.\. \d+ more stack lines", line) for line in failed)
    assert not [line for line in failed if '{"ts"' in line]

    # The successful task's log: the plan first, no warning, the link to the run's page.
    succeeded = ui["succeeded_log"]["lines"]
    assert "Pipeline 'shop_summary' on LocalSpark(" in succeeded[0] and "stage 2" in succeeded[0], succeeded[:2]
    assert not [line for line in succeeded if re.search(r"\] (WARNING|ERROR|CRITICAL) - ", line)]

    # The "Spark application" link opens the run's page on the history server, with its jobs.
    assert deployment.history is not None
    link = ui["link"]
    app_id = deployment.xcom(BASIC, runs.basic, "shop_summary")["spark_app_id"]
    assert link["href"] == f"{deployment.history.url}/history/{app_id}/jobs/"
    assert link["title"] == "shop_summary - Spark Jobs" and "Completed Jobs" in link["text"]

    # The documentation's plan: narrow tables (one per stage), no empty Checks column.
    sources, *stages = ui["documentation"]["tables"]
    assert [row[0] for row in sources] == ["Source", "orders", "customers"]
    assert [stage[0] for stage in stages] == [["Sequence", "Reads", "Writes"]] * 2
    names = [[row[0] for row in stage[1:]] for stage in stages]
    assert names == [["daily_revenue", "customer_summary"], ["region_revenue"]]

    # Rendered Templates: the effective config, its variables substituted.
    rendered = ui["rendered"]["text"]
    assert "The effective config of" in rendered and "${" not in rendered
    assert str(deployment.output_dir / "daily_revenue") in rendered

    # The metrics as the XCom view shows them (its first lines): status, then each sequence's outcome.
    xcom = ui["xcom"]["text"].replace("\xa0", " ").split("return_value", 1)[1]
    assert xcom.index('"status": "succeeded"') < xcom.index('"outcome"') < xcom.index('"rows": 31')

    # Connections: sparkpipe_default is listed; the form is one choice without a "null", and saves no null.
    assert "sparkpipe_default" in ui["connections"]["listed"]
    form = ui["form"]
    assert form["runtime_shown"].startswith("Local or standalone Spark")
    assert "null" not in form["runtime_choices"] and len(form["runtime_choices"]) == 7
    saved = deployment.api("GET", "connections/sparkpipe_from_the_form")
    assert json.loads(saved["extra"]) == {"runtime": "local"}
