"""Data-quality expectations on real local Spark and PostgreSQL: counted by the write's own job, gating the swap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spark_job.cli import main
from spark_job.config.schema import config_schema
from spark_job.config.validation import load_config
from spark_job.engine.capabilities import capabilities_of
from spark_job.engine.runner import PipelineRunner
from spark_job.errors import ConfigError

from .support import Postgres
from .test_bad_input import values

ENV = {"PG_USER": "sparkpipe", "PG_PASSWORD": "sparkpipe"}
JDBC_CREDS = {"user": "${env:PG_USER}", "password": "${env:PG_PASSWORD}", "driver": "org.postgresql.Driver"}

# 100 rows: amount is -1 for every 10th id, customer_id NULL for every 7th.
QUERY = "SELECT id, IF(id % 10 = 0, -1, id) AS amount, IF(id % 7 = 0, NULL, id) AS customer_id FROM range(1, {n})"
NEGATIVE = [i for i in range(1, 101) if i % 10 == 0]  # 10 rows
NO_CUSTOMER = [i for i in range(1, 101) if i % 7 == 0]  # 14 rows
BOTH = sorted(set(NEGATIVE) & set(NO_CUSTOMER))  # 70


def sequence(target: dict, rules: list[dict], n: int = 101, **extra: Any) -> dict:
    return {"name": "orders", "query": QUERY.format(n=n), "expectations": rules, "target": target, **extra}


def run(spark: Any, *sequences: dict) -> dict:
    config = load_config({"app_name": "dq", "sequences": list(sequences)}, environ=ENV)
    return PipelineRunner(config, spark=spark).run()


def ids(spark: Any, path: Path | str, fmt: str = "parquet") -> list[int]:
    return sorted(r.id for r in spark.read.format(fmt).load(str(path)).collect())


def test_warn_counts_and_writes_every_row(spark: Any, tmp_path: Path) -> None:
    target = {"type": "parquet", "path": str(tmp_path / "o")}
    metrics = run(spark, sequence(target, [{"name": "positive", "condition": "amount > 0"}]))
    seq = metrics["sequences"]["orders"]
    assert metrics["status"] == "succeeded", metrics
    assert seq["expectations"] == {"positive": {"failed_rows": 10, "action": "warn", "passed": False}}
    assert seq["rows_written"] == 100 and seq["rows_dropped"] == 0 and seq["rows_quarantined"] == 0
    assert len(ids(spark, tmp_path / "o")) == 100


def test_drop_leaves_failing_and_null_rows_out_and_readers_see_the_written_rows(spark: Any, tmp_path: Path) -> None:
    """A row whose condition is NULL fails the rule, like a false one."""
    target = {"type": "parquet", "path": str(tmp_path / "o")}
    rules = [{"name": "has_customer", "condition": "customer_id > 0", "on_fail": "drop"}]
    reader = {
        "name": "count_after",
        "query": "SELECT count(*) AS n FROM orders",
        "target": {"type": "json", "path": str(tmp_path / "n")},
    }
    metrics = run(spark, sequence(target, rules, cache=True), reader)
    seq = metrics["sequences"]["orders"]
    assert metrics["status"] == "succeeded", metrics
    assert seq["expectations"]["has_customer"] == {"failed_rows": 14, "action": "drop", "passed": False}
    assert seq["rows_written"] == 86 and seq["rows_dropped"] == 14
    assert ids(spark, tmp_path / "o") == [i for i in range(1, 101) if i not in NO_CUSTOMER]
    assert spark.read.json(str(tmp_path / "n")).first().n == 86


def test_quarantine_writes_failing_rows_with_the_rules_they_failed(spark: Any, tmp_path: Path) -> None:
    target = {"type": "parquet", "path": str(tmp_path / "o")}
    rules = [
        {"name": "positive", "condition": "amount > 0", "on_fail": "quarantine"},
        {"name": "has_customer", "condition": "customer_id IS NOT NULL", "on_fail": "warn"},
    ]
    quarantine = {"type": "parquet", "path": str(tmp_path / "rejected")}
    metrics = run(spark, sequence(target, rules, quarantine=quarantine))
    seq = metrics["sequences"]["orders"]
    assert metrics["status"] == "succeeded", metrics
    assert seq["rows_written"] == 90 and seq["rows_quarantined"] == 10 and seq["rows_dropped"] == 0
    rejected = {r.id: sorted(r.failed_rules) for r in spark.read.parquet(str(tmp_path / "rejected")).collect()}
    assert rejected == {i: ["has_customer", "positive"] if i in BOTH else ["positive"] for i in NEGATIVE}
    assert ids(spark, tmp_path / "o") == [i for i in range(1, 101) if i not in NEGATIVE]


def test_failing_rule_discards_the_staged_write_and_keeps_the_old_data(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = {"type": "parquet", "path": str(tmp_path / "o")}
    rule = {"name": "has_customer", "condition": "customer_id IS NOT NULL", "on_fail": "fail"}
    assert run(spark, sequence(target, [rule], n=7))["status"] == "succeeded"  # ids 1..6: all pass
    reader = {"name": "later", "query": "SELECT * FROM orders", "target": {"type": "json", "path": str(tmp_path / "l")}}
    metrics = run(spark, sequence(target, [rule]), reader)
    seq = metrics["sequences"]["orders"]
    assert metrics["status"] == "failed"
    assert seq["status"] == "failed" and seq["expectations"]["has_customer"]["passed"] is False
    assert seq["expectations"]["has_customer"]["failed_rows"] == 14
    assert "sequence orders: expectation has_customer (customer_id IS NOT NULL) failed: 14 of 100 rows" in seq["error"]
    assert "the target keeps its old data" in seq["error"]
    assert metrics["sequences"]["later"]["status"] == "skipped"
    assert ids(spark, tmp_path / "o") == [1, 2, 3, 4, 5, 6]
    assert not (tmp_path / "l").exists()


@pytest.mark.parametrize(
    ("max_failed", "passes"),
    [(14, True), (13, False), ("14%", True), ("13.9%", False)],
)
def test_tolerance_as_count_or_share(spark: Any, tmp_path: Path, max_failed: Any, passes: bool) -> None:
    target = {"type": "parquet", "path": str(tmp_path / "o")}
    rule = {"name": "c", "condition": "customer_id IS NOT NULL", "on_fail": "fail", "max_failed": max_failed}
    metrics = run(spark, sequence(target, [rule]))
    assert metrics["sequences"]["orders"]["expectations"]["c"] == {
        "failed_rows": 14,
        "action": "fail",
        "passed": passes,
    }
    assert (metrics["status"] == "succeeded") is passes
    assert (tmp_path / "o").exists() is passes


def test_row_bounds_act_like_fail_on_the_rows_written(spark: Any, tmp_path: Path) -> None:
    target = {"type": "parquet", "path": str(tmp_path / "o")}
    drop = [{"name": "positive", "condition": "amount > 0", "on_fail": "drop"}]
    too_few = run(spark, sequence(target, drop, min_rows=91))
    assert too_few["status"] == "failed"
    assert "min_rows 91 failed: 90 rows written" in too_few["sequences"]["orders"]["error"]
    too_many = run(spark, sequence(target, drop, max_rows=89))
    assert "max_rows 89 failed: 90 rows written" in too_many["sequences"]["orders"]["error"]
    assert not (tmp_path / "o").exists()
    within = run(spark, sequence(target, drop, min_rows=90, max_rows=90))
    assert within["status"] == "succeeded" and len(ids(spark, tmp_path / "o")) == 90


def test_fail_on_a_target_that_cannot_stage_aborts_the_job_itself(spark: Any, tmp_path: Path) -> None:
    """An appended path (Spark writes the target itself): raise_error inside the job, no row appended."""
    path = tmp_path / "o"
    spark.range(1, 4).selectExpr("id", "id AS amount", "id AS customer_id").write.parquet(str(path))
    target = {"type": "parquet", "path": str(path), "mode": "append"}
    rule = {"name": "has_customer", "condition": "customer_id IS NOT NULL", "on_fail": "fail"}
    metrics = run(spark, sequence(target, [rule]))
    seq = metrics["sequences"]["orders"]
    assert seq["status"] == "failed"
    assert "expectation has_customer (customer_id IS NOT NULL) failed" in seq["error"]
    assert "the write was aborted" in seq["error"]
    assert seq["expectations"]["has_customer"] == {"failed_rows": None, "action": "fail", "passed": False}
    assert ids(spark, path) == [1, 2, 3]


def test_fail_on_a_catalog_table_aborts_before_the_table_exists(spark: Any, tmp_path: Path) -> None:
    spark.sql("DROP TABLE IF EXISTS default.dq_orders")
    target = {"type": "table", "table": "default.dq_orders"}
    rule = {"name": "positive", "condition": "amount > 0", "on_fail": "fail"}
    metrics = run(spark, sequence(target, [rule]))
    assert metrics["sequences"]["orders"]["status"] == "failed"
    assert not spark.catalog.tableExists("default.dq_orders")


def test_warn_drop_and_fail_add_no_spark_job(spark: Any, tmp_path: Path) -> None:
    """The rules ride on the write's observe(): as many jobs as the bare write of the same rows."""
    tracker = spark.sparkContext.statusTracker()
    spark.sparkContext.setJobGroup("bare", "bare write")
    query = QUERY.format(n=101)
    spark.sql(query).filter("amount > 0").write.mode("overwrite").parquet(str(tmp_path / "hand"))
    bare = len(tracker.getJobIdsForGroup("bare"))
    rules = [
        {"name": "w", "condition": "customer_id IS NOT NULL"},
        {"name": "d", "condition": "amount > 0", "on_fail": "drop"},
        {"name": "f", "condition": "id > 0", "on_fail": "fail"},
    ]
    config = load_config(
        {"app_name": "dq", "sequences": [sequence({"type": "parquet", "path": str(tmp_path / "o")}, rules)]}
    )
    spark.sparkContext.setJobGroup("rest", "rest")
    runner = PipelineRunner(config, spark=spark)
    metrics = runner.run()
    assert metrics["status"] == "succeeded", metrics
    assert metrics["sequences"]["orders"]["rows_written"] == 90
    assert len(tracker.getJobIdsForGroup("rest")) == 0
    assert len(tracker.getJobIdsForGroup(runner.job_tag("orders"))) == bare


