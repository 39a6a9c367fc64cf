"""``sparkpipe plan``: stages, formats, the checked-in plans of the examples, and ``--schemas`` on real Spark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spark_job.cli import main
from spark_job.config.validation import load_config
from spark_job.plan import build_plan, render, resolve_schemas

from .support import REPO

PLANS = Path(__file__).resolve().parent / "plans"
EXAMPLES = [
    "examples/pipeline.yaml",
    "dags_examples/pipelines/shop_summary.yaml",
    "dags_examples/pipelines/shop_to_postgres.yaml",
    "dags_examples/pipelines/region_report.yaml",
    "benchmarks/pipeline.yaml",
]
EXTENSIONS = {"text": "txt", "markdown": "md", "mermaid": "mmd", "dot": "dot", "json": "json"}


def diamond(tmp_path: Path, query_d: str = "SELECT b.k, c.n FROM b JOIN c ON b.k = c.k") -> dict:
    src = tmp_path / "src"
    return {
        "app_name": "diamond",
        "sources": {"raw": {"type": "file", "format": "parquet", "path": str(src)}},
        "sequences": [
            {"name": "d", "query": query_d, "target": {"type": "parquet", "path": str(tmp_path / "d")}},
            {"name": "a", "query": "SELECT k, n FROM raw", "target": {"type": "parquet", "path": str(tmp_path / "a")}},
            {"name": "b", "query": "SELECT k FROM a", "target": {"type": "json", "path": str(tmp_path / "b")}},
            {
                "name": "c",
                "query": "SELECT k, count(*) AS n FROM a GROUP BY k",
                "target": {"type": "parquet", "path": str(tmp_path / "c"), "partition_by": ["k"], "mode": "append"},
            },
            {"name": "e", "query": "SELECT 1 AS one", "target": {"type": "csv", "path": str(tmp_path / "e")}},
        ],
    }


def test_stages_group_what_may_run_at_once(tmp_path: Path) -> None:
    plan = build_plan(load_config(diamond(tmp_path)))
    assert plan.stages == [["a", "e"], ["b", "c"], ["d"]]
    by_name = {s.name: s for s in plan.sequences}
    assert by_name["d"].reads_sequences == ("b", "c") and by_name["d"].reads_sources == ()
    assert by_name["a"].reads_sources == ("raw",)
    assert by_name["c"].mode == "append" and by_name["c"].options == {"partition_by": ["k"]}
    document = json.loads(render(plan, "json"))
    assert document["stages"] == [["a", "e"], ["b", "c"], ["d"]]
    assert document["sequences"]["c"]["target"] == {"type": "parquet", "uri": str(tmp_path / "c")}
    text = render(plan, "text")
    assert "stage 1 (2 sequences may run at once)" in text and "stage 3\n" in text
    assert "reads b, c ->" in text and "reads nothing ->" in text


def test_graph_formats_name_every_edge(tmp_path: Path) -> None:
    plan = build_plan(load_config(diamond(tmp_path)))
    mermaid, dot = render(plan, "mermaid"), render(plan, "dot")
    for a, b in [("src_raw", "seq_a"), ("seq_a", "seq_b"), ("seq_a", "seq_c"), ("seq_b", "seq_d"), ("seq_c", "seq_d")]:
        assert f"  {a} --> {b}\n" in mermaid
        assert f"  {a} -> {b};\n" in dot
    assert mermaid.startswith("flowchart LR\n")
    assert "subgraph stage_2 { rank=same; seq_b; seq_c; }" in dot
    assert dot.count("{") == dot.count("}")


def test_labels_are_escaped(tmp_path: Path) -> None:
    config = diamond(tmp_path)
    config["sequences"][1]["target"]["path"] = str(tmp_path / 'we"ird<dir>')
    plan = build_plan(load_config(config))
    assert '"' not in render(plan, "mermaid").split("tgt_a[/")[1].split("/]")[0].strip('"')
    assert 'we\\"ird<dir>' in render(plan, "dot")


def test_markdown_is_one_table_row_per_sequence_whatever_the_names_hold(tmp_path: Path) -> None:
    config = diamond(tmp_path)
    config["sequences"][1]["target"]["path"] = str(tmp_path / "a|b") + "/*x*_[y](z)<br>"
    rule = {"name": "k_set", "condition": "k IS NOT NULL | k > 1", "on_fail": "drop"}
    config["sequences"][1]["expectations"] = [rule]
    markdown = render(build_plan(load_config(config)), "markdown")
    stages = markdown.split("**Stage 1**")[1]  # the sequences' tables follow the sources'
    rows = [line for line in stages.splitlines() if line.startswith("| `")]
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows] == ["`a`", "`e`", "`b`", "`c`", "`d`"]
    assert all(row.replace("\\|", "").count("|") == 5 for row in rows)  # four cells, whatever the text
    row_a = rows[0]
    assert "a\\|b/\\*x\\*\\_\\[y\\](z)&lt;br&gt;" in row_a and "<br>" not in row_a
    assert "expect k\\_set: k IS NOT NULL \\| k &gt; 1 (drop)" in row_a
    assert "**Stage 3**\n\n| Sequence | Reads | Writes | Checks |\n| --- | --- | --- | --- |\n| `d` | `b`, `c` |" in (
        markdown
    )


def test_markdown_has_a_checks_column_only_when_a_sequence_has_rules(tmp_path: Path) -> None:
    """Airflow's task documentation is a narrow modal: no empty column; and its Markdown view drops HTML."""
    config = diamond(tmp_path)
    plain = render(build_plan(load_config(config)), "markdown")
    assert "**Stage 1**\n\n| Sequence | Reads | Writes |\n" in plain and "Checks" not in plain
    config["sequences"][0]["expectations"] = [
        {"name": "k_set", "condition": "k IS NOT NULL", "on_fail": "drop"},
        {"name": "k_small", "condition": "k < 10", "on_fail": "warn"},
    ]
    checked = render(build_plan(load_config(config)), "markdown")
    assert "| Sequence | Reads | Writes | Checks |\n" in checked
    assert "expect k\\_set: k IS NOT NULL (drop); expect k\\_small: k &lt; 10 (warn) |" in checked
    assert "<br>" not in checked


