"""The same example DAG against a real Spark standalone cluster (master + worker on 127.0.0.1):
only the ``sparkpipe_default`` connection changes."""

from __future__ import annotations

import urllib.request

import pytest

from tests.provider.support import (
    EXAMPLES,
    QUIET_SPARK,
    SHOP,
    DagRunner,
    SparkCluster,
    read_output,
    revenue_by_customer,
    sparkpipe_connection,
)


def test_basic_example_runs_on_a_standalone_cluster(
    dag_runner: DagRunner, spark_cluster: SparkCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    output = tmp_path_factory.mktemp("standalone-output")
    connection = sparkpipe_connection(
        runtime="local",
        master=spark_cluster.master_url,
        master_ui_url=spark_cluster.webui_url,
        work_dir=str(tmp_path_factory.mktemp("standalone-work")),
        conf={
            **QUIET_SPARK,
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.executor.memory": "512m",
            "spark.cores.max": "1",
        },
    )
    results = dag_runner.run(
        [
            {
                "dag_folder": str(EXAMPLES / "example_sparkpipe_basic.py"),
                "dag_id": "sparkpipe_basic",
                "logical_date": "2024-01-15",
            }
        ],
        env={
            "AIRFLOW_CONN_SPARKPIPE_DEFAULT": connection,
            "SPARKPIPE_EXAMPLE_DATA": str(SHOP),
            "SPARKPIPE_EXAMPLE_OUTPUT": str(output),
        },
    )
    run = results["sparkpipe_basic"]
    assert (run.state, run.tasks) == ("success", {"shop_summary": "success", "report": "success"}), run.log[-5000:]
    metrics = run.xcom("shop_summary")
    # A standalone cluster names its applications app-<timestamp>-<n>; local mode says local-<n>.
    assert metrics["spark_app_id"].startswith("app-")
    assert metrics["runtime"]["master"] == spark_cluster.master_url
    # The task's one link is the master's page of the application, which outlives the run.
    link = run.xcom("shop_summary", "sparkpipe_application_url")
    assert link == f"{spark_cluster.webui_url}/app/?appId={metrics['spark_app_id']}"
    with urllib.request.urlopen(link, timeout=30) as page:
        assert page.status == 200 and metrics["spark_app_id"] in page.read().decode()
    assert run.xcom("report") == {"daily_revenue": 31, "customer_summary": 40, "region_revenue": 4}
    written = read_output(output / "customer_summary", ".csv")
    expected = revenue_by_customer()
    assert sum(float(r["revenue"]) for r in written) == pytest.approx(float(sum(expected.values())))