def test_quarantine_is_the_one_extra_job(spark: Any, tmp_path: Path) -> None:
    tracker = spark.sparkContext.statusTracker()
    rules = [{"name": "q", "condition": "amount > 0", "on_fail": "quarantine"}]
    quarantine = {"type": "json", "path": str(tmp_path / "q")}
    seq = sequence({"type": "parquet", "path": str(tmp_path / "o")}, rules, quarantine=quarantine)
    plain = sequence({"type": "parquet", "path": str(tmp_path / "p")}, [{"name": "d", "condition": "amount > 0"}])
    plain["name"] = "plain"
    runner = PipelineRunner(load_config({"app_name": "dq", "sequences": [seq, plain], "max_parallel": 1}), spark=spark)
    assert runner.run()["status"] == "succeeded"
    quarantined = len(tracker.getJobIdsForGroup(runner.job_tag("orders")))
    assert quarantined == len(tracker.getJobIdsForGroup(runner.job_tag("plain"))) + 1


def test_a_condition_that_is_not_boolean_fails_before_any_job(spark: Any, tmp_path: Path) -> None:
    tracker = spark.sparkContext.statusTracker()
    target = {"type": "parquet", "path": str(tmp_path / "o")}
    rules = [{"name": "n", "condition": "amount + 1"}]
    config = load_config({"app_name": "dq", "sequences": [sequence(target, rules)]})
    runner = PipelineRunner(config, spark=spark)
    seq = runner.run()["sequences"]["orders"]
    assert seq["status"] == "failed"
    assert "expectation n (sequences[0].expectations[0].condition): 'amount + 1' is of type bigint" in seq["error"]
    assert tracker.getJobIdsForGroup(runner.job_tag("orders")) == []


