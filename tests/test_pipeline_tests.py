"""``sparkpipe test``: fixtures in every form, comparison and its diffs, exit codes, and the pytest plugin."""

from __future__ import annotations

import datetime
import decimal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from spark_job.engine.capabilities import pyspark_version
from spark_job.errors import ConfigError
from spark_job.pipeline_tests import Expected, compare, load_test_file, run_test

PIPELINE = """\
app_name: orders
sources:
  orders:
    type: file
    format: csv
    path: {out}/real/orders.csv
    schema: "order_id BIGINT, country STRING, amount DOUBLE, kind STRING"
  customers: {{type: file, format: csv, path: "{out}/real/customers.csv"}}
sequences:
  - name: orders_clean
    query: SELECT * FROM orders WHERE kind = 'sale'
    target: {{type: parquet, path: "{out}/orders_clean"}}
  - name: country_revenue
    query: SELECT country, sum(amount) AS revenue, count(*) AS orders FROM orders_clean GROUP BY country
    target: {{type: parquet, path: "{out}/country_revenue"}}
  - name: customer_countries
    query: SELECT c.name, c.country FROM customers c
    target: {{type: json, path: "{out}/customer_countries"}}
"""

PASSING = """\
config: pipeline.yaml
tests:
  - name: revenue per country ignores refunds
    given:
      orders:
        - {order_id: 1, country: DE, amount: 10.0, kind: sale}
        - {order_id: 2, country: DE, amount: -4.0, kind: refund}
        - {order_id: 3, country: FR, amount: 0.1, kind: sale}
        - {order_id: 4, country: FR, amount: 0.2, kind: sale}
    expect:
      country_revenue:
        - {country: FR, revenue: 0.3, orders: 2}
        - {country: DE, revenue: 10.0, orders: 1}
      orders_clean: {rows: 3}
"""


def project(tmp_path: Path, tests: str = PASSING) -> Path:
    (tmp_path / "pipeline.yaml").write_text(PIPELINE.format(out=tmp_path))
    (tmp_path / "orders_test.yaml").write_text(tests)
    return tmp_path / "orders_test.yaml"


def test_compare_ignores_order_and_tolerates_float_error() -> None:
    expected = Expected("s", "expect.s", rows=[{"a": 1, "x": 0.3}, {"a": 2, "x": None}])
    assert compare(expected, [{"a": 2, "x": None, "extra": 9}, {"a": 1, "x": 0.1 + 0.2, "extra": 8}]) == []
    assert compare(Expected("s", "p", rows=[{"d": "2024-01-03"}]), [{"d": datetime.date(2024, 1, 3)}]) == []
    assert compare(Expected("s", "p", rows=[{"v": 1.5}]), [{"v": decimal.Decimal("1.5")}]) == []
    assert compare(Expected("s", "p", count=2), [{}, {}]) == []


def test_compare_shows_missing_unexpected_and_differing_rows() -> None:
    expected = Expected("rev", "p", rows=[{"c": "DE", "r": 11.0}, {"c": "IT", "r": 1.0}, {"c": "ES", "r": 2.0}])
    lines = compare(expected, [{"c": "DE", "r": 10.0}, {"c": "FR", "r": 5.0}])
    assert lines[0] == "rev: 3 expected row(s) missing, 2 unexpected row(s)"
    assert "  ~ {c: 'DE', r: 11.0}: r: expected 11.0, got 10.0" in lines
    assert "  - {c: 'ES', r: 2.0}" in lines or "  - {c: 'IT', r: 1.0}" in lines
    assert any(line.startswith("  + ") or line.startswith("  ~ ") for line in lines[1:])
    assert compare(Expected("s", "p", rows=[{"nope": 1}]), [{"a": 1}]) == [
        "s: column nope not in the result (it has a)"
    ]
    assert compare(Expected("s", "p", count=3), [{}]) == ["s: expected 3 rows, got 1"]
    ordered = Expected("s", "p", rows=[{"a": 1}, {"a": 2}], ordered=True)
    assert compare(ordered, [{"a": 1}, {"a": 2}]) == []
    assert compare(ordered, [{"a": 2}, {"a": 1}])[0] == "s: the rows differ (in order)"


