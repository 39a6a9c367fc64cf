"""End to end on local Spark: the example DAGs and the failure cases run with Airflow's ``dag.test()``
against a real metadata database, each task submitting the bundled driver with the real spark-submit."""

from __future__ import annotations

import json
import re
import secrets
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from tests.provider.local.log_records import records
from tests.provider.support import (
    EXAMPLES,
    QUIET_SPARK,
    SHOP,
    TEST_DAGS,
    DagRunner,
    DagRunResult,
    read_csv,
    read_output,
    revenue_by_customer,
    sparkpipe_connection,
)
from tests.support import POSTGRES_JAR, Postgres

LOGICAL_DATE = "2024-01-15"


def _tasks(logger: str | None) -> bool:
    return logger is not None and logger.startswith("airflow.task.")


JDBC_SECRET = "pw-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def runs(
    dag_runner: DagRunner, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, DagRunResult], Path, Path]:
    """One process running every DAG of this module in turn (Airflow starts once)."""
    output = tmp_path_factory.mktemp("local-output")
    work_dir = tmp_path_factory.mktemp("local-work")
    # The JDBC example logs in as a role of its own whose password is known only to this fixture,
    # so that every output of the run can be searched for it.
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS public.customer_revenue")
        conn.execute("DROP ROLE IF EXISTS shop_writer")
        conn.execute(f"CREATE ROLE shop_writer LOGIN PASSWORD '{JDBC_SECRET}'")
        conn.execute("GRANT CREATE, USAGE ON SCHEMA public TO shop_writer")
    connection = sparkpipe_connection(
        runtime="local",
        master="local[1]",
        work_dir=str(work_dir),
        conf={**QUIET_SPARK, "spark.jars": POSTGRES_JAR},
    )
    env = {
        "AIRFLOW_CONN_SPARKPIPE_DEFAULT": connection,
        "SPARKPIPE_EXAMPLE_OUTPUT": str(output),
        "SPARKPIPE_EXAMPLE_JDBC_URL": postgres.jdbc_url,
        "AIRFLOW_CONN_SHOP_PG": f"postgres://shop_writer:{JDBC_SECRET}@{postgres.host}:{postgres.port}/{postgres.database}",
        "SPARKPIPE_PG_USER": "shop_writer",
        "SPARKPIPE_PG_PASSWORD": JDBC_SECRET,
        "SPARKPIPE_TEST_DATA": str(SHOP),
        "SPARKPIPE_TEST_OUTPUT": str(output / "tests"),
        # This machine's name resolves to a loopback address, which Spark rightly warns about.
        "SPARK_LOCAL_IP": "127.0.0.1",
    }

    def example(name: str) -> str:
        return str(EXAMPLES / f"example_sparkpipe_{name}.py")

    # The examples run as a UI trigger with its defaults may run them: without a logical date (Airflow 3
    # allows it), the templated one also with a logical date and its run_date param cleared.
    results = dag_runner.run(
        [
            {"dag_folder": example("basic"), "dag_id": "sparkpipe_basic", "logical_date": None},
            {"dag_folder": example("assets"), "dag_id": "sparkpipe_region_report", "logical_date": None},
            {"dag_folder": example("templated"), "dag_id": "sparkpipe_templated", "logical_date": None},
            {
                "name": "templated_on_its_logical_date",
                "dag_folder": example("templated"),
                "dag_id": "sparkpipe_templated",
                "logical_date": LOGICAL_DATE,
                "run_conf": {"run_date": None},
            },
            {"dag_folder": example("jdbc"), "dag_id": "sparkpipe_jdbc", "logical_date": None},
            {"dag_folder": str(TEST_DAGS), "dag_id": "sparkpipe_test_failing", "logical_date": LOGICAL_DATE},
            {"dag_folder": str(TEST_DAGS), "dag_id": "sparkpipe_test_bad_render", "logical_date": LOGICAL_DATE},
            {"dag_folder": str(TEST_DAGS), "dag_id": "sparkpipe_test_needs_logical_date", "logical_date": None},
            {"dag_folder": str(TEST_DAGS), "dag_id": "sparkpipe_test_connection", "logical_date": LOGICAL_DATE},
            {"dag_folder": str(TEST_DAGS), "dag_id": "sparkpipe_test_expectations", "logical_date": LOGICAL_DATE},
        ],
        env=env,
    )
    return results, output, work_dir