# -- JDBC ------------------------------------------------------------------------------------------


def jdbc_target(postgres: Postgres, table: str, **extra: Any) -> dict:
    return {"type": "jdbc", "url": postgres.jdbc_url, "table": table, **JDBC_CREDS, **extra}


def table_ids(postgres: Postgres, table: str) -> list[int]:
    with postgres.connect() as conn:
        return [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY id").fetchall()]


def test_jdbc_drop_warn_and_quarantine(spark: Any, postgres: Postgres, tmp_path: Path) -> None:
    rules = [
        {"name": "positive", "condition": "amount > 0", "on_fail": "drop"},
        {"name": "has_customer", "condition": "customer_id IS NOT NULL", "on_fail": "quarantine"},
        {"name": "small", "condition": "id < 50"},
    ]
    quarantine = jdbc_target(postgres, "public.dq_rejected")
    metrics = run(spark, sequence(jdbc_target(postgres, "public.dq_orders"), rules, quarantine=quarantine))
    seq = metrics["sequences"]["orders"]
    assert metrics["status"] == "succeeded", metrics
    assert seq["expectations"] == {
        "positive": {"failed_rows": 10, "action": "drop", "passed": False},
        "has_customer": {"failed_rows": 14, "action": "quarantine", "passed": False},
        "small": {"failed_rows": 51, "action": "warn", "passed": False},
    }
    kept = [i for i in range(1, 101) if i not in NEGATIVE and i not in NO_CUSTOMER]
    assert table_ids(postgres, "public.dq_orders") == kept
    assert seq["rows_written"] == len(kept) and seq["rows_quarantined"] == 14 and seq["rows_dropped"] == 9
    assert table_ids(postgres, "public.dq_rejected") == NO_CUSTOMER
    with postgres.connect() as conn:
        failed = dict(conn.execute("SELECT id, failed_rules FROM public.dq_rejected WHERE id = 70").fetchall())
    assert sorted(failed[70]) == ["has_customer", "positive", "small"]


@pytest.mark.parametrize("mode", ["overwrite", "append"])
def test_jdbc_failing_rule_keeps_the_old_rows(spark: Any, postgres: Postgres, mode: str) -> None:
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS public.dq_kept")
        conn.execute("CREATE TABLE public.dq_kept (id BIGINT, amount BIGINT, customer_id BIGINT)")
        conn.execute("INSERT INTO public.dq_kept VALUES (1000, 1, 1), (1001, 1, 1)")
    rule = {"name": "positive", "condition": "amount > 0", "on_fail": "fail"}
    metrics = run(spark, sequence(jdbc_target(postgres, "public.dq_kept", mode=mode), [rule]))
    seq = metrics["sequences"]["orders"]
    assert seq["status"] == "failed" and seq["expectations"]["positive"]["failed_rows"] == 10
    assert "the target keeps its old data" in seq["error"]
    assert table_ids(postgres, "public.dq_kept") == [1000, 1001]


# -- results: CLI, schema, validation --------------------------------------------------------------


def test_cli_names_sequence_rule_condition_and_counts_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spark: Any
) -> None:
    config = {
        "app_name": "dq",
        "sequences": [
            sequence(
                {"type": "parquet", "path": str(tmp_path / "o")},
                [{"name": "positive", "condition": "amount > 0", "on_fail": "fail", "max_failed": 2}],
            )
        ],
    }
    (tmp_path / "p.json").write_text(json.dumps(config))
    code = main(["run", "--config", str(tmp_path / "p.json"), "--metrics-out", str(tmp_path / "m.json")])
    err = capsys.readouterr().err
    assert code == 1
    expected = "sequence orders: "
    expected += "expectation positive (amount > 0) failed: 10 of 100 rows failed it, more than max_failed 2"
    assert expected in err
    document = json.loads((tmp_path / "m.json").read_text())
    assert document["sequences"]["orders"]["expectations"]["positive"]["failed_rows"] == 10


