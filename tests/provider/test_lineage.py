"""OpenLineage: dataset names by the naming spec (no credentials), the operator's facets, the parent job
handed to Spark, and real events of a dag.test() run on local Spark through the openlineage provider's
file transport."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sparkpipe.lineage import dataset_name, dataset_names, names_of, operator_lineage, path_name
from spark_job.config.validation import load_config
from tests.provider.support import SHOP, DagRunner, DagRunResult, sparkpipe_connection
from tests.support import POSTGRES_JAR, Postgres

LINEAGE_DAGS = Path(__file__).resolve().parent / "lineage_dags"
PG_SECRET = "pw-" + secrets.token_hex(12)


@pytest.mark.parametrize(
    ("place", "expected"),
    [
        ({"type": "file", "uri": "/data/out/x/"}, ("file", "/data/out/x")),
        ({"type": "file", "uri": "file:///data/./out//x"}, ("file", "/data/out/x")),
        ({"type": "s3", "uri": "s3a://AKIAKEY:sEcReT@bucket/out/x"}, ("s3://bucket", "out/x")),
        ({"type": "s3", "uri": "s3://bucket/out/x"}, ("s3://bucket", "out/x")),
        ({"type": "gcs", "uri": "gs://bucket/a/b.parquet"}, ("gs://bucket", "a/b.parquet")),
        ({"type": "hdfs", "uri": "hdfs://NameNode:8020/warehouse/t"}, ("hdfs://namenode:8020", "/warehouse/t")),
        (
            {"type": "file", "uri": "abfss://data@acct.dfs.core.windows.net/raw/x"},
            ("abfss://data@acct.dfs.core.windows.net", "raw/x"),
        ),
        (
            {"type": "jdbc", "uri": "jdbc:postgresql://db.internal/shop?user=u&password=hunter2", "table": "orders"},
            ("postgres://db.internal:5432", "shop.public.orders"),
        ),
        (
            {"type": "jdbc", "uri": "jdbc:postgresql://u:pw@db:6543/shop", "table": "sales.Orders"},
            ("postgres://db:6543", "shop.sales.orders"),
        ),
        ({"type": "jdbc", "uri": "jdbc:mysql://my:3306/shop", "table": "orders"}, ("mysql://my:3306", "shop.orders")),
        (
            {"type": "jdbc", "uri": "jdbc:sqlserver://ms;databaseName=Shop;password=pw", "table": "orders"},
            ("mssql://ms:1433", "shop.dbo.orders"),
        ),
        (
            {"type": "jdbc", "uri": "jdbc:oracle:thin:scott/tiger@//ora:1521/ORCL", "table": "sales.orders"},
            ("oracle://ora:1521", "orcl.SALES.ORDERS"),
        ),
        ({"type": "bigquery", "table": "proj:ds.t"}, ("bigquery", "proj.ds.t")),
        ({"type": "bigquery", "table": "ds.t"}, None),  # the job's default project decides: no stable name
        ({"type": "table", "table": "Sales.Orders"}, ("spark_catalog", "sales.orders")),
        ({"type": "table", "table": "orders"}, ("spark_catalog", "default.orders")),
        ({"type": "file", "uri": "relative/out"}, None),
        ({"type": "jdbc", "uri": "${secret:aws:prod/db#url}", "table": "t"}, None),
        ({"type": "file", "uri": "s3://b/{{ ds }}/x"}, None),
    ],
)
def test_dataset_names_follow_the_naming_spec_without_credentials(
    place: dict[str, Any], expected: tuple[str, str] | None
) -> None:
    named = dataset_name(place)
    assert named == expected
    if named is not None:
        assert not any(s in "".join(named) for s in ("hunter2", "sEcReT", "AKIAKEY", "tiger", "pw", "u:"))


def test_a_path_with_a_drive_letter_or_no_bucket_has_no_name() -> None:
    assert path_name("C:/data/x") is None and path_name("s3:///x") is None


def config_for(tmp_path: Path) -> Any:
    return load_config(
        {
            "app_name": "lineage",
            "sources": {
                "orders": {"type": "file", "path": f"{tmp_path}/in/orders/*.csv", "format": "csv"},
                "customers": {
                    "type": "jdbc",
                    "url": "jdbc:postgresql://pg.internal:5432/shop",
                    "table": "public.customers",
                    "user": "reader",
                    "password": "${env:PG_PASSWORD}",
                },
            },
            "sequences": [
                {
                    "name": "joined",
                    "query": "SELECT o.*, c.region FROM orders o JOIN customers c USING (customer_id) "
                    "JOIN warehouse.regions r ON r.name = c.region",
                    "target": {"type": "file", "path": f"{tmp_path}/out/joined", "format": "parquet"},
                    "expectations": [
                        {"name": "has_region", "condition": "region IS NOT NULL", "on_fail": "quarantine"},
                        {"name": "positive", "condition": "amount > 0", "on_fail": "fail", "max_failed": 3},
                    ],
                    "quarantine": {"type": "file", "path": f"{tmp_path}/out/quarantine", "format": "json"},
                },
                {
                    "name": "from_files",
                    "query": f"SELECT * FROM parquet.`{tmp_path}/extra/part-*.parquet`",
                    "target": {"type": "table", "table": "reports.extra"},
                },
            ],
        },
        resolve_env=False,
    )


def test_inputs_and_outputs_of_a_config(tmp_path: Path) -> None:
    found = dataset_names(config_for(tmp_path))
    assert names_of(found.inputs) == [
        f"file/{tmp_path}/in/orders",
        "postgres://pg.internal:5432/shop.public.customers",
        "spark_catalog/warehouse.regions",
        f"file/{tmp_path}/extra",
    ]
    assert names_of(found.outputs) == [
        f"file/{tmp_path}/out/joined",
        f"file/{tmp_path}/out/quarantine",
        "spark_catalog/reports.extra",
    ]


def test_the_facets_of_a_finished_run(tmp_path: Path) -> None:
    from openlineage.client.serde import Serde

    metrics = {
        "status": "succeeded",
        "sequences": {
            "joined": {
                "status": "succeeded",
                "rows_written": 42,
                "schema": [{"name": "customer_id", "type": "bigint", "nullable": True}],
                "expectations": {
                    "has_region": {"failed_rows": 2, "action": "quarantine", "passed": True},
                    "positive": {"failed_rows": 0, "action": "fail", "passed": True},
                },
            },
            "from_files": {"status": "succeeded", "rows_written": 7},
        },
    }
    lineage = operator_lineage(config_for(tmp_path), metrics)
    joined, quarantine, extra = (json.loads(Serde.to_json(o)) for o in lineage.outputs)
    assert joined["outputFacets"]["outputStatistics"]["rowCount"] == 42
    assert [(f["name"], f["type"]) for f in joined["facets"]["schema"]["fields"]] == [("customer_id", "bigint")]
    assertions = {a["name"]: a for a in joined["facets"]["dataQualityAssertions"]["assertions"]}
    assert (
        assertions["has_region"]["content"] == "region IS NOT NULL" and assertions["has_region"]["severity"] == "warn"
    )
    assert (
        assertions["positive"]["severity"] == "error" and assertions["positive"]["expected"] == "at most 3 failed rows"
    )
    assert assertions["positive"]["success"] is True and assertions["positive"]["actual"] == "0 failed rows"
    assert "outputStatistics" not in quarantine.get("outputFacets", {})
    assert extra["outputFacets"]["outputStatistics"]["rowCount"] == 7
    sql = lineage.job_facets["sql"].query
    assert sql.index("-- sequence joined") < sql.index("-- sequence from_files") and "JOIN warehouse.regions" in sql
    # A failed run: an error message, and statistics only for what succeeded.
    failed = operator_lineage(
        config_for(tmp_path),
        {"status": "failed", "sequences": {"joined": {"status": "failed", "error": "AnalysisException: boom"}}},
    )
    assert failed.run_facets["errorMessage"].message == "joined: AnalysisException: boom"
    assert not any(o.outputFacets for o in failed.outputs)


@pytest.fixture(scope="module")
def lineage_run(
    dag_runner: DagRunner, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> tuple[DagRunResult, list[dict[str, Any]], Path]:
    out = tmp_path_factory.mktemp("lineage-out")
    work = tmp_path_factory.mktemp("lineage-work")
    events = tmp_path_factory.mktemp("lineage-events") / "events.jsonl"
    # A role of its own whose password only this fixture knows, so that the events can be searched for it.
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS public.lineage_per_customer")
        conn.execute("DROP ROLE IF EXISTS lineage_writer")
        conn.execute(f"CREATE ROLE lineage_writer LOGIN PASSWORD '{PG_SECRET}'")
        conn.execute("GRANT CREATE, USAGE ON SCHEMA public TO lineage_writer")
    bundles = json.loads(os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    bundles.append(
        {
            "name": "lineage-test-dags",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(LINEAGE_DAGS)},
        }
    )
    env = {
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events), "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "sparkpipe-tests",
        "AIRFLOW_CONN_SPARKPIPE_LINEAGE": sparkpipe_connection(
            runtime="local",
            master="local[1]",
            work_dir=str(work),
            # The Spark UI is on (the test harness's drivers start without it): the driver reads its
            # executors' core-seconds from the UI's status store.
            conf={"spark.sql.shuffle.partitions": "2", "spark.jars": POSTGRES_JAR, "spark.ui.enabled": "true"},
        ),
        "SPARKPIPE_TEST_DATA": str(SHOP),
        "SPARKPIPE_TEST_OUTPUT": str(out),
        "SPARKPIPE_TEST_JDBC_URL": postgres.jdbc_url,
        "SPARKPIPE_PG_USER": "lineage_writer",
        "SPARKPIPE_PG_PASSWORD": PG_SECRET,
    }
    results = dag_runner.run([{"dag_folder": str(LINEAGE_DAGS), "dag_id": "sparkpipe_lineage"}], env)
    lines = events.read_text().splitlines() if events.exists() else []
    return results["sparkpipe_lineage"], [json.loads(line) for line in lines if line.strip()], work


def task_events(events: list[dict[str, Any]], task: str) -> dict[str, dict[str, Any]]:
    mine = [e for e in events if e.get("job", {}).get("name") == f"sparkpipe_lineage.{task}"]
    return {e["eventType"]: e for e in mine}


def test_a_run_emits_the_pipelines_datasets_and_facets(
    lineage_run: tuple[DagRunResult, list[dict[str, Any]], Path], postgres: Postgres
) -> None:
    result, events, _ = lineage_run
    assert result.tasks.get("good") == "success", result.log[-5000:]
    good = task_events(events, "good")
    assert {"START", "COMPLETE"} <= set(good), [e.get("eventType") for e in events]
    start, complete = good["START"], good["COMPLETE"]
    assert [(i["namespace"], i["name"]) for i in start["inputs"]] == [("file", str(SHOP / "orders.csv"))]
    host = f"postgres://{postgres.host}:{postgres.port}"
    outputs = {(o["namespace"], o["name"]): o for o in complete["outputs"]}
    per_customer = next(o for (ns, name), o in outputs.items() if ns == "file" and name.endswith("/per_customer"))
    assert (host, f"{postgres.database}.public.lineage_per_customer") in outputs
    assert ("spark_catalog", "default.lineage_orders") in outputs
    assert per_customer["outputFacets"]["outputStatistics"]["rowCount"] > 0
    assert {f["name"] for f in per_customer["facets"]["schema"]["fields"]} == {"customer_id", "orders", "revenue"}
    assertions = per_customer["facets"]["dataQualityAssertions"]["assertions"]
    assert {a["name"]: a["success"] for a in assertions} == {"has_customer": True, "positive_revenue": True}
    assert "-- sequence to_postgres" in complete["job"]["facets"]["sql"]["query"]
    text = json.dumps(events)
    assert PG_SECRET not in text and "lineage_writer" not in text  # no credential in any name or facet
    assert result.xcom("good")["runtime"]["usage"]["executor_core_seconds"] > 0
    assert "Usage: executor_core_seconds=" in result.log  # the task log's summary says it too


def test_a_failed_run_reports_its_error_and_hands_spark_the_parent_job(
    lineage_run: tuple[DagRunResult, list[dict[str, Any]], Path],
) -> None:
    result, events, work = lineage_run
    assert result.tasks.get("bad") == "failed", result.log[-5000:]
    bad = task_events(events, "bad")
    assert "FAIL" in bad, [e.get("eventType") for e in events]
    fail = bad["FAIL"]
    assert "lineage boom" in fail["run"]["facets"]["errorMessage"]["message"]
    outputs = {o["name"].rsplit("/", 1)[-1]: o for o in fail["outputs"]}
    assert outputs["products"]["outputFacets"]["outputStatistics"]["rowCount"] > 0
    assert not outputs["broken"].get("outputFacets")
    # The failed run's staged config is kept: it carries the task's run as the Spark listener's parent.
    (config,) = work.glob("runs/sparkpipe_lineage__bad__*/config.json")
    spark_conf = json.loads(config.read_text())["spark_conf"]
    assert spark_conf["spark.openlineage.parentJobNamespace"] == "sparkpipe-tests"
    assert spark_conf["spark.openlineage.parentJobName"] == "sparkpipe_lineage.bad"
    assert spark_conf["spark.openlineage.parentRunId"] == fail["run"]["runId"]
    assert not any(k.startswith("spark.openlineage.transport") for k in spark_conf)
