"""Substitution happens once: vars passed in are data, escapes survive staging, secrets stay hidden."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spark_job.cli import main
from spark_job.config.masking import SPARK_REDACTION_DEFAULT, STRING_REDACTION
from spark_job.config.validation import load_config
from spark_job.errors import ConfigError

LABEL = "label=${env:SOME_SECRET}"
ENV = {"SOME_SECRET": "s3cr3t-from-env", "E": "env-value"}


def pipeline(query: str, vars: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "app_name": "subst",
        "vars": vars or {},
        "sources": {"events": {"type": "file", "format": "csv", "path": "/in/events.csv"}},
        "sequences": [{"name": "s", "query": query, "target": {"type": "parquet", "path": "/out/s"}}],
        **extra,
    }


def staged_then_loaded(config: dict[str, Any], vars: dict[str, str] | None = None) -> Any:
    """What the operator does (validate without the environment, stage the document), then the driver."""
    staged = load_config(config, vars, resolve_env=False, environ={})
    document = json.loads(json.dumps(staged.to_document()))
    return load_config(document, environ=ENV)


def test_a_var_passed_in_is_never_expanded_again() -> None:
    config = pipeline("SELECT '${label}' AS label FROM events", vars={"label": "default"})
    direct = load_config(config, {"label": "${env:SOME_SECRET}"}, environ=ENV)
    assert direct.sequences[0].query == "SELECT '${env:SOME_SECRET}' AS label FROM events"
    staged = staged_then_loaded(config, {"label": "${env:SOME_SECRET}"})
    assert staged.sequences[0].query == "SELECT '${env:SOME_SECRET}' AS label FROM events"
    for reference in ("${file:/run/secrets/db}", "${secret:aws:prod/db}", "$${x}", "${label}"):
        assert staged_then_loaded(config, {"label": reference}).sequences[0].query == (
            f"SELECT '{reference}' AS label FROM events"
        )


def test_escapes_and_kept_references_survive_staging() -> None:
    config = pipeline(
        "SELECT '$${not_a_var}' AS a, '${env:E}' AS b, '${v}' AS c FROM events",
        vars={"v": "$${x} and ${env:E}"},
    )
    once = load_config(config, environ=ENV)
    twice = staged_then_loaded(config)
    assert once.sequences[0].query == twice.sequences[0].query
    assert (
        twice.sequences[0].query
        == "SELECT '${not_a_var}' AS a, 'env-value' AS b, '${x} and env-value' AS c FROM events"
    )
    # Staging twice (a task retried from a staged document) changes nothing either.
    again = load_config(json.loads(json.dumps(twice.to_document())), environ=ENV)
    assert again.sequences[0].query == once.sequences[0].query
    assert again.to_document() == twice.to_document()


# Text built from the pieces substitution reads: literal dollars and braces, escapes, vars, env references.
PIECES = st.sampled_from(["$", "$$", "{", "}", "${", "$${", "x", " ", "${v}", "${w}", "${env:E}", "$${v}", "$${env:E}"])
TEXT = st.lists(PIECES, max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(query_tail=TEXT, declared=TEXT, passed=TEXT)
def test_one_substitution_equals_stage_then_load(query_tail: str, declared: str, passed: str) -> None:
    config = pipeline("SELECT 1 FROM events -- " + query_tail, vars={"v": declared, "w": "w"})
    try:
        once = load_config(config, {"w": passed}, environ=ENV)
    except ConfigError:  # a config error once (an undefined var): nothing to compare
        return
    try:
        twice = staged_then_loaded(config, {"w": passed})
    except ConfigError as exc:
        # A literal "$" just before a reference kept for the driver has no spelling that survives a
        # second substitution: refused when staging, never run differently.
        assert "cannot be passed on" in str(exc), str(exc)
        return
    assert twice.sequences[0].query == once.sequences[0].query


def test_literal_credentials_and_url_credentials_are_secrets() -> None:
    config = load_config(
        {
            "app_name": "lit",
            "spark_conf": {
                "fs.azure.account.key.acct.dfs.core.windows.net": "azure-account-key-literal",
                "spark.sql.shuffle.partitions": "4",
            },
            "sources": {
                "db": {
                    "type": "jdbc",
                    "url": "jdbc:sqlserver://h;user=sa;password={pw;in-url};databaseName=d",
                    "table": "t",
                },
                "pg": {"type": "jdbc", "url": "jdbc:postgresql://h/d", "table": "t", "password": "literal-pw"},
                "my": {"type": "jdbc", "url": "jdbc:mysql://u:mysql-pw@h/d", "table": "t"},
            },
            "sequences": [
                {
                    "name": "s",
                    "query": "SELECT * FROM db JOIN pg USING (id) JOIN my USING (id)",
                    "target": {"type": "jdbc", "url": "jdbc:oracle:thin:scott/tiger-pw@//h/svc", "table": "o"},
                }
            ],
        }
    )
    for secret in ("pw;in-url", "literal-pw", "mysql-pw", "tiger-pw", "azure-account-key-literal"):
        assert secret in config.secrets
        assert config.mask(f"failed with {secret}!") == "failed with ***!"
    assert "4" not in config.secrets
    described = json.dumps([s.reader.describe() for s in config.sources] + config.targets())
    for secret in ("pw;in-url", "mysql-pw", "tiger-pw"):
        assert secret not in described
    assert "jdbc:sqlserver://h;databaseName=d" in described


def test_spark_redacts_every_conf_key_holding_a_secret() -> None:
    config = load_config(
        pipeline(
            "SELECT * FROM events",
            spark_conf={
                "fs.azure.account.key.acct.dfs.core.windows.net": "${env:SOME_SECRET}",
                "spark.hadoop.custom.setting": "${env:E}",
                "spark.hadoop.google.cloud.auth.service.account.json.keyfile.content": "{}",
                "spark.sql.shuffle.partitions": "4",
            },
        ),
        environ=ENV,
    )
    regex = config.spark_conf["spark.redaction.regex"]
    assert regex.startswith(SPARK_REDACTION_DEFAULT + "|")
    assert r"|custom\.setting" in regex  # shown as spark.hadoop.custom.setting and custom.setting
    assert r"fs\.azure\.account\.key\.acct\.dfs\.core\.windows\.net" in regex
    assert "keyfile" in regex and "shuffle" not in regex
    # A regex the user set is kept and extended.
    own = load_config(
        pipeline("SELECT * FROM events", spark_conf={"spark.redaction.regex": "(?i)mine", "x.y": "${env:E}"}),
        environ=ENV,
    )
    assert own.spark_conf["spark.redaction.regex"] == r"(?i)mine|x\.y|spark\.sql\.redaction\.string\.regex"


def test_a_var_the_config_does_not_know_is_an_error(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "app_name: v\nvars: {run_date: '2024-01-01'}\nsources: {events: {type: file, format: csv, path: /in}}\n"
        "sequences:\n  - {name: s, query: \"SELECT '${run_date}' FROM events\", target: {type: parquet, path: /o}}\n"
    )
    assert main(["validate", "--config", str(path), "--var", "run_dat=2024-02-02", "--var", "nosuch=x"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: --var run_dat: the config neither declares 'run_dat'" in err
    assert "did you mean 'run_date'?" in err
    assert f"{path}: --var nosuch:" in err
    assert main(["validate", "--config", str(path), "--var", "run_date=2024-02-02"]) == 0


def test_expansion_is_bounded() -> None:
    doubling = {f"v{i}": f"${{v{i + 1}}}${{v{i + 1}}}" for i in range(40)} | {"v40": "x" * 10}
    try:
        load_config(pipeline("SELECT '${v0}' FROM events", vars=doubling))
    except ConfigError as exc:
        assert "the config expands to more than 10,485,760 characters" in str(exc)
    else:
        raise AssertionError("a doubling chain of vars was accepted")


def test_the_driver_keeps_vars_literal_and_the_event_log_redacts_secrets(tmp_path: Path) -> None:
    """A real driver run: the var's text reaches the output literally; the event log has the conf key
    whose value came from ${env:}, never the value."""
    events = tmp_path / "events.csv"
    events.write_text("id\n1\n")
    log_dir = tmp_path / "eventlog"
    log_dir.mkdir()
    out = tmp_path / "out"
    config = {
        "app_name": "redaction",
        "spark_conf": {
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": log_dir.as_uri(),
            "spark.eventLog.compress": "false",  # the test reads the JSON lines
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "1",
            "spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net": "${env:SOME_SECRET}",
            "spark.sparkpipe.custom.credential.holder": "${env:E}",
        },
        "vars": {"label": "default"},
        "sources": {"events": {"type": "file", "format": "csv", "path": str(events), "options": {"header": True}}},
        "sequences": [
            {
                "name": "s",
                "query": "SELECT id, '${label}' AS label, '$${kept}' AS escaped FROM events",
                "target": {"type": "json", "path": str(out)},
            }
        ],
    }
    path = tmp_path / "p.json"
    path.write_text(json.dumps(config))
    proc = subprocess.run(
        [sys.executable, "-m", "spark_job", "run", "--config", str(path), "--master", "local[1]", "--var", LABEL],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **ENV},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for part in sorted(out.glob("part-*")) for line in part.read_text().splitlines()]
    assert rows == [{"id": "1", "label": "${env:SOME_SECRET}", "escaped": "${kept}"}]
    logs = [f for f in log_dir.rglob("*") if f.is_file()]
    assert logs, list(tmp_path.rglob("*"))
    text = "".join(f.read_text(errors="replace") for f in logs)
    assert "SparkListenerEnvironmentUpdate" in text
    assert "spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net" in text
    assert "spark.sparkpipe.custom.credential.holder" in text
    assert ENV["SOME_SECRET"] not in text and ENV["E"] not in text, log_dir
    assert ENV["SOME_SECRET"] not in proc.stdout + proc.stderr


def test_spark_redacts_a_resolved_secret_in_the_sql_it_shows(spark: Any, tmp_path: Path, capsys: Any) -> None:
    """A value resolved from ${env:} inside a query: the driver tells Spark to redact it
    (``spark.sql.redaction.string.regex``), so ``explain()`` and the plan descriptions of the event log show
    ``*********(redacted)``, and the setting naming it is shown redacted too."""
    events = tmp_path / "events.csv"
    events.write_text("id\n1\n2\n")
    log_dir = tmp_path / "eventlog"
    log_dir.mkdir()
    config = {
        "app_name": "redacted-sql",
        "spark_conf": {
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": log_dir.as_uri(),
            "spark.eventLog.compress": "false",  # the test reads the JSON lines
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "1",
        },
        "vars": {"token": "${env:SOME_SECRET}"},
        "sources": {"events": {"type": "file", "format": "csv", "path": str(events), "options": {"header": True}}},
        "sequences": [
            {
                "name": "t",
                "query": "SELECT id FROM events WHERE id <> '${token}'",
                "target": {"type": "json", "path": str(tmp_path / "out")},
            }
        ],
    }
    loaded = load_config(config, environ=ENV)
    query = loaded.sequences[0].query
    assert ENV["SOME_SECRET"] in query  # the SQL Spark runs holds the value
    spark.read.option("header", True).csv(str(events)).createOrReplaceTempView("events")
    spark.sql(query).explain(True)
    assert ENV["SOME_SECRET"] in capsys.readouterr().out  # shown, unless Spark is told otherwise
    spark.conf.set(STRING_REDACTION, loaded.spark_conf[STRING_REDACTION])
    try:
        spark.sql(query).explain(True)
        shown = capsys.readouterr().out
    finally:
        spark.conf.unset(STRING_REDACTION)
    assert "*********(redacted)" in shown and ENV["SOME_SECRET"] not in shown, shown

    path = tmp_path / "p.json"
    path.write_text(json.dumps(config))
    proc = subprocess.run(
        [sys.executable, "-m", "spark_job", "run", "--config", str(path), "--master", "local[1]"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **ENV},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ENV["SOME_SECRET"] not in proc.stdout + proc.stderr
    logged = [
        json.loads(line)
        for f in sorted(log_dir.rglob("events_*"))  # the rolling log's event files (not its status marker)
        for line in f.read_text().splitlines()
        if line.strip()
    ]
    plans = [e["physicalPlanDescription"] for e in logged if "physicalPlanDescription" in e]
    assert plans and not [p for p in plans if ENV["SOME_SECRET"] in p]
    assert any("Filter" in p and "*********(redacted)" in p for p in plans), plans
    [environment] = [e for e in logged if e["Event"] == "SparkListenerEnvironmentUpdate"]
    assert ENV["SOME_SECRET"] not in json.dumps(environment)
    assert dict(environment["Spark Properties"])[STRING_REDACTION] == "*********(redacted)"


# -- a value passed in never changes the SQL ------------------------------------------------------

RSQUO = "\u2019"  # a quotation mark that looks like a quote and is not one to Spark
SECRET_READ = "' || reflect('java.lang.System', 'getenv', 'SOME_SECRET') || '"


def refused(config: dict[str, Any], vars: dict[str, str], vars_from: str = "--var") -> str:
    """The config error a var passed in causes (the test fails when the config is accepted)."""
    try:
        load_config(config, vars, environ=ENV, vars_from=vars_from)
    except ConfigError as exc:
        return str(exc)
    raise AssertionError(f"accepted: {vars!r}")


@pytest.mark.parametrize(
    ("query", "value", "says"),
    [
        ("SELECT '${label}' AS label FROM events", SECRET_READ, "would end the string literal"),
        ("SELECT '${label}' AS label, 'z' AS other FROM events", "x' --", "would end the string literal"),
        ("SELECT '${label}' AS label, 'z' AS other FROM events", "x' /*", "would end the string literal"),
        ("SELECT '${label}' AS label, 'z' AS other FROM events", "tail\\", "would end the string literal"),
        ('SELECT "${label}" AS label FROM events', 'x" OR "1', "would end the string literal"),
        ("SELECT r'${label}' AS label, 'z' AS other FROM events", "x' --", "would end the string literal"),
        ("SELECT `${label}` FROM events", "id`, current_user() AS `u", "would end the `quoted name`"),
        ("SELECT ${label} AS label FROM events", "current_user()", "is not one number, quoted string or name"),
        ("SELECT ${label} AS label FROM events", "current_user", "is the keyword CURRENT_USER"),
        ("SELECT ${label} AS label FROM events", "session_user", "is the keyword SESSION_USER"),
        ("SELECT ${label} FROM events", "id, secret AS b", "is more than one number, quoted string or name"),
        ("SELECT * FROM events WHERE id = ${label}", "1 OR 1=1", "is more than one number"),
        ("SELECT * FROM events WHERE id = ${label} AND 2 > 1", "1 --", "one number, quoted string or name"),
        ("SELECT * FROM events WHERE id = ${label}", "1 /*", "one number, quoted string or name"),
        ("SELECT * FROM events WHERE id = ${label} AND 2 > 1", "", "is empty where the SQL needs a value"),
        ("SELECT * FROM events WHERE id = id-${label}", "-1", "would turn SQL after it into a comment"),
        ("SELECT * FROM ${label}", "events UNION SELECT * FROM secrets", "is more than one number"),
        ("SELECT * FROM events ${label}", "UNION", "is the keyword UNION"),
        ("SELECT * FROM events_${label}", "2024 e, secrets", "would end the name it is placed in"),
        ("SELECT * FROM events_${label}", "2024-1", "would end the name it is placed in"),
        ("SELECT ${label} AS label FROM events", f"{RSQUO} OR 1=1 --", "one number, quoted string or name"),
        ("SELECT 1 AS one FROM events -- ${label}\n", "x\nUNION SELECT 2", "would end the comment"),
        ("SELECT 1 AS one FROM events -- ${label}\n", "x\rUNION SELECT 2", "would end the comment"),
        ("SELECT 1 AS one -- ${label}\n, 2 AS two FROM events", "x\\", "would end the comment"),
        ("SELECT 1 /* ${label} */ AS one FROM events", "*/ + 1 /*", "would end the comment"),
        ("SELECT /*+ REPARTITION(${label}) */ * FROM events", "2), COALESCE(1", "is more than one number"),
    ],
)
def test_a_value_passed_in_that_would_change_the_sql_is_a_config_error(query: str, value: str, says: str) -> None:
    message = refused(pipeline(query, vars={"label": "default"}), {"label": value})
    assert f"sequences[0].query: the value {value!r}"[:40] in message, message
    assert "of label (--var)" in message and says in message, message
    assert "a value passed in is data" in message


@pytest.mark.parametrize(
    ("query", "value"),
    [
        ("SELECT '${label}' AS label FROM events", "plain text, with commas; and (parentheses)"),
        ("SELECT '${label}' AS label FROM events", "it\\'s"),  # an escaped quote stays inside
        ("SELECT '${label}' AS label FROM events", "-- not a comment /* nor this */"),
        (
            "SELECT '${label}' AS label FROM events",
            f"{RSQUO} OR {RSQUO}1{RSQUO}={RSQUO}1",
        ),  # quote look-alikes are not quotes
        ("SELECT '${label}' AS label FROM events", "${env:SOME_SECRET}"),
        ("SELECT '${label}' AS label FROM events", ""),
        ("SELECT r'${label}' AS label FROM events", "C:\\temp\\"),  # a raw string escapes nothing
        ("SELECT `${label}` FROM events", "odd``name"),
        ("SELECT * FROM events WHERE id = ${label}", "42"),
        ("SELECT * FROM events WHERE id = ${label}", "-5"),
        ("SELECT * FROM events WHERE id > ${label}", "1.5e3"),
        ("SELECT * FROM events WHERE day = ${label}", "'2024-01-03'"),
        ("SELECT ${label} AS picked FROM events", "user_id"),
        ("SELECT * FROM ${label}", "lake.events"),
        ("SELECT * FROM ${label}", "`lake`.`odd name`"),
        ("SELECT * FROM events_${label}", "2024_01"),
        ("SELECT * FROM events WHERE array_contains(split('${label}', ','), cast(id AS STRING))", "1,2,3"),
    ],
)
def test_a_value_that_stays_its_literal_or_name_is_accepted(query: str, value: str) -> None:
    config = pipeline(query, vars={"label": "default"})
    config["sources"]["events_2024_01"] = {"type": "file", "format": "csv", "path": "/in/e2.csv"}
    loaded = load_config(config, {"label": value}, environ=ENV, vars_from="--var")
    assert value in loaded.sequences[0].query


def test_values_through_the_configs_own_vars_are_checked_where_they_land() -> None:
    config = pipeline("SELECT '${greeting}' AS g FROM events", vars={"label": "x", "greeting": "hello ${label}!"})
    message = refused(config, {"label": "x' || current_user() || '"})
    assert "of label (--var, through ${greeting})" in message, message
    # Twice removed, and in a rule's condition, a JDBC source's query and a source's schema.
    config = pipeline(
        "SELECT * FROM events",
        vars={"label": "x", "inner": "<${label}>", "outer": "[${inner}]"},
        sources={
            "events": {"type": "file", "format": "csv", "path": "/in/e.csv", "schema": "id BIGINT, ${label} STRING"},
            "db": {"type": "jdbc", "url": "jdbc:postgresql://h/d", "query": "SELECT * FROM t WHERE c = '${outer}'"},
        },
    )
    config["sequences"][0]["expectations"] = [{"name": "r", "condition": "label <> '${outer}'"}]
    message = refused(config, {"label": "a' OR '1'='1"})
    assert "sequences[0].expectations[0].condition: the value" in message
    assert "of label (--var, through ${outer}, ${inner}) would end the string literal" in message
    assert "sources.db.query: the value" in message and "which a database may read otherwise than Spark" in message
    assert "sources.events.schema: the value" in message and "(line 1 of the schema)" in message


def test_a_database_query_takes_no_quote_or_comment_mark_from_a_value() -> None:
    config = pipeline(
        "SELECT * FROM db",
        sources={"db": {"type": "jdbc", "url": "jdbc:mysql://h/d", "query": "SELECT * FROM t WHERE d = '${day}'"}},
        vars={"day": "x"},
    )
    assert (
        load_config(config, {"day": "2024-01-03"}, vars_from="--var").sources[0].spec["query"].endswith("'2024-01-03'")
    )
    for value in ("x\\", "x' OR 'a'='a", "x# comment", "x; DROP TABLE t", "x $$"):
        assert "which a database may read otherwise than Spark" in refused(config, {"day": value}), value
    # A JDBC table name (Spark and sparkpipe paste it into their own SQL) is one name.
    config["sources"]["db"] = {"type": "jdbc", "url": "jdbc:mysql://h/d", "table": "${day}"}
    assert load_config(config, {"day": "shop.orders"}, vars_from="--var").sources[0].spec["table"] == "shop.orders"
    assert "is more than one number" in refused(config, {"day": "(SELECT password FROM users) AS t"})


def test_a_query_file_and_its_line_are_named(tmp_path: Path) -> None:
    (tmp_path / "q.sql").write_text("SELECT id,\n  '${label}' AS label\nFROM events\n")
    path = tmp_path / "p.yaml"
    path.write_text(
        "app_name: q\nvars: {label: x}\nsources: {events: {type: file, format: csv, path: /in/e.csv}}\n"
        "sequences:\n  - name: s\n    query_file: q.sql\n    target: {type: parquet, path: /out/s}\n"
    )
    assert main(["validate", "--config", str(path), "--var", f"label={SECRET_READ}"]) == 2
    assert main(["validate", "--config", str(path), "--var", "label=fine"]) == 0


def test_the_cli_names_the_flag_file_line_and_what_to_do(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "app_name: v\nvars: {label: x}\nsources: {events: {type: file, format: csv, path: /in}}\n"
        "sequences:\n  - name: s\n    query: |\n      SELECT id,\n        ${label} AS label\n      FROM events\n"
        "    target: {type: parquet, path: /o}\n"
    )
    assert main(["validate", "--config", str(path), "--var", "label=current_user()"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:6: sequences[0].query: the value 'current_user()' of label (--var) is not one number" in err
    assert "(line 2 of the query)" in err
    assert "to pass text, put the reference inside quotes in the SQL ('${label}')" in err
    assert "array_contains(split('${ids}', ','), cast(id AS STRING))" in err
    assert "sparkpipe: 1 problem in the config; nothing was run" in err


def test_the_authors_own_vars_and_test_files_are_not_restricted() -> None:
    config = pipeline("SELECT * FROM events WHERE ${filter}", vars={"filter": "id = 1 OR id = 2"})
    assert load_config(config).sequences[0].query.endswith("WHERE id = 1 OR id = 2")
    assert load_config(config, {"filter": "id > 3 AND id < 9"}, vars_from=None).sequences[0].query.endswith("id < 9")
    assert "of filter (vars passed in)" in refused(config, {"filter": "id > 3 OR 1 = 1"}, vars_from="vars passed in")


@pytest.mark.spark
def test_accepted_values_reach_spark_as_the_literal_they_stand_for(spark) -> None:
    """What the check lets through is data on real Spark: each text comes back as the literal itself."""
    texts = [
        f"{RSQUO} OR {RSQUO}1{RSQUO}={RSQUO}1",
        "it\\'s",
        "-- not a comment",
        "/* nor this */",
        "${env:SOME_SECRET}",
        "tab\there",
    ]
    for text in texts:
        config = load_config(
            pipeline("SELECT '${label}' AS label", vars={"label": "x"}), {"label": text}, vars_from="--var"
        )
        assert spark.sql(config.sequences[0].query).first()[0] == text.replace("\\'", "'"), text
    named = load_config(pipeline("SELECT 1 AS `${label}`"), {"label": "odd``name"}, vars_from="--var")
    assert spark.sql(named.sequences[0].query).columns == ["odd`name"]
    number = load_config(pipeline("SELECT 10 - ${label} AS n"), {"label": "-5"}, vars_from="--var")
    assert spark.sql(number.sequences[0].query).first()[0] == 15


# Property: whatever value is accepted, Spark's own lexer cuts the statement as it cuts it with a neutral
# value, but for the value's own token(s); a value standing alone is one literal or (qualified) name.

TEMPLATES = [
    "SELECT '{v}' AS a, 'z' AS b FROM events",
    'SELECT "{v}" AS a, "z" AS b FROM events',
    "SELECT r'{v}' AS a, 'z' AS b FROM events",
    "SELECT `{v}`, 'z' AS b FROM events",
    "SELECT {v} AS a, 'z' AS b FROM events",
    "SELECT id FROM events WHERE id = {v} AND 'q' = 'q'",
    "SELECT id FROM events WHERE id = id-{v} AND 'q' = 'q'",
    "SELECT id AS a_{v}, 'z' AS b FROM events",
    "SELECT 1 AS one -- {v}\n, 'z' AS b FROM events",
    "SELECT 1 /* {v} */ AS one, 'z' AS b FROM events",
    "SELECT /*+ REPARTITION({v}) */ id, 'z' AS b FROM events",
]
PIECES_OF_VALUES = st.sampled_from(
    [*"'\"`\\-/*\n\r x1.,();re+9${}#\té²", RSQUO, "--", "/*", "*/", "a_b", "''", "``", "OR", "UNION", "current_user"]
)
VALUES = st.lists(PIECES_OF_VALUES, max_size=8).map("".join)
LITERAL_TYPES = {
    "STRING_LITERAL",
    "DOUBLEQUOTED_STRING",
    "INTEGER_VALUE",
    "DECIMAL_VALUE",
    "EXPONENT_VALUE",
    "BIGINT_LITERAL",
    "SMALLINT_LITERAL",
    "TINYINT_LITERAL",
    "FLOAT_LITERAL",
    "DOUBLE_LITERAL",
    "BIGDECIMAL_LITERAL",
}


def spark_tokens(spark: Any, text: str) -> list[tuple[str, str, int, int]]:
    """Spark's own lexer (``SqlBaseLexer``): (type, text, start, end) of every token but whitespace."""
    parser = spark._jvm.org.apache.spark.sql.catalyst.parser
    stream = spark._jvm.org.antlr.v4.runtime.CharStreams.fromString(text)
    lexer = parser.SqlBaseLexer(parser.UpperCaseCharStream(stream))
    lexer.removeErrorListeners()
    vocabulary = lexer.getVocabulary()
    out = []
    for token in lexer.getAllTokens():
        kind = str(vocabulary.getSymbolicName(token.getType()))
        if kind != "WS":
            # Spark's stop index is inclusive and counts code points: these texts are in the BMP.
            out.append((kind, str(token.getText()), int(token.getStartIndex()), int(token.getStopIndex()) + 1))
    return out