def test_json_schema_describes_the_keys() -> None:
    sequence_schema = config_schema()["$defs"]["sequence"]["properties"]
    rule = sequence_schema["expectations"]["items"]
    assert set(rule["properties"]) == {"name", "condition", "on_fail", "max_failed", "description"}
    assert rule["properties"]["on_fail"]["enum"] == ["warn", "drop", "fail", "quarantine"]
    assert rule["required"] == ["condition", "name"]
    assert {"min_rows", "max_rows", "quarantine"} <= set(sequence_schema)
    assert sequence_schema["quarantine"]["oneOf"]


BAD = {
    "unknown action": ({"name": "a", "condition": "x > 0", "on_fail": "drop_it"}, "'drop_it' is not one of warn"),
    "aggregate": ({"name": "a", "condition": "sum(x) > 0"}, "calls sum(), which aggregates rows"),
    "window": ({"name": "a", "condition": "x > lag(x) OVER (ORDER BY y)"}, "a window function is not allowed"),
    "subquery": ({"name": "a", "condition": "x IN (SELECT x FROM t)"}, "a subquery is not allowed"),
    "exists": ({"name": "a", "condition": "EXISTS (SELECT 1)"}, "a subquery is not allowed"),
    "two expressions": ({"name": "a", "condition": "x > 0, y > 0"}, "a condition is one expression"),
    "statement": ({"name": "a", "condition": "x > 0; DROP TABLE t"}, "not statements"),
    "unbalanced": ({"name": "a", "condition": "(x > 0"}, "'(' without its ')'"),
    "unterminated string": ({"name": "a", "condition": "x = 'a"}, "cannot be read"),
    "empty condition": ({"name": "a", "condition": " "}, "is empty"),
    "missing condition": ({"name": "a"}, "missing required key 'condition'"),
    "bad name": ({"name": "a b", "condition": "x > 0"}, "not a valid rule name"),
    "negative tolerance": ({"name": "a", "condition": "x > 0", "on_fail": "fail", "max_failed": -1}, "negative"),
    "share over 100%": ({"name": "a", "condition": "x > 0", "on_fail": "fail", "max_failed": "101%"}, "more than 100%"),
    "tolerance text": ({"name": "a", "condition": "x > 0", "on_fail": "fail", "max_failed": "ten"}, "a row count"),
    "tolerance on warn": ({"name": "a", "condition": "x > 0", "max_failed": 3}, "applies to on_fail: fail only"),
    "misspelt key": ({"name": "a", "conditon": "x > 0"}, "did you mean 'condition'?"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_rules_are_config_errors_with_their_path(case: str) -> None:
    rule, expected = BAD[case]
    seq = sequence({"type": "parquet", "path": "/out/o"}, [rule])
    with pytest.raises(ConfigError) as err:
        load_config({"app_name": "dq", "sequences": [seq]})
    found = err.value.problems
    assert any(p.path.startswith("sequences[0].expectations[0]") and expected in p.message for p in found), [
        str(p) for p in found
    ]


@pytest.mark.parametrize("rules", [1, 2.5, True, "x > 0", {"name": "a", "condition": "x > 0"}])
def test_expectations_that_are_not_a_list_are_a_config_error_also_beside_a_quarantine(rules: object) -> None:
    seq = {
        **sequence({"type": "parquet", "path": "/out/o"}, []),
        "expectations": rules,
        "quarantine": {"type": "parquet", "path": "/out/rejected"},
    }
    with pytest.raises(ConfigError) as err:
        load_config({"app_name": "dq", "sequences": [seq]})
    messages = {p.path: p.message for p in err.value.problems}
    assert messages["sequences[0].expectations"].startswith("must be a list of rules"), messages


def test_rule_names_are_unique_per_sequence_and_quarantine_given_exactly_when_used() -> None:
    twice = [{"name": "a", "condition": "x > 0"}, {"name": "A", "condition": "x < 9"}]
    unused = sequence({"type": "parquet", "path": "/out/o"}, [], quarantine={"type": "parquet", "path": "/out/q"})
    uses = [{"name": "q", "condition": "x > 0", "on_fail": "quarantine"}]
    missing = sequence({"type": "parquet", "path": "/out/m"}, uses)
    dup = sequence({"type": "parquet", "path": "/out/d"}, twice)
    for seq, name in ((unused, "unused"), (missing, "missing"), (dup, "dup")):
        seq["name"] = name
    with pytest.raises(ConfigError) as err:
        load_config({"app_name": "dq", "sequences": [dup, unused, missing]})
    found = [str(p) for p in err.value.problems]
    assert any("sequences[0].expectations[1].name: rule name 'A' is already used" in p for p in found), found
    assert any("sequences[1].quarantine: no expectation of this sequence has on_fail: quarantine" in p for p in found)
    assert any("sequences[2].expectations: rule 'q' has on_fail: quarantine but the sequence has" in p for p in found)


def test_quarantine_is_a_target_like_any_other() -> None:
    rule = [{"name": "q", "condition": "x > 0", "on_fail": "quarantine"}]
    inside = sequence({"type": "parquet", "path": "/out/o"}, rule, quarantine={"type": "parquet", "path": "/out/o/rej"})
    other = sequence(
        {"type": "parquet", "path": "/out/p"}, rule, quarantine={"type": "parquet", "path": "file:///out/p/"}
    )
    other["name"] = "other"
    typo = sequence({"type": "parquet", "path": "/out/t"}, rule, quarantine={"type": "parquett", "path": "/out/tq"})
    typo["name"] = "typo"
    with pytest.raises(ConfigError) as err:
        load_config({"app_name": "dq", "sequences": [inside, other, typo]})
    found = [str(p) for p in err.value.problems]
    assert any("sequences[0].quarantine.path: lies inside the target of sequences[0]" in p for p in found), found
    assert any(p.startswith("sequences[1].quarantine: writes the same target as sequences[1]") for p in found), found
    assert any("sequences[2].quarantine.type: unknown writer type 'parquett'" in p for p in found), found


def test_errors_name_the_file_and_line(tmp_path: Path) -> None:
    text = """app_name: dq
sequences:
  - name: s
    query: SELECT 1 AS x
    expectations:
      - name: a
        condition: count(x) > 0
    target: {type: parquet, path: /out/s}
"""
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "p.yaml")
    problem = err.value.problems[0]
    assert problem.line == 7 and problem.file is not None and problem.file.endswith("p.yaml")


# -- fuzzing ---------------------------------------------------------------------------------------

RULED = {
    "app_name": "dq",
    "sources": {"events": {"type": "file", "format": "parquet", "path": "/data/events"}},
    "sequences": [
        {
            "name": "s",
            "query": "SELECT * FROM events",
            "expectations": [
                {"name": "a", "condition": "amount > 0", "on_fail": "drop"},
                {"name": "b", "condition": "customer_id IS NOT NULL", "on_fail": "fail", "max_failed": "1%"},
                {"name": "c", "condition": "kind IN ('buy', 'view')", "on_fail": "quarantine"},
            ],
            "min_rows": 1,
            "max_rows": 10,
            "quarantine": {"type": "parquet", "path": "/out/rejected"},
            "target": {"type": "parquet", "path": "/out/s"},
        }
    ],
}
RULE_VALUES = st.one_of(
    values,
    st.sampled_from(
        ["warn", "drop", "fail", "quarantine", "1%", "101%", "-1", "count(*) > 0", "x OVER ()", "(a", "a, b", "a;b"]
    ),
)


def mutate_rules(data: Any, draw: Any, depth: int = 0) -> Any:
    if isinstance(data, dict) and data and depth < 6:
        key = draw(st.sampled_from(sorted(data)))
        copy = dict(data)
        action = draw(st.sampled_from(["replace", "drop", "descend", "descend"]))
        if action == "replace":
            copy[key] = draw(RULE_VALUES)
        elif action == "drop":
            del copy[key]
        else:
            copy[key] = mutate_rules(data[key], draw, depth + 1)
        return copy
    if isinstance(data, list) and data and depth < 6:
        i = draw(st.integers(0, len(data) - 1))
        copy = list(data)
        copy[i] = mutate_rules(data[i], draw, depth + 1)
        return copy
    return draw(RULE_VALUES)


def test_the_fuzzing_base_is_valid() -> None:
    assert load_config(RULED).sequences[0].expectations[1].max_failed_share == 0.01


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_rules_raise_only_config_errors(data: st.DataObject) -> None:
    config: Any = RULED
    for _ in range(data.draw(st.integers(1, 3))):
        config = mutate_rules(config, data.draw)
    try:
        load_config(json.loads(json.dumps(config)))
    except ConfigError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)