@pytest.mark.spark
def test_a_passing_test_writes_nothing(spark, tmp_path: Path) -> None:
    [test] = load_test_file(project(tmp_path))
    result = run_test(test, spark)
    assert result.passed, result.differences or result.error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orders_test.yaml", "pipeline.yaml"]
    views = {t.name for t in spark.catalog.listTables() if t.isTemporary}
    assert not views & {"orders", "customers", "orders_clean", "country_revenue", "customer_countries"}


@pytest.mark.spark
def test_fixture_files_in_every_format(spark, tmp_path: Path) -> None:
    (tmp_path / "fixtures").mkdir()
    (tmp_path / "fixtures" / "customers.csv").write_text("name,country\nada,DE\nbob,FR\n")
    (tmp_path / "fixtures" / "customers.json").write_text('{"name": "cy", "country": "IT"}\n')
    spark.createDataFrame([("di", "ES")], "name STRING, country STRING").write.parquet(
        str(tmp_path / "fixtures" / "customers.parquet")
    )
    tests = "config: pipeline.yaml\ntests:\n"
    for fmt, rows in (
        ("csv", "[{name: ada, country: DE}, {name: bob, country: FR}]"),
        ("json", "[{name: cy, country: IT}]"),
        ("parquet", "[{name: di, country: ES}]"),
    ):
        tests += textwrap.dedent(f"""\
          - name: customers from {fmt}
            given: {{customers: {{file: fixtures/customers.{fmt}}}}}
            expect: {{customer_countries: {rows}}}
        """)
    results = [run_test(t, spark) for t in load_test_file(project(tmp_path, tests))]
    assert [(r.test.name, r.passed, r.error) for r in results] == [
        (f"customers from {fmt}", True, None) for fmt in ("csv", "json", "parquet")
    ]


@pytest.mark.spark
def test_a_fixture_lacking_a_column_is_a_clear_error(spark, tmp_path: Path) -> None:
    tests = textwrap.dedent("""\
        config: pipeline.yaml
        tests:
          - name: customers without country
            given: {customers: [{name: ada}]}
            expect: {customer_countries: [{name: ada, country: DE}]}
          - name: an order with a column the source does not declare
            given: {orders: [{order_id: 1, country: DE, amount: 1.0, kind: sale, colour: red}]}
            expect: {orders_clean: {rows: 1}}
          - name: a source without fixture
            given: {}
            expect: {orders_clean: {rows: 1}}
    """)
    results = [run_test(t, spark) for t in load_test_file(project(tmp_path, tests))]
    errors = [r.error or "" for r in results]
    assert "sequence customer_countries cannot run on the fixtures (does a fixture lack a column" in errors[0]
    assert "country" in errors[0]
    assert "column colour is not in the source's schema" in errors[1]
    assert errors[2] == "no fixture for source orders: give rows or {file: PATH} under given"


def test_a_broken_test_file_names_file_line_and_path(tmp_path: Path) -> None:
    tests = textwrap.dedent("""\
        config: pipeline.yaml
        tests:
          - name: typo
            given:
              ordrs: [{order_id: 1}]
            expect:
              country_revenu: {rows: 1}
    """)
    with pytest.raises(ConfigError) as info:
        load_test_file(project(tmp_path, tests))
    text = str(info.value)
    assert "orders_test.yaml:5: tests[0].given.ordrs: 'ordrs' is not a source of" in text
    assert "orders_test.yaml:7: tests[0].expect.country_revenu: 'country_revenu' is not a sequence" in text