def changes_only_its_own_tokens(spark: Any, template: str, value: str) -> str | None:
    """Why ``value`` in ``template`` changes Spark's tokens outside its own, or None."""
    start = template.index("{v}")
    text, neutral = template.replace("{v}", value), template.replace("{v}", "x")
    actual, reference = spark_tokens(spark, text), spark_tokens(spark, neutral)
    shift = len(value) - 1
    before = [t for t in reference if t[3] <= start]
    after = [t for t in reference if t[2] >= start + 1]
    if actual[: len(before)] != before:
        return f"tokens before the value changed: {actual[: len(before)]} != {before}"
    tail = actual[len(actual) - len(after) :] if after else []
    if [(k, x, s - shift, e - shift) for k, x, s, e in tail] != after:
        return f"tokens after the value changed: {tail} != {after}"
    own = actual[len(before) : len(actual) - len(after)]
    [held] = reference[len(before) : len(reference) - len(after)]
    if held[1] != "x":  # inside a string, quoted name or comment: one token of that type
        ok = len(own) == 1 and own[0][0] == held[0]
        return None if ok else f"the value's token is {own}, not one {held[0]}"
    kinds = [k for k, _, _, _ in own]
    if len(own) == 1 and (kinds[0] in LITERAL_TYPES or kinds[0] in ("IDENTIFIER", "BACKQUOTED_IDENTIFIER")):
        return None
    if kinds in (["MINUS", k] for k in LITERAL_TYPES):
        return None
    dotted = all(k == "DOT" for k in kinds[1::2]) and len(own) % 2 == 1
    return None if dotted and kinds[0] != "DOT" else f"the value stands for {own}, not one literal or name"