# -- sparkpipe test: expect_failed -----------------------------------------------------------------

RULED_PIPELINE = """\
app_name: orders
sources:
  orders: {type: file, format: json, path: /nonexistent/orders}
sequences:
  - name: orders_clean
    query: SELECT * FROM orders
    expectations:
      - {name: positive_amount, condition: amount > 0, on_fail: drop}
      - {name: has_customer, condition: customer_id IS NOT NULL, on_fail: fail}
    target: {type: parquet, path: /nonexistent/orders_clean}
  - name: total
    query: SELECT sum(amount) AS amount FROM orders_clean
    target: {type: parquet, path: /nonexistent/total}
"""
GIVEN = """\
    given:
      orders:
        - {order_id: 1, amount: 10.0, customer_id: 7}
        - {order_id: 2, amount: -4.0, customer_id: 7}
        - {order_id: 3, amount: 0.0, customer_id: null}
        - {order_id: 4, amount: 5.0, customer_id: 8}
"""


def pipeline_test(tmp_path: Path, expect: str) -> Any:
    from spark_job.pipeline_tests import load_test_file

    (tmp_path / "pipeline.yaml").write_text(RULED_PIPELINE)
    (tmp_path / "t_test.yaml").write_text(
        f"config: pipeline.yaml\ntests:\n  - name: rules\n{GIVEN}    expect:\n{expect}"
    )
    return load_test_file(tmp_path / "t_test.yaml")


