"""Validation: every problem reported at once as ``path: message``, before any Spark starts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from spark_job.config.validation import load_config
from spark_job.errors import ConfigError

from .support import REPO

BASE = """
app_name: v
vars: {day: "2024-01-01"}
sources:
  events: {type: file, format: parquet, path: /data/events, alias: events}
  users: {type: file, format: csv, path: /data/users, alias: users}
sequences:
  - name: first
    query: SELECT * FROM events JOIN users USING (user_id)
    target: {type: parquet, path: /out/first, mode: overwrite}
  - name: second
    query: SELECT count(*) AS n FROM first
    target: {type: parquet, path: /out/second}
"""


def problems(text: str, tmp_path: Path, **kwargs: object) -> list[str]:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path, **kwargs)  # type: ignore[arg-type]
    return [f"{p.path}: {p.message}" for p in err.value.problems]


CASES = {
    "missing app_name": (BASE.replace("app_name: v", ""), ": missing required key 'app_name'"),
    "unknown top-level key with suggestion": (
        BASE + "sequnces: []\n",
        "sequnces: unknown key for the pipeline (did you mean 'sequences'?)",
    ),
    "unknown source key with suggestion": (
        BASE.replace("format: csv", "fromat: csv"),
        "sources.users.fromat: unknown key for a file source (did you mean 'format'?)",
    ),
    "unknown target key with suggestion": (
        BASE.replace("mode: overwrite", "mdoe: overwrite"),
        "sequences[0].target.mdoe: unknown key for a parquet target (did you mean 'mode'?)",
    ),
    "bad mode": (
        BASE.replace("mode: overwrite", "mode: upsert"),
        "sequences[0].target.mode: 'upsert' is not one of overwrite, append, error, ignore",
    ),
    "wrong type: spark_conf": (BASE + "spark_conf: [a, b]\n", "spark_conf: must be a mapping"),
    "wrong type: sequences": (BASE.split("sequences:")[0] + "sequences: {a: 1}\n", "sequences: must be a list"),
    "wrong type: partition_by": (
        BASE.replace("mode: overwrite", "partition_by: 3"),
        "sequences[0].target.partition_by: must be a string or a list of strings, got an integer 3",
    ),
    "wrong type: coalesce": (
        BASE.replace("mode: overwrite", "coalesce: many"),
        "sequences[0].target.coalesce: must be an integer, got a string 'many'",
    ),
    "unknown reader type": (
        BASE.replace("type: file, format: csv", "type: fiel, format: csv"),
        "sources.users.type: unknown reader type 'fiel' (did you mean 'file'?",
    ),
    "unknown writer type": (
        BASE.replace("type: parquet, path: /out/second", "type: parket, path: /out/second"),
        "sequences[1].target.type: unknown writer type 'parket' (did you mean 'parquet'?",
    ),
    "undefined var": (
        BASE.replace("/data/events", "'/data/${dya}/events'"),
        "sources.events.path: undefined variable ${dya} (did you mean 'day'?)",
    ),
    "duplicate alias": (BASE.replace("alias: users", "alias: events"), "sources.users.alias: alias 'events' is"),
    "duplicate sequence name": (
        BASE.replace("name: second", "name: first"),
        "sequences[1].name: sequence name 'first' is already used by sequences[0]",
    ),
    "sequence name equals an alias": (
        BASE.replace("name: second", "name: users"),
        "sequences[1].name: 'users' is also the alias of sources.users",
    ),
    "unknown relation": (
        BASE.replace("FROM events JOIN", "FROM evnts JOIN"),
        "sequences[0].query: reads 'evnts', which is neither a source alias nor a sequence (did you mean 'events'?",
    ),
    "dependency cycle": (
        BASE.replace("FROM events JOIN users USING (user_id)", "FROM second"),
        "dependency cycle: first -> second -> first",
    ),
    "a sequence reading itself": (
        BASE.replace("FROM first", "FROM second"),
        "sequences[1].query: reads its own result 'second'",
    ),
    "two sequences writing one path": (
        BASE.replace("/out/second", "/out/first/"),
        "sequences[1].target: writes the same target as sequences[0]",
    ),
    "two sequences writing one table": (
        BASE.replace("{type: parquet, path: /out/first, mode: overwrite}", "{type: table, table: db.T}").replace(
            "{type: parquet, path: /out/second}", "{type: table, table: db.t, mode: append}"
        ),
        "sequences[1].target: writes the same target as sequences[0]",
    ),
    "s3 needs s3://": (
        BASE.replace("type: file, format: csv, path: /data/users", "type: s3, format: csv, path: gs://b/users"),
        "sources.users.path: 'gs://b/users' must start with s3:// or s3a://",
    ),
    "gcs needs gs://": (
        BASE.replace("{type: parquet, path: /out/second}", "{type: gcs, path: s3://b/second}"),
        "sequences[1].target.path: 's3://b/second' must start with gs://",
    ),
    "jdbc needs url": (
        BASE.replace("type: file, format: csv, path: /data/users", "type: jdbc, table: users"),
        "sources.users: missing required key 'url'",
    ),
    "jdbc needs table or query": (
        BASE.replace("type: file, format: csv, path: /data/users", "type: jdbc, url: 'jdbc:postgresql://h/db'"),
        "sources.users: needs one of 'table' or 'query'",
    ),
    "jdbc partitioned read needs all bounds": (
        BASE.replace(
            "type: file, format: csv, path: /data/users",
            "type: jdbc, url: 'jdbc:postgresql://h/db', table: u, partition_column: id, num_partitions: 4",
        ),
        "sources.users.partition_column: a partitioned read also needs lower_bound, upper_bound",
    ),
    "bigquery needs table or query": (
        BASE.replace("type: file, format: csv, path: /data/users", "type: bigquery"),
        "sources.users: needs one of 'table' or 'query'",
    ),
    "file needs path": (
        BASE.replace("type: file, format: csv, path: /data/users", "type: file, format: csv"),
        "sources.users: missing required key 'path'",
    ),
    "sequence needs a query": (
        BASE.replace("    query: SELECT count(*) AS n FROM first\n", ""),
        "sequences[1]: missing required key 'query' (or 'query_file')",
    ),
    "query_file not found": (
        BASE.replace("query: SELECT count(*) AS n FROM first", "query_file: nope.sql"),
        "sequences[1].query_file: file not found",
    ),
    "two statements": (
        BASE.replace("SELECT count(*) AS n FROM first", "SELECT 1 FROM first; SELECT 2"),
        "sequences[1].query: holds 2 statements",
    ),
    "a query then a DROP": (
        BASE.replace("SELECT count(*) AS n FROM first", "SELECT 1; DROP TABLE x"),
        "sequences[1].query: is a DROP TABLE statement, not a query",
    ),
    **{
        f"not a query: {statement.split()[0]}": (
            BASE.replace("SELECT count(*) AS n FROM first", statement),
            f"sequences[1].query: is a {kind} statement, not a query",
        )
        for statement, kind in [
            ("DROP VIEW events", "DROP VIEW"),
            ("INSERT OVERWRITE DIRECTORY '/tmp/x' SELECT * FROM first", "INSERT OVERWRITE"),
            ("CREATE TEMPORARY VIEW v AS SELECT 1", "CREATE TEMPORARY"),
            ("SET spark.sql.ansi.enabled=false", "SET SPARK"),
            ("CACHE TABLE first", "CACHE TABLE"),
            ("ADD JAR /tmp/evil.jar", "ADD JAR"),
            ("USE other_db", "USE OTHER_DB"),
            ("MERGE INTO t USING first ON t.id = first.id WHEN MATCHED THEN DELETE", "MERGE INTO"),
            ("WITH a AS (SELECT * FROM first) INSERT INTO t SELECT * FROM a", "WITH ... INSERT"),
            ("EXPLAIN SELECT * FROM first", "EXPLAIN SELECT"),
        ]
    },
    "IDENTIFIER of a parameter": (
        BASE.replace("FROM first", "FROM IDENTIFIER(:tbl)"),
        "sequences[1].query: names a table with IDENTIFIER(...) whose argument is not a string literal",
    ),
    "IDENTIFIER hides no dependency": (
        BASE.replace("FROM first", "FROM IDENTIFIER('frist')"),
        "sequences[1].query: reads 'frist', which is neither a source alias nor a sequence (did you mean 'first'?",
    ),
    "raw string hides no dependency": (
        BASE.replace("SELECT count(*) AS n FROM first", "SELECT r'C:\\' AS p FROM frist"),
        "sequences[1].query: reads 'frist'",
    ),
    "non-ASCII alias": (
        BASE.replace("alias: users", "alias: événements"),
        "sources.users.alias: 'événements' is not a valid view name: use ASCII letters, digits and _",
    ),
    "superscript in a sequence name": (
        BASE.replace("name: second", "name: ev²"),
        "sequences[1].name: 'ev²' is not a valid view name",
    ),
    "folded query with a comment": (
        BASE.replace(
            "    query: SELECT count(*) AS n FROM first",
            "    query: >-\n      SELECT count(*) AS n -- how many\n      FROM first",
        ),
        "sequences[1].query: is a folded YAML scalar (>): its lines are joined into one",
    ),
    "empty env reference": (
        BASE.replace("path: /out/second", "path: '/out/${env:}'"),
        "sequences[1].target.path: ${env:} names no environment variable",
    ),
    "empty file reference": (
        BASE.replace("path: /out/second", "path: '/out/${file: }'"),
        "sequences[1].target.path: ${file: } names no file",
    ),
    "empty query_file": (
        BASE.replace("query: SELECT count(*) AS n FROM first", 'query_file: ""'),
        "sequences[1].query_file: is empty: give the file holding the query",
    ),
    "coalesce 0": (
        BASE.replace("path: /out/second}", "path: /out/second, coalesce: 0}"),
        "sequences[1].target.coalesce: must be at least 1, got 0",
    ),
    "empty path": (BASE.replace("path: /out/second", 'path: ""'), "sequences[1].target.path: is empty: give"),
    "empty source path": (BASE.replace("path: /data/users", "path: '  '"), "sources.users.path: is empty"),
    "JDBC URL with a bad port": (
        BASE.replace(
            "{type: parquet, path: /out/second}",
            "{type: jdbc, url: 'jdbc:postgresql://u:pw@db:54x2/shop', table: t}",
        ),
        "sequences[1].target.url: port '54x2' of host 'db' is not a number from 1 to 65535: "
        "jdbc:postgresql://db:54x2/shop",
    ),
    "JDBC URL with a port out of range": (
        BASE.replace("{type: parquet, path: /out/second}", "{type: jdbc, url: 'jdbc:mysql://db:70000/x', table: t}"),
        "sequences[1].target.url: port '70000'",
    ),
    "Spark's own substitution turned on": (
        BASE + "spark_conf: {spark.sql.variable.substitute: true}\n",
        "spark_conf.spark.sql.variable.substitute: Spark's own substitution would expand",
    ),
    "unquoted colon in a query": (
        BASE.replace("query: SELECT count(*) AS n FROM first", "query:\n      SELECT note: x FROM first"),
        "sequences[1].query: must be a string, got a mapping with key 'SELECT note' (quote text that holds ': ')",
    ),
    "5,000-digit integer": (BASE + "fail_fast: " + "9" * 5000 + "\n", "fail_fast: a number of 5,000 digits"),
    "no sequences": (BASE.split("sequences:")[0] + "sequences: []\n", "sequences: is empty"),
}
_SECOND_TARGET = "    target: {type: parquet, path: /out/second}"


def _with_rules(rules: str, extra: str = "") -> str:
    """BASE with data-quality keys on its second sequence."""
    return BASE.replace(_SECOND_TARGET, f"    expectations:\n{rules}{extra}{_SECOND_TARGET}")


CASES.update(
    {
        "expectation: aggregate condition": (
            _with_rules("      - {name: a, condition: 'count(*) > 0'}\n"),
            "sequences[1].expectations[0].condition: calls count(), which aggregates rows",
        ),
        "expectation: unknown action": (
            _with_rules("      - {name: a, condition: n > 0, on_fail: stop}\n"),
            "sequences[1].expectations[0].on_fail: 'stop' is not one of warn, drop, fail, quarantine",
        ),
        "expectation: duplicate name": (
            _with_rules("      - {name: a, condition: n > 0}\n      - {name: a, condition: n < 9}\n"),
            "sequences[1].expectations[1].name: rule name 'a' is already used by sequences[1].expectations[0]",
        ),
        "expectation: quarantine without target": (
            _with_rules("      - {name: a, condition: n > 0, on_fail: quarantine}\n"),
            "sequences[1].expectations: rule 'a' has on_fail: quarantine but the sequence has no 'quarantine'",
        ),
        "expectation: quarantine inside the target": (
            _with_rules(
                "      - {name: a, condition: n > 0, on_fail: quarantine}\n",
                "    quarantine: {type: parquet, path: /out/second/rejected}\n",
            ),
            "sequences[1].quarantine.path: lies inside the target of sequences[1]",
        ),
        "expectation: bad tolerance": (
            _with_rules("      - {name: a, condition: n > 0, on_fail: fail, max_failed: 'ten %'}\n"),
            "sequences[1].expectations[0].max_failed: must be a row count (10) or a share of the rows",
        ),
        "expectation: subquery": (
            _with_rules("      - {name: a, condition: 'n IN (SELECT n FROM first)'}\n"),
            "sequences[1].expectations[0].condition: holds SELECT: a subquery is not allowed",
        ),
        "row bounds crossed": (
            _with_rules("      - {name: a, condition: n > 0}\n", "    min_rows: 5\n    max_rows: 2\n"),
            "sequences[1].max_rows: is 2, below min_rows 5",
        ),
        # Digits other than 0-9: str.isdigit() accepts "²", which int() refuses (and int() reads other scripts' digits).
        "expectation: tolerance with a superscript digit": (
            _with_rules("      - {name: a, condition: n > 0, on_fail: fail, max_failed: '²'}\n"),
            "sequences[1].expectations[0].max_failed: must be a row count (10) or a share of the rows",
        ),
        "row bound with a superscript digit": (
            _with_rules("      - {name: a, condition: n > 0}\n", "    min_rows: '³'\n"),
            "sequences[1].min_rows: must be an integer written with the digits 0-9, got a string '³'",
        ),
    }
)
CASES.update(
    {
        "coalesce with a superscript digit": (
            BASE.replace("path: /out/second}", "path: /out/second, coalesce: '¹'}"),
            "sequences[1].target.coalesce: must be an integer written with the digits 0-9, got a string '¹'",
        ),
        "max_parallel with a superscript digit": (
            BASE + "max_parallel: '²'\n",
            "max_parallel: must be an integer written with the digits 0-9, got a string '²'",
        ),
        "fetchsize in Arabic-Indic digits": (
            BASE.replace(
                "type: file, format: csv, path: /data/users",
                "type: jdbc, url: 'jdbc:postgresql://h/db', table: u, fetchsize: '\u0661\u0660'",
            ),
            "sources.users.fetchsize: must be an integer written with the digits 0-9",
        ),
        "batchsize a negative number twice": (
            BASE.replace(
                "{type: parquet, path: /out/second}", "{type: jdbc, url: 'jdbc:h2:mem:x', table: t, batchsize: '--5'}"
            ),
            "sequences[1].target.batchsize: must be an integer, got a string '--5'",
        ),
        "JDBC port with a superscript digit": (
            BASE.replace("{type: parquet, path: /out/second}", "{type: jdbc, url: 'jdbc:mysql://db:²/x', table: t}"),
            "sequences[1].target.url: port '²' of host 'db' is not a number from 1 to 65535",
        ),
        "table target overwriting the table a source reads": (
            BASE.replace("type: file, format: csv, path: /data/users", "type: table, table: shop.users").replace(
                "{type: parquet, path: /out/second}", "{type: table, table: '`SHOP`.Users'}"
            ),
            "sequences[1].target.table: overwrites the catalog table `SHOP`.Users, which sources.users reads",
        ),
        "table quarantine overwriting the table a source reads": (
            _with_rules(
                "      - {name: a, condition: n > 0, on_fail: quarantine}\n",
                "    quarantine: {type: table, table: SHOP.users}\n",
            ).replace("type: file, format: csv, path: /data/users", "type: table, table: shop.users"),
            "sequences[1].quarantine.table: overwrites the catalog table SHOP.users, which sources.users reads",
        ),
        "table quarantine overwriting a table the query reads": (
            _with_rules(
                "      - {name: a, condition: n > 0, on_fail: quarantine}\n",
                "    quarantine: {type: table, table: spark_catalog.default.audit}\n",
            ).replace(
                "SELECT count(*) AS n FROM first", "SELECT count(*) AS n FROM first JOIN default.audit USING (n)"
            ),
            "sequences[1].quarantine.table: overwrites the catalog table spark_catalog.default.audit, which "
            "sequences[1].query reads",
        ),
    }
)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_each_problem_is_reported_with_its_path(case: str, tmp_path: Path) -> None:
    text, expected = CASES[case]
    found = problems(text, tmp_path)
    assert any(expected in p for p in found), found


def test_base_config_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(BASE)
    assert [s.name for s in load_config(path).sequences] == ["first", "second"]


def test_all_problems_are_reported_at_once_in_file_order(tmp_path: Path) -> None:
    text = (
        BASE.replace("format: csv", "fromat: csv")
        .replace("mode: overwrite", "mode: upsert")
        .replace("FROM first", "FROM frist")
    )
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    lines = str(err.value).splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{path}:6: sources.users.fromat:")
    assert lines[1].startswith(f"{path}:10: sequences[0].target.mode:")
    assert lines[2].startswith(f"{path}:12: sequences[1].query: reads 'frist'")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "the config is empty"),
        ("# only a comment\n", "the config is empty"),
        ("app_name: x\nsources: {a: [1, 2}\n", "p.yaml:2: YAML syntax error"),
        ("app_name: x\n  bad: indent\n", "p.yaml:2: YAML syntax error"),
        ("- a\n- b\n", "the config must be a mapping with app_name, sources and sequences, got a list"),
        ("app_name: x\napp_name: y\nsequences: []\n", "p.yaml:2: app_name: duplicate key"),
    ],
)
def test_malformed_files(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert expected in str(err.value)


def test_json_syntax_error_has_its_line(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{\n  "app_name": "x",\n  "sequences": [,]\n}')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}:3: JSON syntax error" in str(err.value)


def test_json_problems_have_their_lines_and_duplicate_keys_are_found(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(
        '{\n "app_name": "x",\n "sources": {"a": {"type": "csv", "path": "/in"}},\n'
        ' "sequences": [\n  {"name": "s", "query": "SELECT * FROM a",\n'
        '   "target": {"type": "parquet", "path": "/o", "mode": "upsert"}}\n ]\n}\n'
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}:6: sequences[0].target.mode:" in str(err.value)
    path.write_text('{"app_name": "x",\n "app_name": "y", "sources": {}, "sequences": []}')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}:2: app_name: duplicate key" in str(err.value)
    # JSON that pure PyYAML reads differently (a tab before a value) keeps working, with lines when
    # libyaml reads it.
    path.write_text('{"app_name":\t"x", "sources": {"a": {"type": "csv", "path": "/in"}},\n"sequences": []}')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert re.search(rf"{re.escape(str(path))}(:2)?: sequences: is empty", str(err.value))
    path.write_text('{"app_name":\t"x", "app_name": "y", "sources": {}, "sequences": []}')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert re.search(rf"{re.escape(str(path))}(: duplicate key 'app_name'|:1: app_name: duplicate key)", str(err.value))


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"app_name: x\nname: caf\xe9\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}:2: not UTF-8 text" in str(err.value)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter, reporting whether pyspark was imported."""
    code = (
        "import sys; from spark_job.cli import main; rc = main(sys.argv[1:]); "
        "print('PYSPARK_IMPORTED' if 'pyspark' in sys.modules else 'NO_PYSPARK'); sys.exit(rc)"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_cli_config_error_exits_2_without_traceback_spark_or_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = tmp_path / "p.yaml"
    path.write_text(BASE.replace("/out/", f"{out}/").replace("mode: overwrite", "mode: upsert"))
    result = run_cli("run", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "sequences[0].target.mode: 'upsert' is not one of overwrite, append, error, ignore" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "NO_PYSPARK" in result.stdout
    assert not out.exists()


def test_cli_bad_var_syntax_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(BASE)
    result = run_cli("validate", "--config", str(path), "--var", "oops", cwd=tmp_path)
    assert result.returncode == 2
    assert "--var: 'oops' is not NAME=VALUE" in result.stderr


def test_cli_validate_reports_order(tmp_path: Path) -> None:
    result = run_cli("validate", "--config", str(REPO / "examples" / "pipeline.yaml"), cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "sequences in order: daily_event_counts, country_revenue, top_countries" in result.stdout