@pytest.mark.spark
@settings(max_examples=400, deadline=None)
@given(template=st.sampled_from(TEMPLATES), value=VALUES, nested=st.booleans())
def test_an_accepted_value_never_changes_sparks_tokens_outside_its_own(
    spark: Any, template: str, value: str, nested: bool
) -> None:
    query = template.replace("{v}", "${w}" if nested else "${v}")
    vars = {"v": "x", "w": "${v}"}
    try:
        loaded = load_config(pipeline(query, vars=vars), {"v": value}, vars_from="--var")
    except ConfigError as exc:
        assert "a value passed in is data" in str(exc) or "would" not in str(exc), str(exc)
        return
    assert loaded.sequences[0].query == template.replace("{v}", value)
    assert changes_only_its_own_tokens(spark, template, value) is None, (template, value)


@pytest.mark.spark
def test_neutral_values_pass_every_template_and_the_oracle_sees_an_injection(spark: Any) -> None:
    """The property above is not vacuous: ordinary values are accepted in every template, and the oracle
    (Spark's lexer) does see the statements the check refuses change."""
    for template in TEMPLATES:
        for value in ("abc", "12"):
            query = template.replace("{v}", "${v}")
            load_config(pipeline(query, vars={"v": "x"}), {"v": value}, vars_from="--var")
            assert changes_only_its_own_tokens(spark, template, value) is None, (template, value)
    assert changes_only_its_own_tokens(spark, TEMPLATES[0], "' || current_user() || '") is not None
    assert changes_only_its_own_tokens(spark, TEMPLATES[4], "a, secret") is not None
    assert changes_only_its_own_tokens(spark, TEMPLATES[8], "x\nUNION") is not None