def test_expect_failed_asserts_rule_counts_and_readers_see_the_kept_rows(spark: Any, tmp_path: Path) -> None:
    from spark_job.pipeline_tests import run_test

    (test,) = pipeline_test(
        tmp_path,
        "      orders_clean: {rows: 2, expect_failed: {positive_amount: 2, has_customer: 1}}\n"
        "      total: [{amount: 15.0}]\n",
    )
    result = run_test(test, spark)
    assert result.passed, (result.differences, result.error)
    (wrong,) = pipeline_test(tmp_path, "      orders_clean: {expect_failed: {positive_amount: 1, has_customer: 1}}\n")
    result = run_test(wrong, spark)
    assert not result.passed
    assert result.differences == ["orders_clean: expectation positive_amount: expected 1 failing rows, got 2"]


def test_a_failing_fail_rule_not_asserted_fails_the_test(spark: Any, tmp_path: Path) -> None:
    from spark_job.pipeline_tests import run_test

    (test,) = pipeline_test(tmp_path, "      orders_clean: {rows: 2}\n")
    result = run_test(test, spark)
    assert not result.passed
    assert result.differences == [
        "sequence orders_clean: expectation has_customer (customer_id IS NOT NULL) failed: "
        "1 of 4 rows failed it, more than max_failed 0"
    ]


