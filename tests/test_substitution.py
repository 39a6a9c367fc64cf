"""Substitution happens once: vars passed in are data, escapes survive staging, secrets stay hidden."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from spark_job.cli import main
from spark_job.config import SPARK_REDACTION_DEFAULT, load_config
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
    described = json.dumps([s.reader().describe() for s in config.sources] + config.targets())
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
    assert own.spark_conf["spark.redaction.regex"] == r"(?i)mine|x\.y"


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