def test_shown_paths_carry_no_credentials(tmp_path: Path) -> None:
    config = diamond(tmp_path)
    config["sources"]["raw"]["path"] = "s3a://AKIAEXAMPLEKEY:wJalrSecret%2Fkey@bucket/raw/"
    config["sequences"][1]["target"]["path"] = "s3a://AKIAEXAMPLEKEY:wJalrSecret%2Fkey@bucket/a/"
    plan = build_plan(load_config(config))
    for fmt in EXTENSIONS:
        shown = render(plan, fmt)
        assert "bucket/raw" in shown and "bucket/a" in shown, fmt
        assert "AKIA" not in shown and "wJalr" not in shown, fmt


@pytest.mark.parametrize("config", EXAMPLES)
@pytest.mark.parametrize("fmt", list(EXTENSIONS))
def test_the_examples_plans_match_the_checked_in_files(config: str, fmt: str, capsys: pytest.CaptureFixture) -> None:
    """The files under tests/plans are what ``sparkpipe plan`` prints; regenerate them with
    ``SPARKPIPE_UPDATE_PLANS=1 pytest tests/test_plan.py`` after a deliberate change."""
    cwd = Path.cwd()
    os.chdir(REPO)
    try:
        assert main(["plan", "--config", config, "--format", fmt]) == 0
    finally:
        os.chdir(cwd)
    printed = capsys.readouterr().out
    expected = PLANS / f"{config.replace('/', '_').removesuffix('.yaml')}.{EXTENSIONS[fmt]}"
    if os.environ.get("SPARKPIPE_UPDATE_PLANS"):
        expected.write_text(printed)
    assert printed == expected.read_text()