def test_expect_failed_names_a_rule_of_the_sequence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        pipeline_test(tmp_path, "      orders_clean: {expect_failed: {positive: 1, has_customer: -1}}\n")
    found = [f"{p.path}: {p.message}" for p in err.value.problems]
    assert any(
        "orders_clean.expect_failed.positive: 'positive' is not an expectation of sequence orders_clean" in p
        for p in found
    ), found
    assert any("expect_failed.has_customer: must be a row count" in p for p in found), found
    assert all(p.line is not None for p in err.value.problems)


def test_rules_on_a_source_say_where_they_belong() -> None:
    source = {"type": "file", "path": "/data/e", "expectations": [{"name": "a", "condition": "x > 0"}]}
    seq = {"name": "s", "query": "SELECT * FROM e", "target": {"type": "parquet", "path": "/out/s"}}
    with pytest.raises(ConfigError) as err:
        load_config({"app_name": "dq", "sources": {"e": source}, "sequences": [seq]})
    assert [str(p) for p in err.value.problems] == [
        "sources.e.expectations: a source has no expectations: put the rules on the sequence that reads it "
        "(SELECT * FROM the source), where its write counts them"
    ]


def test_plan_shows_the_rules_without_running_anything() -> None:
    from spark_job.plan import build_plan, render_json, render_text

    rules = [
        {"name": "positive", "condition": "amount > 0", "on_fail": "quarantine"},
        {"name": "has_customer", "condition": "customer_id IS NOT NULL", "on_fail": "fail", "max_failed": "1%"},
    ]
    seq = sequence(
        {"type": "parquet", "path": "/out/o"}, rules, min_rows=1, quarantine={"type": "json", "path": "/out/rej"}
    )
    plan = build_plan(load_config({"app_name": "dq", "sequences": [seq]}))
    text = render_text(plan)
    assert "expect positive: amount > 0 (quarantine)" in text
    assert "expect has_customer: customer_id IS NOT NULL (fail, max_failed 1%)" in text
    assert "min_rows 1" in text and "quarantine -> json /out/rej" in text
    assert (
        json.loads(render_json(plan))["sequences"]["orders"]["checks"][0] == "expect positive: amount > 0 (quarantine)"
    )