def test_basic_example_writes_its_targets_and_hands_metrics_downstream(runs) -> None:
    results, output, _ = runs
    run = results["sparkpipe_basic"]
    assert (run.state, run.tasks) == ("success", {"shop_summary": "success", "report": "success"}), run.log[-5000:]

    metrics = run.xcom("shop_summary")
    assert metrics["app_name"] == "shop_summary"
    assert metrics["status"] == "succeeded"
    assert metrics["spark_app_id"].startswith("local-")
    assert metrics["runtime"]["kind"] == "local" and metrics["runtime"]["master"] == "local[1]"
    assert {name: (s["status"], s["rows_written"], s["error"]) for name, s in metrics["sequences"].items()} == {
        "daily_revenue": ("succeeded", 31, None),
        "customer_summary": ("succeeded", 40, None),
        "region_revenue": ("succeeded", 4, None),
    }
    assert metrics["sequences"]["customer_summary"]["target"] == {
        "type": "csv",
        "uri": f"{output}/customer_summary",
    }
    # One link, and nothing stored for it here: a local master's Spark UI (disabled here) ends with the run.
    assert {k for k in run.xcoms if k.startswith("shop_summary.")} == {
        "shop_summary.return_value",
        "shop_summary.sparkpipe_application_url",
    }
    assert run.xcom("shop_summary", "sparkpipe_application_url") == ""
    # The downstream @task received the metrics document through XCom.
    assert run.xcom("report") == {"daily_revenue": 31, "customer_summary": 40, "region_revenue": 4}

    expected = revenue_by_customer()
    written = read_output(output / "customer_summary", ".csv")
    assert {int(r["customer_id"]): Decimal(r["revenue"]) for r in written} == {
        cid: expected.get(cid, Decimal(0)) for cid in range(1, 41)
    }
    regions = read_output(output / "region_revenue", ".json")
    assert sum(Decimal(str(r["revenue"])) for r in regions) == sum(expected.values())
    assert "Pipeline 'shop_summary' succeeded" in run.log
    assert "sparkpipe: sequence customer_summary succeeded, 40 rows" in run.log  # the driver's own log line


def test_a_clean_run_logs_its_plan_first_no_warning_and_one_summary(runs) -> None:
    results, output, _ = runs
    task = [r for r in records(results["sparkpipe_basic"].log) if r.logger == "spark" or _tasks(r.logger)]
    # The plan, where the task log starts: the stages, what each sequence reads and writes.
    first = task[0]
    assert first.logger is not None and first.logger.endswith("SparkPipelineOperator"), task[:3]
    assert first.message.startswith("Pipeline 'shop_summary' on LocalSpark(master='local[1]'"), first.message
    assert "stage 1 (2 sequences may run at once)" in first.message
    assert f"region_revenue    reads customer_summary -> json {output}/region_revenue" in first.message
    # No warning: sparkpipe's FAIR pools are declared, JVM notices are left out.
    assert [r for r in task if r.level not in ("info", "debug")] == []
    # One summary, the task's (with targets); the driver's own is left at debug level.
    assert len([r for r in task if r.message.startswith("Pipeline 'shop_summary' succeeded in")]) == 1
    assert not [r for r in task if r.message.startswith("sparkpipe: shop_summary succeeded in")]


def test_the_returned_metrics_start_with_each_sequences_outcome(runs) -> None:
    results, output, _ = runs
    metrics = results["sparkpipe_basic"].xcom("shop_summary")
    assert list(metrics)[:2] == ["status", "outcome"]
    outcome = metrics["outcome"]["customer_summary"]
    shown = (outcome["status"], outcome["rows"], outcome["target"])
    assert shown == ("succeeded", 40, f"csv {output}/customer_summary")
    assert isinstance(outcome["duration_s"], float)
    # The whole document follows, the output schemas kept apart from the per-sequence figures.
    assert "schema" not in metrics["sequences"]["customer_summary"]
    assert metrics["output_schemas"]["region_revenue"][0] == {"name": "region", "type": "string", "nullable": True}


