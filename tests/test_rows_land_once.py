"""Every row lands exactly once: data-quality rules whose conditions are not deterministic, a ``fail`` rule
beside a ``drop`` rule on targets that cannot stage, a quarantine whose target cannot commit, and no
secret of a rule or a query in what the driver or Spark prints (real local Spark and PostgreSQL)."""

from __future__ import annotations

import datetime
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from spark_job.cli import main
from spark_job.config.validation import load_config
from spark_job.engine.capabilities import capabilities_of
from spark_job.engine.runner import PipelineRunner

from .support import Postgres

ENV = {"PG_USER": "sparkpipe", "PG_PASSWORD": "sparkpipe"}
JDBC_CREDS = {"user": "${env:PG_USER}", "password": "${env:PG_PASSWORD}", "driver": "org.postgresql.Driver"}
ROWS = 240


def run(spark: Any, *sequences: dict, **config: Any) -> dict:
    loaded = load_config({"app_name": "once", "sequences": list(sequences), **config}, environ=ENV)
    return PipelineRunner(loaded, spark=spark).run()


def read_ids(spark: Any, path: Path, fmt: str = "parquet") -> list[int]:
    if not path.exists():
        return []
    return [r.id for r in spark.read.format(fmt).load(str(path)).select("id").collect()]


def split(spark: Any, tmp_path: Path, seq: dict) -> tuple[list[int], list[int], dict]:
    """Run ``seq`` (target ``o``, quarantine ``q``); the ids written to each and the sequence's metrics."""
    metrics = run(spark, seq)
    assert metrics["status"] == "succeeded", metrics
    return read_ids(spark, tmp_path / "o"), read_ids(spark, tmp_path / "q"), metrics["sequences"][seq["name"]]


def assert_each_row_once(target: list[int], quarantine: list[int], metrics: dict, rows: int = ROWS) -> None:
    """No row twice, none in both, the dropped ones are the rest, and the metrics count what was written."""
    assert len(set(target)) == len(target) and len(set(quarantine)) == len(quarantine)
    assert not set(target) & set(quarantine)
    assert set(target) | set(quarantine) <= set(range(rows))
    assert metrics["rows_written"] == len(target), metrics
    assert metrics["rows_quarantined"] == len(quarantine), metrics
    assert metrics["rows_dropped"] == rows - len(target) - len(quarantine), metrics


@pytest.mark.parametrize("mode", ["overwrite", "append"])  # check-then-commit, commit-then-check
def test_a_random_rule_puts_each_row_in_exactly_one_place(spark: Any, tmp_path: Path, mode: str) -> None:
    """``rand()`` in the rules and in the query: each condition is computed once per row, and the quarantine
    is written from the rows the target's write computed (its ``r`` column says which way each row went)."""
    seq = {
        "name": "events",
        "query": f"SELECT id, rand() AS r FROM range(0, {ROWS}, 1, 4)",
        "expectations": [
            {"name": "lucky", "condition": "rand() > 0.3", "on_fail": "drop"},
            {"name": "high", "condition": "r > 0.5", "on_fail": "quarantine"},
            {"name": "coin", "condition": "rand() > 0.5", "on_fail": "quarantine"},
            {"name": "watch", "condition": "rand() > 0.5"},
        ],
        "quarantine": {"type": "parquet", "path": str(tmp_path / "q")},
        "target": {"type": "parquet", "path": str(tmp_path / "o"), "mode": mode},
        "cache": True,  # the readers get the rows kept in memory, not the query again
    }
    reader = {
        "name": "reader",
        "query": "SELECT id FROM events",
        "target": {"type": "parquet", "path": str(tmp_path / "read")},
    }
    metrics = run(spark, seq, reader)
    assert metrics["status"] == "succeeded", metrics
    target, quarantine = read_ids(spark, tmp_path / "o"), read_ids(spark, tmp_path / "q")
    counts = metrics["sequences"]["events"]
    assert_each_row_once(target, quarantine, counts)
    assert 0 < len(target) < ROWS and 0 < len(quarantine) < ROWS and counts["rows_dropped"] > 0
    assert sorted(read_ids(spark, tmp_path / "read")) == sorted(target)  # readers see what was written
    written = spark.read.parquet(str(tmp_path / "o")).collect()
    assert all(row.r > 0.5 for row in written)
    rejected = spark.read.parquet(str(tmp_path / "q")).collect()
    for row in rejected:  # each row's failed_rules agree with the r it was written with
        assert ("high" in row.failed_rules) == (row.r <= 0.5), row
        assert {"high", "coin"} & set(row.failed_rules), row
    # The counts are of the same evaluations: a row failing a quarantine rule is in the quarantine (also
    # when it fails the drop rule), and a row failing the drop rule alone is dropped.
    failed = {name: e["failed_rows"] for name, e in counts["expectations"].items()}
    for rule in ("high", "coin"):
        assert failed[rule] == sum(1 for row in rejected if rule in row.failed_rules), (rule, failed)
    lucky_rejected = sum(1 for row in rejected if "lucky" in row.failed_rules)
    assert failed["lucky"] == lucky_rejected + counts["rows_dropped"], failed