def test_a_plan_reads_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --schemas no data is read, so ${env:...} references need not resolve."""
    monkeypatch.delenv("SPARKPIPE_PG_PASSWORD", raising=False)
    monkeypatch.chdir(REPO)
    assert main(["plan", "--config", "dags_examples/pipelines/shop_to_postgres.yaml"]) == 0
    assert main(["validate", "--config", "dags_examples/pipelines/shop_to_postgres.yaml"]) == 2


@pytest.mark.spark
def test_schemas_resolve_without_running_a_query(spark, tmp_path: Path) -> None:
    """Only the sources' metadata is read (Spark reads a parquet source's footers in one small job); no
    sequence's query runs: one that would fail when executed resolves all the same."""
    spark.range(20).selectExpr("id AS k", "id * 2 AS n").write.parquet(str(tmp_path / "src"))
    raw = diamond(tmp_path)
    raw["sequences"][4]["query"] = "SELECT k, raise_error('this query was executed') AS boom FROM a"
    config = load_config(raw)
    tracker = spark.sparkContext.statusTracker()
    spark.sparkContext.setJobGroup("sparkpipe-plan-test", "plan")
    try:
        plan = resolve_schemas(build_plan(config), config, spark)
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    assert len(tracker.getJobIdsForGroup("sparkpipe-plan-test")) <= 1  # the parquet footers, if anything
    schemas = {s.name: s.schema for s in plan.sequences}
    assert schemas == {
        "a": "k BIGINT, n BIGINT",
        "e": "k BIGINT, boom VOID",
        "b": "k BIGINT",
        "c": "k BIGINT, n BIGINT",
        "d": "k BIGINT, n BIGINT",
    }
    assert plan.failed == []
    assert "schema: k BIGINT, n BIGINT" in render(plan, "text")


@pytest.mark.spark
def test_schemas_catch_a_misspelt_column_that_validation_cannot(spark, tmp_path: Path) -> None:
    spark.range(5).selectExpr("id AS k", "id AS n").write.parquet(str(tmp_path / "src"))
    config = load_config(diamond(tmp_path, query_d="SELECT b.k, c.nn FROM b JOIN c ON b.k = c.k"))
    plan = resolve_schemas(build_plan(config), config, spark)
    failed = {s.name: s.error for s in plan.failed}
    assert list(failed) == ["d"]
    assert "UNRESOLVED_COLUMN" in str(failed["d"]) and "nn" in str(failed["d"])
    assert "error: [UNRESOLVED_COLUMN" in render(plan, "text")