def test_rules_on_a_spark_connect_session(spark_connect: Any, tmp_path: Path) -> None:
    """The same counts and the same gate without a JVM in the client. A Spark Connect 3.5 client
    receives no observed values: counts are null, a fail rule tolerating no failure aborts the staged
    write itself, and what needs the counts (max_failed, min_rows, max_rows) fails the sequence first."""
    session = capabilities_of(spark_connect)
    target = {"type": "parquet", "path": str(tmp_path / "o")}
    rules = [
        {"name": "positive", "condition": "amount > 0", "on_fail": "drop"},
        {"name": "has_customer", "condition": "customer_id IS NOT NULL", "on_fail": "quarantine"},
    ]
    quarantine = {"type": "parquet", "path": str(tmp_path / "q")}
    metrics = run(spark_connect, sequence(target, rules, quarantine=quarantine))
    seq = metrics["sequences"]["orders"]
    assert metrics["status"] == "succeeded", metrics
    assert len(ids(spark_connect, tmp_path / "o")) == 77 and len(ids(spark_connect, tmp_path / "q")) == 14
    # A Spark Connect 4.0 server drops the counts when it is slow: then null, as on 3.5.
    counted = session.counts_writes and not (session.counts_may_be_lost and seq["rows_written"] is None)
    if counted:
        assert seq["expectations"]["positive"] == {"failed_rows": 10, "action": "drop", "passed": False}
        assert (seq["rows_written"], seq["rows_dropped"], seq["rows_quarantined"]) == (77, 9, 14)
    else:
        assert seq["expectations"]["positive"] == {"failed_rows": None, "action": "drop", "passed": True}
        assert (seq["rows_written"], seq["rows_dropped"], seq["rows_quarantined"]) == (None, None, None)

    strict = [{"name": "small", "condition": "id < 50", "on_fail": "fail"}]
    failed = run(spark_connect, sequence(target, strict))["sequences"]["orders"]
    assert failed["status"] == "failed" and "expectation small (id < 50) failed" in failed["error"]
    assert len(ids(spark_connect, tmp_path / "o")) == 77  # the staged write was discarded

    tolerant = [{"name": "small", "condition": "id < 50", "on_fail": "fail", "max_failed": 3}]
    failed = run(spark_connect, sequence(target, tolerant, min_rows=1))["sequences"]["orders"]
    assert failed["status"] == "failed"
    if session.counts_writes and "the session sent no counts" in failed["error"]:
        assert session.counts_may_be_lost and "the staged write was discarded" in failed["error"]
    elif session.counts_writes:
        assert "51 of 100 rows failed it" in failed["error"]
    else:
        assert failed["error"].startswith(
            "sequence orders: expectation small (max_failed), min_rows need the counts of the write's observe()"
        )
        assert "run on a classic session (spark-submit) or on Spark Connect 4.x" in failed["error"]
    assert len(ids(spark_connect, tmp_path / "o")) == 77
