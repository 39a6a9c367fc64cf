"""Secrets given by reference reach Spark but no log line, metrics document or output."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from spark_job.config.validation import load_config

from .support import POSTGRES_JAR, Postgres


def test_file_references_are_secrets(tmp_path: Path) -> None:
    secret_file = tmp_path / "db-password"
    secret_file.write_text("hunter2-from-file\n")
    config = load_config(
        {
            "app_name": "s",
            "sources": {
                "db": {
                    "type": "jdbc",
                    "url": "jdbc:postgresql://h/d",
                    "table": "t",
                    "password": f"${{file:{secret_file}}}",
                }
            },
            "sequences": [{"name": "x", "query": "SELECT * FROM db", "target": {"type": "parquet", "path": "/o"}}],
        }
    )
    assert config.sources[0].spec["password"] == "hunter2-from-file"
    assert config.mask("auth failed: hunter2-from-file") == "auth failed: ***"
    kept = load_config(
        config.to_document()
        | {
            "sources": {
                "db": {
                    "type": "jdbc",
                    "url": "jdbc:postgresql://h/d",
                    "table": "t",
                    "password": "${file:/run/secrets/pw}",
                }
            }
        },
        resolve_env=False,
    )
    assert kept.to_document()["sources"]["db"]["password"] == "${file:/run/secrets/pw}"


def test_a_known_secret_appears_in_no_output(postgres: Postgres, tmp_path: Path) -> None:
    password = "sp-" + secrets.token_hex(12)
    with postgres.connect() as conn:
        conn.execute("DROP ROLE IF EXISTS reporter")
        conn.execute(f"CREATE ROLE reporter LOGIN PASSWORD '{password}'")
        conn.execute("DROP TABLE IF EXISTS salaries")
        conn.execute("CREATE TABLE salaries AS SELECT g AS id, g * 100 AS amount FROM generate_series(1, 50) g")
        conn.execute("GRANT SELECT ON salaries TO reporter")
        conn.execute("GRANT CREATE ON SCHEMA public TO reporter")
    creds = {"user": "reporter", "password": "${env:REPORTER_PASSWORD}"}
    out = tmp_path / "out"
    config = {
        "app_name": "secret_scan",
        "spark_conf": {"spark.jars": POSTGRES_JAR},
        "sources": {"salaries": {"type": "jdbc", "url": postgres.jdbc_url, "table": "salaries", **creds}},
        "sequences": [
            {
                "name": "total",
                "query": "SELECT sum(amount) AS total FROM salaries",
                "target": {"type": "jdbc", "url": postgres.jdbc_url, "table": "salary_total", **creds},
            },
            {"name": "copy", "query": "SELECT * FROM salaries", "target": {"type": "json", "path": str(out / "copy")}},
            {
                "name": "broken",
                "query": "SELECT * FROM salaries",
                "target": {"type": "jdbc", "url": postgres.jdbc_url, "table": "pg_catalog.pg_class", **creds},
            },
        ],
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    metrics_file = tmp_path / "metrics.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spark_job",
            "run",
            "--config",
            str(path),
            "--master",
            "local[1]",
            "--metrics-out",
            str(metrics_file),
        ],
        env={**os.environ, "REPORTER_PASSWORD": password},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1  # "broken" may not write into the catalog: its error is reported
    metrics = json.loads(metrics_file.read_text())
    assert metrics["sequences"]["total"]["status"] == "succeeded"
    assert metrics["sequences"]["broken"]["status"] == "failed"
    outputs = {
        "stdout": proc.stdout,
        "stderr": proc.stderr,
        "metrics": metrics_file.read_text(),
        "config": path.read_text(),
    }
    outputs.update({str(p): p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()})
    leaked = [name for name, text in outputs.items() if password in text]
    assert not leaked


def test_validation_messages_quote_no_secret(tmp_path: Path) -> None:
    """A config error quotes the value it is about: a value from ${env:}/${file:}, a literal password,
    or a credential inside a URL is shown as *** (the message still says where and what)."""
    import pytest

    from spark_job.errors import ConfigError

    (tmp_path / "pw").write_text("FromAFile77\n")
    config = {
        "app_name": "masked",
        "sources": {
            "u": {"type": "jdbc", "url": "postgres://app:${env:PW}@db/shop", "table": "t", "alias": "u"},
            "v": {"type": "jdbc", "url": "mysql://app:LiteralPw99@db/shop", "table": "t", "alias": "v"},
            "w": {"type": "jdbc", "url": "jdbc:postgresql://db/shop", "table": "t", "alias": "w", "password": 12345678},
        },
        "sequences": [
            {
                "name": "a",
                "query": "SELECT * FROM u JOIN v JOIN w",
                "target": {"type": "s3", "format": "parquet", "path": "gs://key:${file:" + f"{tmp_path}/pw" + "}@b/x"},
            },
            {"name": "b", "query": "SELECT 1 AS x", "target": {"type": "parquet", "path": "/o/b", "mode": "${env:PW}"}},
        ],
    }
    with pytest.raises(ConfigError) as err:
        load_config(config, environ={"PW": "FromTheEnv55"})
    text = "\n".join(str(p) for p in err.value.problems)
    assert "sources.u.url: 'postgres://app:***@db/shop' is not a JDBC URL" in text
    assert "sources.v.url: 'mysql://app:***@db/shop' is not a JDBC URL" in text
    assert "sequences[0].target.path: 'gs://key:***@b/x' must start with s3://" in text
    assert "sequences[1].target.mode: '***' is not one of" in text
    assert "sources.w.password: must be a string, got an integer ***" in text
    for secret in ("FromTheEnv55", "LiteralPw99", "FromAFile77", "12345678"):
        assert secret not in text