@pytest.mark.spark
def test_the_cli_reports_an_analysis_error_with_exit_1(tmp_path: Path) -> None:
    """``sparkpipe plan --schemas`` in a process of its own: the sequence, Spark's message, and its readers."""
    (tmp_path / "rows.json").write_text('{"k": 1, "v": "x"}\n')
    config = {
        "app_name": "typo",
        "sources": {"rows": {"type": "file", "format": "json", "path": str(tmp_path / "rows.json")}},
        "sequences": [
            {
                "name": "first",
                "query": "SELECT k, vv FROM rows",
                "target": {"type": "json", "path": str(tmp_path / "o1")},
            },
            {
                "name": "second",
                "query": "SELECT * FROM first",
                "target": {"type": "json", "path": str(tmp_path / "o2")},
            },
        ],
    }
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [sys.executable, "-m", "spark_job", "plan", "--config", str(path), "--schemas", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    document = json.loads(done.stdout)
    assert "UNRESOLVED_COLUMN" in document["sequences"]["first"]["error"]
    assert document["sequences"]["second"]["error"] == "reads first, whose schema could not be resolved"
    assert "sparkpipe: sequence first: [UNRESOLVED_COLUMN" in done.stderr
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


@pytest.mark.spark
@pytest.mark.postgres
def test_schemas_use_the_configs_spark_conf_and_print_no_secret(postgres, tmp_path: Path) -> None:
    """``plan --schemas`` in a process of its own sets its session up as a run does: the JDBC driver comes
    from ``spark.jars`` (nowhere else on the class path), case sensitivity and the other SQL settings are the
    config's, Spark's own ``${...}`` substitution is off; a resolved secret shows as *** only."""
    from tests.support import POSTGRES_JAR

    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS plan_orders")
        conn.execute("CREATE TABLE plan_orders (order_id BIGINT, amount NUMERIC(10, 2), placed DATE)")
    (tmp_path / "rows.json").write_text('{"k": 1, "v": "x"}\n')
    secret = "plan-secret-" + os.urandom(6).hex()
    config = {
        "app_name": "plan_conf",
        "spark_conf": {
            "spark.jars": POSTGRES_JAR,
            "spark.sql.caseSensitive": "true",
            "spark.sql.session.timeZone": "Asia/Kathmandu",
        },
        "sources": {
            "rows": {"type": "file", "format": "json", "path": str(tmp_path / "rows.json")},
            "orders": {
                "type": "jdbc",
                "url": postgres.jdbc_url,
                "table": "plan_orders",
                "user": postgres.user,
                "password": "${env:PLAN_PG_PASSWORD}",
            },
        },
        "sequences": [
            {"name": "from_db", "query": "SELECT order_id, amount FROM orders", "target": parquet_at(tmp_path, 1)},
            {"name": "upper_case", "query": "SELECT K FROM rows", "target": parquet_at(tmp_path, 2)},
            {
                "name": "secret_name",
                "query": "SELECT k AS `${env:PLAN_SECRET}` FROM rows",
                "expectations": [{"name": "r", "condition": "v <> '${env:PLAN_SECRET}'"}],
                "target": parquet_at(tmp_path, 3),
            },
            {
                "name": "spark_substitution",
                "query": "SELECT $${env:PLAN_NUMBER} AS n",
                "target": parquet_at(tmp_path, 4),
            },
        ],
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "PLAN_PG_PASSWORD": postgres.password, "PLAN_SECRET": secret, "PLAN_NUMBER": "7"}
    done = subprocess.run(
        [sys.executable, "-m", "spark_job", "plan", "--config", str(path), "--schemas", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    sequences = json.loads(done.stdout)["sequences"]
    assert sequences["from_db"]["schema"] == "order_id BIGINT, amount DECIMAL(10,2)", done.stderr[-3000:]
    assert "UNRESOLVED_COLUMN" in sequences["upper_case"]["error"]  # `K` is not `k` when case matters
    assert sequences["secret_name"]["schema"] == "*** BIGINT"
    assert sequences["secret_name"]["checks"] == ["expect r: v <> '***' (warn)"]
    assert "PARSE_SYNTAX_ERROR" in sequences["spark_substitution"]["error"]  # not `SELECT 7`
    assert secret not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "JVM stacktrace" not in done.stderr
    assert "\tat org.apache" not in done.stderr  # one line per problem, no Java stack
    assert not any((tmp_path / f"out{i}").exists() for i in range(1, 5))


def parquet_at(tmp_path: Path, i: int) -> dict[str, str]:
    return {"type": "parquet", "path": str(tmp_path / f"out{i}")}


@pytest.mark.spark
def test_schemas_on_a_session_already_running_leave_its_settings_as_they_were(
    spark, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """In a process whose session someone else made, the plan applies the config's settings while it
    resolves and puts them back; a static one it cannot change is said to be ignored."""
    from spark_job.cli import plan_session

    spark.range(3).selectExpr("id AS k").write.parquet(str(tmp_path / "src"))
    raw = {
        "app_name": "borrowed",
        "spark_conf": {"spark.sql.caseSensitive": "true", "spark.sql.warehouse.dir": str(tmp_path / "elsewhere")},
        "sources": {"raw": {"type": "file", "format": "parquet", "path": str(tmp_path / "src")}},
        "sequences": [{"name": "s", "query": "SELECT K FROM raw", "target": parquet_at(tmp_path, 1)}],
    }
    config = load_config(raw)
    before = {key: spark.conf.get(key, None) for key in config.spark_conf}
    with plan_session(config, None) as session:
        assert session is spark
        assert spark.conf.get("spark.sql.caseSensitive") == "true"
        plan = resolve_schemas(build_plan(config), config, spark)
    assert "UNRESOLVED_COLUMN" in str(plan.sequences[0].error)
    assert {key: spark.conf.get(key, None) for key in config.spark_conf} == before
    assert (
        "sparkpipe: spark.sql.warehouse.dir cannot change on the session already running here: ignored for --schemas"
        in capsys.readouterr().err
    )