def test_asset_consumer_reads_what_the_producer_wrote(runs) -> None:
    results, output, _ = runs
    run = results["sparkpipe_region_report"]
    assert run.state == "success", run.log[-5000:]
    customers = {int(c["customer_id"]): c for c in read_csv(SHOP / "customers.csv")}
    revenue = revenue_by_customer()
    best: dict[str, list[tuple[Decimal, str]]] = defaultdict(list)
    for cid, c in customers.items():
        best[c["region"]].append((revenue.get(cid, Decimal(0)), c["name"]))
    expected = {
        (region, name) for region, ranked in best.items() for _, name in sorted(ranked, key=lambda x: (-x[0], x[1]))[:3]
    }
    written = read_output(output / "top_customers", ".json")
    assert {(r["region"], r["name"]) for r in written} == expected


def _check_product_sales(output: Path, run: DagRunResult, run_date: str, window_start: str) -> None:
    assert run.state == "success", run.log[-5000:]
    written = read_output(output / "product_sales_7d" / f"run_date={run_date}", ".csv")
    assert {(r["run_date"], r["window_start"]) for r in written} == {(run_date, window_start)}
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for order in read_csv(SHOP / "orders.csv"):
        if window_start <= order["order_date"] <= run_date:
            expected[order["product"]] += Decimal(order["amount"])
    assert expected  # the window holds orders: the run did real work
    assert {r["product"]: Decimal(r["revenue"]) for r in written} == expected
    metrics = run.xcom("product_sales_7d")["sequences"]["product_sales_7d"]
    assert metrics["target"]["uri"] == f"{output}/product_sales_7d/run_date={run_date}"
    assert metrics["rows_written"] == len(written)


def test_templated_example_with_the_ui_defaults_aggregates_the_last_week_of_the_data(runs) -> None:
    """No logical date, the run_date param at its default: the last 7 days of the example data."""
    results, output, _ = runs
    _check_product_sales(output, results["sparkpipe_templated"], "2024-01-31", "2024-01-25")


def test_templated_example_without_the_param_uses_the_logical_date(runs) -> None:
    results, output, _ = runs
    _check_product_sales(output, results["templated_on_its_logical_date"], LOGICAL_DATE, "2024-01-09")


def test_an_undefined_template_name_fails_naming_file_line_and_name(runs) -> None:
    results, _, _ = runs
    run = results["sparkpipe_test_needs_logical_date"]
    assert (run.state, run.tasks) == ("failed", {"needs_logical_date": "failed"})
    yaml = TEST_DAGS / "pipelines" / "needs_logical_date.yaml"
    assert f"template error in {yaml}:10: 'ds' is undefined" in run.log
    assert "This run has no logical date" in run.log
    assert "Renders only in a run that has a logical date" not in run.log  # the file is not printed
    assert "spark-submit started" not in run.log


def test_jdbc_example_writes_to_postgresql(runs, postgres: Postgres) -> None:
    results, _, _ = runs
    run = results["sparkpipe_jdbc"]
    # The user and password reached the driver only through its environment (${env:...}).
    assert run.state == "success", run.log[-5000:]
    with postgres.connect() as conn:
        rows = conn.execute("SELECT customer_id, revenue FROM public.customer_revenue").fetchall()
    assert {int(cid): Decimal(rev) for cid, rev in rows} == revenue_by_customer()
    assert run.xcom("customer_revenue_to_postgres")["sequences"]["customer_revenue"]["rows_written"] == len(rows)
    # The summary names the table written, not only the database.
    assert re.search(
        rf"  customer_revenue: succeeded, 40 rows in \d+\.\d s -> jdbc {re.escape(postgres.jdbc_url)} "
        r"public\.customer_revenue \[",
        run.log,
    ), run.log[-3000:]


def test_jdbc_credentials_from_an_airflow_connection(runs, postgres: Postgres) -> None:
    results, _, _ = runs
    run = results["sparkpipe_test_connection"]
    assert run.state == "success", run.log[-5000:]
    with postgres.connect() as conn:
        rows = conn.execute("SELECT count(*), sum(orders) FROM public.product_totals").fetchone()
    assert rows is not None and rows[1] == len(read_csv(SHOP / "orders.csv"))
    metrics = run.xcom("to_postgres")["sequences"]["product_totals"]
    assert metrics["rows_written"] == rows[0]
    assert metrics["target"]["uri"] == postgres.jdbc_url  # the URL built from the connection