@pytest.mark.parametrize(
    "condition",
    ["substr(uuid(), 1, 1) < '8'", "coin_flip(id)", "rand(7) + rand() > 1.0", "shuffle(array(0, 1))[0] = 1"],
    ids=["uuid", "python-udf", "rand-sum", "shuffle"],
)
def test_each_kind_of_non_deterministic_condition_puts_each_row_once(
    spark: Any, tmp_path: Path, condition: str
) -> None:
    """The class, not one function: ``uuid()``, a Python UDF marked non-deterministic, a sum of random
    numbers and ``shuffle()``, each as a ``quarantine`` and a ``drop`` rule at once."""
    import random

    from pyspark.sql.functions import udf

    spark.udf.register("coin_flip", udf(lambda _: random.random() > 0.5, "boolean").asNondeterministic())
    seq = {
        "name": "events",
        "query": f"SELECT id FROM range(0, {ROWS}, 1, 4)",
        "expectations": [
            {"name": "kept", "condition": condition, "on_fail": "quarantine"},
            {"name": "again", "condition": condition, "on_fail": "drop"},
        ],
        "quarantine": {"type": "parquet", "path": str(tmp_path / "q")},
        "target": {"type": "parquet", "path": str(tmp_path / "o")},
    }
    target, quarantine, counts = split(spark, tmp_path, seq)
    assert_each_row_once(target, quarantine, counts)
    assert 0 < len(target) < ROWS and 0 < len(quarantine) < ROWS, counts


def test_a_random_rule_on_a_spark_connect_session(spark_connect: Any, tmp_path: Path) -> None:
    """The same on a Spark Connect client: its server checkpoints the rows. A 3.5 client has no checkpoint,
    and its server analyses the plan again for each job, drawing new seeds: such a sequence is refused
    before any job, saying why; with seeded functions it runs (persisted rows, no counts)."""
    seq: dict[str, Any] = {
        "name": "events",
        "query": f"SELECT id, rand() AS r FROM range(0, {ROWS}, 1, 4)",
        "expectations": [
            {"name": "lucky", "condition": "rand() > 0.3", "on_fail": "drop"},
            {"name": "high", "condition": "r > 0.5", "on_fail": "quarantine"},
        ],
        "quarantine": {"type": "parquet", "path": str(tmp_path / "q")},
        "target": {"type": "parquet", "path": str(tmp_path / "o")},
    }
    if not capabilities_of(spark_connect).counts_writes:  # a Spark Connect 3.5 client
        refused = run(spark_connect, seq)["sequences"]["events"]
        assert refused["status"] == "failed", refused
        assert "a Spark Connect 3.5 client cannot compute its rows once" in refused["error"], refused
        assert "give the functions a seed (rand(42))" in refused["error"]
        assert not (tmp_path / "o").exists() and not (tmp_path / "q").exists()
        seq["query"] = seq["query"].replace("rand()", "rand(42)")
        seq["expectations"][0]["condition"] = "rand(7) > 0.3"
    metrics = run(spark_connect, seq)
    assert metrics["status"] == "succeeded", metrics
    target, quarantine = read_ids(spark_connect, tmp_path / "o"), read_ids(spark_connect, tmp_path / "q")
    counts = metrics["sequences"]["events"]
    if counts["rows_written"] is not None:  # a 3.5 client (or a slow 4.0 server) reports none
        assert_each_row_once(target, quarantine, counts)
    assert not set(target) & set(quarantine) and len(set(target)) == len(target)
    assert all(r.r > 0.5 for r in spark_connect.read.parquet(str(tmp_path / "o")).collect())
    assert all(r.r <= 0.5 for r in spark_connect.read.parquet(str(tmp_path / "q")).collect())