@pytest.mark.spark
def test_the_cli_prints_a_line_per_test_and_a_diff_and_exits_1(tmp_path: Path) -> None:
    failing = PASSING + (
        "  - name: a wrong expectation\n"
        "    given:\n"
        "      orders: [{order_id: 1, country: DE, amount: 10.0, kind: sale}]\n"
        "    expect:\n"
        "      country_revenue: [{country: DE, revenue: 12.5, orders: 1}]\n"
    )
    path = project(tmp_path, failing)
    done = subprocess.run(
        [sys.executable, "-m", "spark_job", "test", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"PASS  {path}::revenue per country ignores refunds (")
    assert lines[1].startswith(f"FAIL  {path}::a wrong expectation (")
    assert "        ~ {country: 'DE', revenue: 12.5, orders: 1}: revenue: expected 12.5, got 10.0" in lines
    assert lines[-1] == "sparkpipe test: 1 passed, 1 failed, 0 errors"
    bad = subprocess.run(
        [sys.executable, "-m", "spark_job", "test", str(tmp_path / "missing_test.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "missing_test.yaml: config file not found" in bad.stderr


@pytest.mark.spark
def test_pytest_collects_the_test_files_through_the_plugin(tmp_path: Path) -> None:
    project(tmp_path, PASSING.replace("revenue: 10.0", "revenue: 10.5"))
    (tmp_path / "unrelated_test.yaml").write_text("just: data\n")  # not a sparkpipe test file: ignored
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stdout[-3000:]
    assert "FAILED orders_test.yaml::revenue per country ignores refunds" in done.stdout
    assert "revenue: expected 10.5, got 10.0" in done.stdout
    assert "1 failed" in done.stdout


STATIC_PIPELINE = """\
app_name: static_settings
spark_conf:
  spark.sql.warehouse.dir: {out}/warehouse
  spark.sql.extensions: org.example.NoSuchSessionExtensions
  spark.sql.catalog.spark_catalog.defaultDatabase: fixtures_db
  spark.sql.session.timeZone: UTC
sources:
  orders: {{type: file, format: csv, path: "{out}/real/orders.csv", schema: "order_id BIGINT, amount DOUBLE"}}
sequences:
  - name: where_it_ran
    query: SELECT current_database() AS db, count(*) AS orders FROM orders
    target: {{type: parquet, path: "{out}/where_it_ran"}}
"""
STATIC_TESTS = """\
config: static.yaml
tests:
  - name: static settings are the session's
    given: {orders: [{order_id: 1, amount: 2.0}]}
    expect: {where_it_ran: [{db: fixtures_db, orders: 1}]}
"""
BAD_FIXTURES = """\
config: pipeline.yaml
tests:
  - name: a csv value that is not a number
    given: {orders: {file: fixtures/orders.csv}}
    expect: {orders_clean: {rows: 2}}
  - name: a json line of the wrong type
    given: {orders: {file: fixtures/orders.json}}
    expect: {orders_clean: {rows: 2}}
  - name: a csv header that names other columns
    given: {orders: {file: fixtures/renamed.csv}}
    expect: {orders_clean: {rows: 1}}
  - name: a good fixture
    given: {orders: {file: fixtures/good.csv}}
    expect: {orders_clean: {rows: 1}}
"""


def bad_fixtures(tmp_path: Path) -> Path:
    fixtures = tmp_path / "fixtures"
    fixtures.mkdir(exist_ok=True)
    header = "order_id,country,amount,kind\n"
    (fixtures / "orders.csv").write_text(header + "1,DE,10.0,sale\n2,FR,lots,sale\n3,DE,1.0,sale\n")
    (fixtures / "orders.json").write_text(
        '{"order_id": 1, "country": "DE", "amount": 1.0, "kind": "sale"}\n'
        '{"order_id": "two", "country": "FR", "amount": 2.0, "kind": "sale"}\n'
    )
    (fixtures / "renamed.csv").write_text("id,land,amount,kind\n1,DE,10.0,sale\n")
    (fixtures / "good.csv").write_text(header + "1,DE,10.0,sale\n")
    return project(tmp_path, BAD_FIXTURES)


@pytest.mark.spark
def test_fixture_files_are_read_failfast_and_blamed_with_their_line(spark, tmp_path: Path) -> None:
    results = [run_test(t, spark) for t in load_test_file(bad_fixtures(tmp_path))]
    errors = [r.error for r in results]
    schema = "(order_id BIGINT, country STRING, amount DOUBLE, kind STRING)"
    where = f"fixture tests[0].given.orders: {tmp_path}/fixtures/orders.csv line 3"
    assert errors[0] is not None and errors[0].startswith(f"{where} does not fit the source's schema {schema}"), errors[
        0
    ]
    assert '"lots"' in errors[0]
    if pyspark_version() >= (4, 0):  # Spark 3.5's FAILFAST error is the parser's exception alone
        assert "MALFORMED_RECORD_IN_PARSING" in errors[0]
    assert errors[1] is not None and f"{tmp_path}/fixtures/orders.json line 2 does not fit" in errors[1], errors[1]
    assert errors[2] is not None and f"{tmp_path}/fixtures/renamed.csv does not fit" in errors[2], errors[2]
    assert "header" in errors[2].lower()
    assert (results[3].passed, errors[3]) == (True, None)
    assert all("\n" not in (e or "") and "\tat " not in (e or "") for e in errors)


@pytest.mark.spark
def test_static_settings_on_a_session_handed_over_are_noted_not_a_crash(spark, tmp_path: Path) -> None:
    (tmp_path / "static.yaml").write_text(STATIC_PIPELINE.format(out=tmp_path))
    (tmp_path / "static_test.yaml").write_text(STATIC_TESTS)
    [test] = load_test_file(tmp_path / "static_test.yaml")
    before = {key: spark.conf.get(key, None) for key in test.config.spark_conf}
    result = run_test(test, spark)
    assert any(note.startswith("spark.sql.warehouse.dir is fixed when a session is made") for note in result.notes)
    assert any(note.startswith("spark.sql.extensions is fixed") for note in result.notes)
    assert not result.passed and "fixtures_db" in "\n".join(result.differences)  # ran on the session's database
    assert {key: spark.conf.get(key, None) for key in test.config.spark_conf} == before


@pytest.mark.spark
def test_the_cli_makes_sessions_with_static_settings_and_reports_bad_fixtures_on_one_line(tmp_path: Path) -> None:
    """``sparkpipe test`` in a process of its own: a config's static ``spark.sql.*`` settings (warehouse,
    extensions, default database) are the session's, without a traceback; fixtures that do not fit are
    ERROR lines naming file and line, and stderr carries no Spark stack trace."""
    bad_fixtures(tmp_path)
    (tmp_path / "static.yaml").write_text(STATIC_PIPELINE.format(out=tmp_path))
    (tmp_path / "static_test.yaml").write_text(STATIC_TESTS)
    done = subprocess.run(
        [sys.executable, "-m", "spark_job", "test", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stdout + done.stderr[-3000:]
    out = done.stdout
    assert f"PASS  {tmp_path}/static_test.yaml::static settings are the session's (" in out, out
    assert f"PASS  {tmp_path}/orders_test.yaml::a good fixture (" in out
    assert f"ERROR {tmp_path}/orders_test.yaml::a csv value that is not a number (" in out
    assert f"{tmp_path}/fixtures/orders.csv line 3 does not fit the source's schema" in out
    assert "note:" not in out
    assert out.splitlines()[-1] == "sparkpipe test: 2 passed, 0 failed, 3 errors"
    assert "Traceback" not in done.stderr and "\tat " not in done.stderr, done.stderr[-3000:]
    assert "Exception" not in done.stderr and "ERROR" not in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "warehouse").exists() or not any((tmp_path / "warehouse").iterdir())


TARGETS = """\
app_name: crm
sources:
  changes:
    type: file
    format: json
    path: {out}/real/changes
    schema: "id INT, city STRING, changed INT, op STRING"
sequences:
  - name: current
    query: SELECT id, city, changed, op FROM changes
    target:
      type: delta
      path: {out}/lake/current
      mode: merge
      merge_keys: [id]
      delete_when: "op = 'D'"
      merge_condition: "t.changed < s.changed"
  - name: history
    query: SELECT id, city, changed, op FROM changes
    target:
      type: iceberg
      path: {out}/lake/db/history
      mode: scd2
      merge_keys: [id]
      scd2: {{updated_at: changed}}
      delete_when: "op = 'D'"
  - name: log
    query: SELECT id, changed FROM changes
    incremental: {{source: changes, column: changed}}
    target: {{type: delta, path: "{out}/lake/log", mode: append}}
  - name: latest
    query: SELECT id, city FROM changes WHERE op <> 'D'
    target: {{type: parquet, path: "{out}/latest", mode: error}}
"""

CHANGES = (
    "changes: [{id: 1, city: Bergen, changed: 20, op: U}, {id: 2, city: Milan, changed: 5, op: U}, "
    "{id: 3, city: Paris, changed: 30, op: D}, {id: 4, city: Lima, changed: 20, op: U}]"
)


def target_tests(tmp_path: Path, tests: str) -> list[object]:
    (tmp_path / "pipeline.yaml").write_text(TARGETS.format(out=tmp_path))
    text = textwrap.dedent(tests).replace("CHANGES", CHANGES)
    (tmp_path / "crm_test.yaml").write_text("config: pipeline.yaml\ntests:\n" + text)
    return list(load_test_file(tmp_path / "crm_test.yaml"))


@pytest.mark.spark
def test_a_merge_target_after_the_run(spark, tmp_path: Path) -> None:
    tests = target_tests(
        tmp_path,
        """\
        - name: upserts, an older change, a delete
          given:
            CHANGES
            this:
              current:
                - {id: 1, city: Oslo, changed: 10, op: U}
                - {id: 2, city: Rome, changed: 10, op: U}
                - {id: 3, city: Paris, changed: 10, op: U}
          expect:
            current:
              this:
                - {id: 1, city: Bergen, changed: 20}
                - {id: 2, city: Rome, changed: 10}
                - {id: 4, city: Lima, changed: 20}
        - name: the first run creates the table from the rows it keeps
          given:
            CHANGES
          expect:
            current: {this: [{id: 1}, {id: 2}, {id: 4}]}
        - name: a wrong expectation of the target is a difference
          given:
            CHANGES
            this: {current: [{id: 2, city: Rome, changed: 10, op: U}]}
          expect:
            current: {this: [{id: 2, city: Milan}, {id: 1}, {id: 4}]}
        """,
    )
    results = [run_test(t, spark) for t in tests]  # type: ignore[arg-type]
    assert [(r.passed, r.error) for r in results[:2]] == [(True, None), (True, None)], [r.differences for r in results]
    assert not results[2].passed and results[2].error is None
    assert results[2].differences[0].startswith("current target: 1 expected row(s) missing")
    assert "city: expected 'Milan', got 'Rome'" in "\n".join(results[2].differences)


@pytest.mark.spark
def test_duplicate_keys_and_an_existing_target_in_mode_error_fail_as_the_run_would(spark, tmp_path: Path) -> None:
    tests = target_tests(
        tmp_path,
        """\
        - name: duplicate keys
          given:
            changes: [{id: 1, city: A, changed: 1, op: U}, {id: 1, city: B, changed: 2, op: U}]
          expect: {current: {this: 1}}
        - name: error mode on an existing target
          given:
            changes: [{id: 1, city: A, changed: 1, op: U}]
            this: {latest: []}
          expect: {latest: {this: 1}}
        - name: error mode on no target
          given:
            changes: [{id: 1, city: A, changed: 1, op: U}]
          expect: {latest: {this: [{id: 1, city: A}]}}
        """,
    )
    duplicate, existing, fresh = (run_test(t, spark) for t in tests)  # type: ignore[arg-type]
    assert duplicate.error is not None and "duplicate" in duplicate.error and "current" in duplicate.error
    assert existing.error is not None and "mode is error" in existing.error
    assert fresh.passed, fresh.differences or fresh.error


@pytest.mark.spark
def test_an_scd2_target_after_the_run(spark, tmp_path: Path) -> None:
    tests = target_tests(
        tmp_path,
        """\
        - name: history
          given:
            CHANGES
            this:
              history:
                - {id: 1, city: Oslo, changed: 10, op: U, valid_from: 10, valid_to: null, is_current: true}
                - {id: 2, city: Rome, changed: 10, op: U, valid_from: 10, valid_to: null, is_current: true}
                - {id: 3, city: Nice, changed: 10, op: U, valid_from: 10, valid_to: null, is_current: true}
          expect:
            history:
              this:
                - {id: 1, city: Oslo, valid_from: 10, valid_to: 20, is_current: false}
                - {id: 1, city: Bergen, valid_from: 20, valid_to: null, is_current: true}
                - {id: 2, city: Milan, valid_from: 5, valid_to: 10, is_current: false}
                - {id: 2, city: Rome, valid_from: 10, valid_to: null, is_current: true}
                - {id: 3, city: Nice, valid_from: 10, valid_to: 30, is_current: false}
                - {id: 4, city: Lima, valid_from: 20, valid_to: null, is_current: true}
        """,
    )
    [result] = [run_test(t, spark) for t in tests]  # type: ignore[arg-type]
    assert result.passed, result.differences or result.error


@pytest.mark.spark
def test_a_watermarked_sequence_reads_beyond_the_given_target(spark, tmp_path: Path) -> None:
    tests = target_tests(
        tmp_path,
        """\
        - name: only what is new is appended
          given:
            CHANGES
            this: {log: [{id: 9, changed: 20}]}
          expect:
            log:
              rows: [{id: 3, changed: 30}]
              this: [{id: 9, changed: 20}, {id: 3, changed: 30}]
        - name: a first run reads everything
          given:
            CHANGES
          expect:
            log: {rows: 4, this: 4}
        """,
    )
    results = [run_test(t, spark) for t in tests]  # type: ignore[arg-type]
    assert [(r.passed, r.error) for r in results] == [(True, None), (True, None)], [r.differences for r in results]


def test_target_fixtures_and_expectations_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        target_tests(
            tmp_path,
            """\
            - name: bad
              given:
                changes: [{id: 1, city: A, changed: 1, op: U}]
                this: {nope: [], current: "rows"}
              expect:
                current: {this: "all"}
            """,
        )
    said = {(p.path, p.message.split(" (")[0]) for p in caught.value.problems}
    assert ("tests[0].given.this.nope", "'nope' is not a sequence of " + str(tmp_path / "pipeline.yaml")) in said
    assert any(path == "tests[0].given.this.current" for path, _ in said), said
    assert any(path == "tests[0].expect.current.this" for path, _ in said), said
    assert all(p.line is not None for p in caught.value.problems)


def test_a_source_named_this_keeps_its_fixture(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(
        "app_name: t\nsources:\n  this: {type: file, format: csv, path: "
        f"{tmp_path}/x.csv}}\nsequences:\n  - name: s\n    query: SELECT * FROM this\n"
        f"    target: {{type: parquet, path: {tmp_path}/out}}\n"
    )
    (tmp_path / "t_test.yaml").write_text(
        "config: pipeline.yaml\ntests:\n  - name: t\n    given: {this: [{a: 1}]}\n    expect: {s: [{a: 1}]}\n"
    )
    [test] = load_test_file(tmp_path / "t_test.yaml")
    assert [f.source_id for f in test.given] == ["this"] and test.this == ()