def test_the_database_password_appears_in_no_output(runs, airflow_home: Path) -> None:
    """The secret reached the driver by reference only: not in task logs, XComs, staged configs or files."""
    results, output, work_dir = runs
    assert results["sparkpipe_jdbc"].state == results["sparkpipe_test_connection"].state == "success"
    places = {
        "dag.test output": "\n".join(r.log for r in results.values()),
        "xcoms": json.dumps([r.xcoms for r in results.values()], default=str),
    }
    for folder in (work_dir, output, airflow_home / "logs"):
        for path in folder.rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                places[str(path)] = path.read_bytes().decode("utf-8", "replace")
    assert len(places) > 2
    assert [name for name, text in places.items() if JDBC_SECRET in text] == []


def test_a_failing_sequence_fails_the_task_with_its_error(runs) -> None:
    results, _, work_dir = runs
    run = results["sparkpipe_test_failing"]
    assert (run.state, run.tasks) == ("failed", {"failing": "failed"})
    # A failed run's staged files stay for inspection; successful runs leave nothing behind.
    (staged,) = work_dir.glob("runs/sparkpipe_test_failing__*/config.json")
    assert json.loads(staged.read_text())["app_name"] == "failing_pipeline"
    assert not list(work_dir.glob("runs/sparkpipe_basic__*"))
    assert "SparkPipelineFailed: pipeline 'failing_pipeline' failed: sequence 'checked_revenue' failed:" in run.log
    assert "negative revenue found in orders" in run.log
    assert "skipped: after_check" in run.log
    metrics = run.xcom("failing", key="metrics")
    assert metrics["status"] == "failed"
    assert {name: s["status"] for name, s in metrics["sequences"].items()} == {
        "order_count": "succeeded",
        "checked_revenue": "failed",
        "after_check": "skipped",
        "misspelt_revenue": "failed",
    }
    assert "negative revenue found in orders" in metrics["sequences"]["checked_revenue"]["error"]


def test_a_failing_expectation_fails_the_task_with_its_rule_and_counts(runs) -> None:
    results, output, _ = runs
    run = results["sparkpipe_test_expectations"]
    assert (run.state, run.tasks) == ("failed", {"checked": "failed"})
    message = (
        "sequence big_orders: expectation at_most_20 (amount <= 20) failed: 296 of 600 rows failed it, "
        "more than max_failed 10"
    )
    assert f"SparkPipelineFailed: pipeline 'expectations_pipeline' failed: sequence 'big_orders' failed: {message}" in (
        run.log
    )
    # the log summary lists each rule's counts
    assert "cheap: succeeded, 544 rows" in run.log
    assert "; rules: few_items 104 failed (warn), under_100 56 failed (drop)" in run.log
    assert "; rules: at_most_20 296 failed (fail, FAILED)" in run.log
    metrics = run.xcom("checked", key="metrics")
    cheap = metrics["sequences"]["cheap"]
    assert cheap["expectations"]["under_100"] == {"failed_rows": 56, "action": "drop", "passed": False}
    assert (cheap["rows_written"], cheap["rows_dropped"], cheap["rows_quarantined"]) == (544, 56, 0)
    assert metrics["sequences"]["big_orders"]["expectations"]["at_most_20"]["failed_rows"] == 296
    assert not (output / "tests" / "big_orders").exists()
    assert len(read_output(output / "tests" / "cheap", ".json")) == 544


def test_a_config_broken_by_rendering_fails_before_spark_starts(runs) -> None:
    results, _, _ = runs
    run = results["sparkpipe_test_bad_render"]
    assert (run.state, run.tasks) == ("failed", {"bad_render": "failed"})
    yaml = TEST_DAGS / "pipelines" / "bad_mode.yaml"
    assert f"{yaml}:14: sequences[0].target.mode: 'upsert' is not one of overwrite, append, error, ignore" in run.log
    assert "spark-submit started" not in run.log
