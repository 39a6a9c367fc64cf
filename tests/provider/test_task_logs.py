"""Task logs a person can read: on LocalSpark, Spark's own lines at WARN and above by default, each at
its Spark level in Airflow, Java stack traces folded, a summary in words, and no masking warnings for
connection extras that are not secret. Real ``dag.test()`` runs with the real spark-submit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.provider.conftest import SHOP, TEST_DAGS, DagRunner, DagRunResult, sparkpipe_connection

LOG4J = re.compile(r"\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} (TRACE|DEBUG|INFO|WARN|ERROR|FATAL) ")
# Airflow's console lines: ``<timestamp> [<level>   ] <message> [<logger>] ...``.
RECORD = re.compile(r"\[(debug|info|warning|error|critical)\s*\] (.*?)(\s+\[[\w.]+\](\s+\w+=\S*)*)?$")


@pytest.fixture(scope="module")
def failing(dag_runner: DagRunner, tmp_path_factory: pytest.TempPathFactory) -> DagRunResult:
    output = tmp_path_factory.mktemp("logs-output")
    # Short extras a connection commonly holds ("1g", "2", "false"), and no spark.log.level: the
    # runtime's default applies.
    connection = sparkpipe_connection(
        runtime="local",
        master="local[1]",
        work_dir=str(tmp_path_factory.mktemp("logs-work")),
        conf={"spark.driver.memory": "1g", "spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false"},
        kill_grace_s="5",
    )
    env = {
        "AIRFLOW_CONN_SPARKPIPE_DEFAULT": connection,
        "SPARKPIPE_TEST_DATA": str(SHOP),
        "SPARKPIPE_TEST_OUTPUT": str(output),
    }
    runs = dag_runner.run(
        [{"dag_folder": str(TEST_DAGS), "dag_id": "sparkpipe_test_failing", "logical_date": "2024-01-15"}], env=env
    )
    return runs["sparkpipe_test_failing"]


def records(log: str) -> list[tuple[str, str]]:
    found = []
    for line in log.splitlines():
        match = RECORD.search(line)
        if match:
            found.append((match.group(1), match.group(2)))
    return found


def test_spark_lines_below_warn_are_left_out_by_default(failing: DagRunResult) -> None:
    assert failing.tasks == {"failing": "failed"}
    spark_levels = {m.group(1) for _, message in records(failing.log) if (m := LOG4J.search(message))}
    assert spark_levels and spark_levels <= {"WARN", "ERROR", "FATAL"}


def test_each_spark_line_has_its_spark_level_in_airflow(failing: DagRunResult) -> None:
    expected = {"WARN": "warning", "ERROR": "error", "FATAL": "critical"}
    spark_records = [(level, m.group(1)) for level, message in records(failing.log) if (m := LOG4J.search(message))]
    assert ("error", "ERROR") in spark_records
    assert all(level == expected[spark] for level, spark in spark_records)


def test_java_stack_traces_are_folded_to_their_first_frames(failing: DagRunResult) -> None:
    messages = [message for _, message in records(failing.log)]
    folds = [m for m in messages if re.fullmatch(r"\s*\.\.\. \d+ more stack lines", m)]
    assert folds, "no folded stack trace in the log"
    run = 0
    for message in messages:
        run = run + 1 if message.lstrip().startswith("at ") else 0
        assert run <= 3, "more than three stack frames in a row"
    # The error itself is kept, with the frame it came from.
    assert any("[USER_RAISED_EXCEPTION] negative revenue found in orders" in m for m in messages)


def test_the_summary_says_what_happened_to_each_sequence(failing: DagRunResult) -> None:
    by_level = records(failing.log)
    summary = {message.strip(): level for level, message in by_level if message.startswith("  ")}
    assert any(
        re.fullmatch(r"order_count: succeeded, 1 row in \d+\.\d s -> json .*order_count", line) and level == "info"
        for line, level in summary.items()
    ), summary
    assert any(
        re.fullmatch(r"checked_revenue: failed after \d+\.\d s: \[USER_RAISED_EXCEPTION\] .*", line)
        and level == "error"
        for line, level in summary.items()
    ), summary
    assert summary.get("after_check: skipped: reads checked_revenue, which failed") == "warning", summary
    assert "None" not in "\n".join(summary)


def test_short_connection_extras_are_not_registered_as_secrets(failing: DagRunResult) -> None:
    assert "Skipping masking for a secret" not in failing.log
    assert "cannot be masked in logs" not in failing.log


def test_a_log_level_on_the_runtime_lets_spark_info_lines_through(
    dag_runner: DagRunner, tmp_path_factory: pytest.TempPathFactory
) -> None:
    connection = sparkpipe_connection(
        runtime="local",
        master="local[1]",
        work_dir=str(tmp_path_factory.mktemp("logs-info-work")),
        conf={"spark.ui.enabled": "false"},
        log_level="info",
    )
    runs = dag_runner.run(
        [{"dag_folder": str(TEST_DAGS), "dag_id": "sparkpipe_test_failing", "logical_date": "2024-01-16"}],
        env={
            "AIRFLOW_CONN_SPARKPIPE_DEFAULT": connection,
            "SPARKPIPE_TEST_DATA": str(SHOP),
            "SPARKPIPE_TEST_OUTPUT": str(Path(tmp_path_factory.mktemp("logs-info-output"))),
        },
    )
    info = [m for level, m in records(runs["sparkpipe_test_failing"].log) if LOG4J.search(m) and " INFO " in m]
    assert info and all(level == "info" for level, m in records(runs["sparkpipe_test_failing"].log) if m in info)


def test_what_of_a_connection_is_secret() -> None:
    from airflow_provider_sparkpipe.masking import secret_values

    extras = {
        "runtime": "local",
        "conf": {"spark.executor.memory": "1g", "spark.hadoop.fs.s3a.secret.key": "s3-secret-value"},
        "env": {"PG_PASSWORD": "env-secret-1", "JAVA_HOME": "/usr/lib/jvm/java-17"},
        "kill_grace_s": "2",
        "token": "a-token-value",
        "jdbc_url": "jdbc:postgresql://db/shop?user=u&password=url-secret",
    }
    assert sorted(secret_values(extras)) == sorted(
        ["s3-secret-value", "env-secret-1", "/usr/lib/jvm/java-17", "a-token-value", "url-secret"]
    )