def test_a_current_timestamp_rule_splits_the_rows_at_one_instant(spark: Any, tmp_path: Path) -> None:
    """``event_ts <= current_timestamp()`` over events a second apart around now: the target holds
    every event up to one instant and the quarantine every later one, none in both, none lost."""
    start = datetime.datetime.now() - datetime.timedelta(seconds=5)  # the session's time zone: this machine's
    seq = {
        "name": "events",
        "query": (
            f"SELECT id, TIMESTAMP '{start:%Y-%m-%d %H:%M:%S}' + make_interval(0, 0, 0, 0, 0, 0, id) "
            f"AS event_ts FROM range(0, {ROWS}, 1, 4)"
        ),
        "expectations": [
            {"name": "not_future", "condition": "event_ts <= current_timestamp()", "on_fail": "quarantine"}
        ],
        "quarantine": {"type": "parquet", "path": str(tmp_path / "q")},
        "target": {"type": "parquet", "path": str(tmp_path / "o")},
    }
    target, quarantine, counts = split(spark, tmp_path, seq)
    assert_each_row_once(target, quarantine, counts)
    assert sorted(target + quarantine) == list(range(ROWS))  # nothing dropped
    assert target and quarantine and max(target) < min(quarantine), (target, quarantine)


@pytest.mark.parametrize("kind", ["parquet", "table"])
def test_a_row_failing_a_drop_and_a_fail_rule_aborts_an_append(
    spark: Any, tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a target that cannot stage, the ``fail`` abort comes before the ``drop`` filter: no row is
    appended, the run exits 1, a retry (same run key) appends nothing either, and once the rule passes
    the rows are appended once."""
    if kind == "table":
        table = f"default.once_append_{os.getpid()}"
        spark.sql(f"DROP TABLE IF EXISTS {table}")
        spark.sql(f"CREATE TABLE {table} (id BIGINT, amount BIGINT) USING parquet")
        spark.sql(f"INSERT INTO {table} VALUES (1000, 1)")
        target: dict = {"type": "table", "table": table, "mode": "append"}

        def count() -> int:
            return int(spark.sql(f"SELECT count(*) AS n FROM {table}").first().n)
    else:
        path = tmp_path / "o"
        spark.range(1000, 1001).selectExpr("id", "1L AS amount").write.parquet(str(path))
        target = {"type": "parquet", "path": str(path), "mode": "append"}

        def count() -> int:
            return spark.read.parquet(str(path)).count()

    rules = [
        {"name": "positive", "condition": "amount > 0", "on_fail": "drop"},
        {"name": "sane", "condition": "amount > 0", "on_fail": "fail"},
    ]
    seq = {
        "name": "orders",
        "query": "SELECT id, IF(id % 10 = 0, -1, id) AS amount FROM range(1, 101)",
        "expectations": rules,
        "target": target,
    }
    config = tmp_path / "p.json"
    config.write_text(json.dumps({"app_name": "once", "sequences": [seq]}))
    args = ["run", "--config", str(config), "--metrics-out", str(tmp_path / "m" / "metrics.json"), "--run-key", "k1"]
    for _ in range(2):  # the try and its retry
        assert main(args) == 1
        document = json.loads((tmp_path / "m" / "metrics.json").read_text())
        error = document["sequences"]["orders"]["error"]
        assert "expectation sane (amount > 0) failed: a row failed it" in error, error
        assert count() == 1
    capsys.readouterr()
    rules[1]["condition"] = "amount > 0 OR amount = -1"  # the rows are fixed upstream: the rule passes
    config.write_text(json.dumps({"app_name": "once", "sequences": [seq]}))
    assert main(args) == 0
    assert count() == 1 + 90
    if kind == "table":
        spark.sql(f"DROP TABLE IF EXISTS {table}")


def test_the_quarantine_of_a_target_whose_commit_failed_is_discarded(
    spark: Any, postgres: Postgres, tmp_path: Path
) -> None:
    """A JDBC append hitting a primary key at its commit: the rows quarantined for that write are not
    kept (both staged, the target commits first); once the clash is gone the retry writes each row once."""
    with postgres.connect() as conn:
        for table in ("once_orders", "once_rejected"):
            conn.execute(f"DROP TABLE IF EXISTS public.{table}")
        conn.execute("CREATE TABLE public.once_orders (id BIGINT PRIMARY KEY, amount BIGINT)")
        conn.execute("INSERT INTO public.once_orders VALUES (5, 5)")
        conn.execute("CREATE TABLE public.once_rejected (id BIGINT, amount BIGINT, failed_rules TEXT[])")

    def jdbc(table: str) -> dict:
        return {"type": "jdbc", "url": postgres.jdbc_url, "table": table, "mode": "append", **JDBC_CREDS}

    def ids(table: str) -> list[int]:
        with postgres.connect() as conn:
            return [r[0] for r in conn.execute(f"SELECT id FROM public.{table} ORDER BY id").fetchall()]

    seq = {
        "name": "orders",
        "query": "SELECT id, IF(id % 10 = 0, -1, id) AS amount FROM range(1, 101)",
        "expectations": [{"name": "positive", "condition": "amount > 0", "on_fail": "quarantine"}],
        "quarantine": jdbc("public.once_rejected"),
        "target": jdbc("public.once_orders"),
    }
    failed = run(spark, seq)
    assert failed["sequences"]["orders"]["status"] == "failed", failed
    assert ids("once_orders") == [5]
    assert ids("once_rejected") == []  # the rejects of a write that did not commit are not kept
    with postgres.connect() as conn:
        staging = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE %s", ("%spstage%",)
        ).fetchone()[0]
        conn.execute("DELETE FROM public.once_orders")
    assert staging == 0
    retried = run(spark, seq)
    assert retried["status"] == "succeeded", retried
    assert ids("once_orders") == [i for i in range(1, 101) if i % 10]
    assert ids("once_rejected") == list(range(10, 101, 10))


def test_a_secret_in_a_rule_and_a_query_reaches_no_output(tmp_path: Path) -> None:
    """A driver run (its own JVM) with a resolved ``${env:}`` value in queries and rule conditions: a
    ``fail`` rule aborting an append (Spark's ERROR lines on stderr), a tolerated ``fail`` rule and a
    ``warn`` rule (sparkpipe's lines): the value is in none of stdout, stderr, the metrics and the event
    log, but for the plan graph Spark logs node by node (``sparkPlanInfo``), which it never redacts."""
    secret = "Tok3n-" + os.urandom(6).hex()
    log_dir = tmp_path / "eventlog"
    log_dir.mkdir()
    base = "SELECT id, IF(id = 3, '${env:API_TOKEN}', 'x') AS token FROM range(1, 10)"
    config = {
        "app_name": "secret-rules",
        "spark_conf": {
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": log_dir.as_uri(),
            "spark.eventLog.compress": "false",  # the test reads the JSON lines
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "1",
        },
        "sequences": [
            {
                "name": "aborted",
                "query": base,
                "expectations": [{"name": "no_token", "condition": "token <> '${env:API_TOKEN}'", "on_fail": "fail"}],
                "target": {"type": "parquet", "path": str(tmp_path / "a"), "mode": "append"},
            },
            {
                "name": "tolerated",
                "query": base,
                "expectations": [
                    {"name": "few", "condition": "token <> '${env:API_TOKEN}'", "on_fail": "fail", "max_failed": 1},
                    {"name": "seen", "condition": "token <> '${env:API_TOKEN}'"},
                ],
                "target": {"type": "parquet", "path": str(tmp_path / "t")},
            },
        ],
    }
    path = tmp_path / "p.json"
    path.write_text(json.dumps(config))
    metrics = tmp_path / "metrics.json"
    logged = ["--metrics-out", str(metrics)]
    proc = subprocess.run(
        [sys.executable, "-m", "spark_job", "run", "--config", str(path), "--master", "local[1]", *logged],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "API_TOKEN": secret},
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    document = json.loads(metrics.read_text())
    assert document["sequences"]["tolerated"]["status"] == "succeeded", document
    error = document["sequences"]["aborted"]["error"]
    assert "expectation no_token (token <> '***') failed: a row failed it" in error, error
    assert "ERROR" in proc.stderr and "sparkpipe aborted the write" in proc.stderr  # Spark's own lines
    assert "few (token <> '***'): 1 of 9 rows failed it (tolerated)" in proc.stderr, proc.stderr[-3000:]
    assert "sequence aborted: its SQL holds a secret value and Spark's event log is on" in proc.stderr
    assert secret not in proc.stdout and secret not in proc.stderr
    assert secret not in metrics.read_text()
    events = [
        json.loads(line)
        for f in sorted(log_dir.rglob("events_*"))
        for line in f.read_text().splitlines()
        if line.strip()
    ]
    assert events
    plans = [e["physicalPlanDescription"] for e in events if "physicalPlanDescription" in e]
    assert plans and all(secret not in p for p in plans)
    assert any("*********(redacted)" in p for p in plans)
    graphs = [e.pop("sparkPlanInfo") for e in events if "sparkPlanInfo" in e]
    assert secret not in json.dumps(events)
    assert secret in json.dumps(graphs)  # what the warning says: Spark's plan graph, never redacted


def test_every_line_of_the_sparkpipe_logger_is_masked_during_a_run(
    spark: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever code logs through the ``sparkpipe`` logger during a run (here a hook of the caller's, with
    the secret as an argument and inside a traceback) gets the run's secrets masked; after the run the
    logger is as it was."""
    import logging

    secret = "Hook-" + os.urandom(6).hex()
    log = logging.getLogger("sparkpipe")

    class Chatty(PipelineRunner):
        def after_sequence(self, sequence: Any, metrics: Any) -> None:
            log.warning("sparkpipe: the hook saw %s", secret)
            try:
                raise ValueError(f"bad value {secret}")
            except ValueError:
                log.exception("sparkpipe: the hook failed")

    config = {
        "app_name": "masked",
        "sequences": [
            {
                "name": "s",
                "query": "SELECT id FROM range(3) WHERE '${env:HOOK_TOKEN}' <> ''",
                "target": {"type": "parquet", "path": str(tmp_path / "o")},
            }
        ],
    }
    filters = list(log.filters)
    # A handler of its own on the logger: the CLI's logging set-up (another test's) may stop propagation.
    caught = io.StringIO()
    handler = logging.StreamHandler(caught)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    try:
        with caplog.at_level(logging.WARNING, logger="sparkpipe"):
            metrics = Chatty(load_config(config, environ={"HOOK_TOKEN": secret}), spark=spark).run()
    finally:
        log.removeHandler(handler)
    assert metrics["status"] == "succeeded", metrics
    shown = caught.getvalue()
    assert "the hook saw ***" in shown and "bad value ***" in shown, shown
    assert secret not in shown
    assert log.filters == filters
