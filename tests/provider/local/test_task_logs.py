"""Task logs a person can read: on LocalSpark, Spark's own lines under a log source of their own (``spark``)
at their Spark level, without their own date and level, at WARN and above by default; Java stack
traces folded, whether log4j wrote them as text or as JSON; each fact said once or twice at one level
(a failed sequence at error, a skipped one at warning); the summary once, in words. Real ``dag.test()``
runs with the real spark-submit: the failing pipeline with Spark's default logging, and again with
the JVM's structured (JSON) logging at INFO."""

from __future__ import annotations

import re

import pytest

from tests.provider.local.log_records import Record, records
from tests.provider.support import SHOP, TEST_DAGS, DagRunner, DagRunResult, sparkpipe_connection

LOG4J_DATE = re.compile(r"\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} ")
MISSPELT = "`amout` cannot be resolved"
RAISED = "negative revenue found in orders"


@pytest.fixture(scope="module")
def failing(dag_runner: DagRunner, tmp_path_factory: pytest.TempPathFactory) -> dict[str, DagRunResult]:
    """The failing pipeline run twice: Spark's default log4j text at WARN; the JVM's JSON lines at INFO."""
    output = tmp_path_factory.mktemp("logs-output")
    # Short extras a connection commonly holds ("1g", "2", "false"), and no spark.log.level: the
    # runtime's default applies.
    text = sparkpipe_connection(
        runtime="local",
        master="local[1]",
        work_dir=str(tmp_path_factory.mktemp("logs-work")),
        conf={"spark.driver.memory": "1g", "spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false"},
        kill_grace_s="5",
    )
    structured = sparkpipe_connection(
        runtime="local",
        master="local[1]",
        work_dir=str(tmp_path_factory.mktemp("logs-json-work")),
        conf={"spark.ui.enabled": "false", "spark.log.structuredLogging.enabled": "true"},
        log_level="info",
    )
    run = {"dag_folder": str(TEST_DAGS), "dag_id": "sparkpipe_test_failing"}
    return dag_runner.run(
        [
            {**run, "name": "text", "logical_date": "2024-01-15", "env": {"AIRFLOW_CONN_SPARKPIPE_DEFAULT": text}},
            {
                **run,
                "name": "json",
                "logical_date": "2024-01-16",
                "env": {"AIRFLOW_CONN_SPARKPIPE_DEFAULT": structured},
            },
        ],
        env={"SPARKPIPE_TEST_DATA": str(SHOP), "SPARKPIPE_TEST_OUTPUT": str(output)},
    )


@pytest.fixture(scope="module")
def text(failing: dict[str, DagRunResult]) -> list[Record]:
    assert failing["text"].tasks == {"failing": "failed"}, failing["text"].log[-5000:]
    return records(failing["text"].log)


@pytest.fixture(scope="module")
def structured(failing: dict[str, DagRunResult]) -> list[Record]:
    assert failing["json"].tasks == {"failing": "failed"}, failing["json"].log[-5000:]
    return records(failing["json"].log)


def spark_records(found: list[Record]) -> list[Record]:
    return [r for r in found if r.logger == "spark"]


def test_spark_lines_have_a_source_of_their_own_without_their_date_and_level(text: list[Record]) -> None:
    spark = spark_records(text)
    assert spark, "no record of Spark's"
    assert not [r.message for r in spark if LOG4J_DATE.match(r.message) or re.match(r"(WARN|ERROR|INFO) ", r.message)]
    # Below WARN by default: left out; and the JVM's notices of every start are not in the log.
    assert {r.level for r in spark} <= {"warning", "error", "critical"}
    assert not [r for r in spark if "NativeCodeLoader" in r.message or "Setting Spark log level" in r.message]
    # The task's failing Spark task, at Spark's level: "ERROR Executor: Exception in task ..."
    assert any(r.level == "error" and r.message.startswith("Executor: Exception in task") for r in spark)
    # sparkpipe's own lines are the hook's, not Spark's.
    assert not [r for r in spark if "sparkpipe: " in r.message]


def assert_folded(record: Record) -> None:
    run = 0
    for line in record.message.splitlines():
        run = run + 1 if line.lstrip().startswith("at ") else 0
        assert run <= 3, f"more than three stack frames in a row:\n{record.message}"


def test_java_stack_traces_are_folded_into_their_record(text: list[Record]) -> None:
    traced = [r for r in spark_records(text) if "\tat " in r.message]
    assert traced
    for record in traced:
        assert_folded(record)
    folded = [r for r in traced if re.search(r"\n\t\.\.\. \d+ more stack lines$", r.message)]
    assert folded, "no folded stack trace in the log"
    assert f"[USER_RAISED_EXCEPTION] {RAISED}" in folded[0].message  # the exception, and where it came from
    # Spark logs the failed task from several places: its stack is said once, the others point to it.
    executor = next(r for r in spark_records(text) if r.message.startswith("Executor: Exception in task"))
    assert f"[USER_RAISED_EXCEPTION] {RAISED}" in executor.message
    repeated = [r for r in spark_records(text) if r.message.endswith("\n\t(the same stack trace as above)")]
    assert repeated and not [r for r in repeated if "\tat " in r.message]


def test_each_fact_is_said_once_or_twice_at_one_level(text: list[Record]) -> None:
    """A failed sequence at error, a skipped one at warning, each by the driver as it happens and in the summary."""
    ours = [r for r in text if r.logger not in ("spark", "task")]  # the exception is the task's, after them
    for fact in (RAISED, MISSPELT):
        said = [r for r in ours if fact in r.message]
        assert 1 <= len(said) <= 2 and {r.level for r in said} == {"error"}, said
    skipped = [r for r in ours if "after_check" in r.message and "skipped" in r.message]
    assert 1 <= len(skipped) <= 2 and {r.level for r in skipped} == {"warning"}, skipped
    # PySpark's JSON copy of the analysis error (its whole JVM stack) is not in the log at all.
    assert not [r for r in text if "SQLQueryContextLogger" in r.message or r.message.startswith('{"ts"')]
    # The exception names each failure by its first line: Spark's query plan is said in the summary only.
    (failure,) = [r for r in text if r.logger == "task" and "SparkPipelineFailed" in r.message]
    exception = failure.message.split("SparkPipelineFailed: ", 1)[1]
    assert "sequence 'misspelt_revenue' failed: [UNRESOLVED_COLUMN.WITH_SUGGESTION] A column" in exception
    assert "'Project [" not in exception and exception.endswith("; skipped: after_check")


def test_the_summary_is_said_once_and_says_what_happened_to_each_sequence(text: list[Record]) -> None:
    summary = {r.message.strip(): r.level for r in text if r.message.startswith("  ") and r.logger != "spark"}
    assert any(
        re.fullmatch(r"order_count: succeeded, 1 row in \d+\.\d s -> json .*order_count", line) and level == "info"
        for line, level in summary.items()
    ), summary
    assert any(
        re.fullmatch(rf"checked_revenue: failed after \d+\.\d s: \[USER_RAISED_EXCEPTION\] {RAISED}.*", line)
        and level == "error"
        for line, level in summary.items()
    ), summary
    assert summary.get("after_check: skipped: reads checked_revenue, which failed") == "warning", summary
    assert "None" not in "\n".join(summary)
    # One summary: the driver's own (without targets) is left at debug level.
    assert len([r for r in text if re.match(r"Pipeline 'failing_pipeline' failed in", r.message)]) == 1
    assert not [r for r in text if r.message.startswith("sparkpipe: failing_pipeline failed in")]


def test_short_connection_extras_are_not_registered_as_secrets(failing: dict[str, DagRunResult]) -> None:
    assert "Skipping masking for a secret" not in failing["text"].log
    assert "cannot be masked in logs" not in failing["text"].log


def test_json_log_lines_are_levelled_and_folded_like_log4j_lines(structured: list[Record]) -> None:
    spark = spark_records(structured)
    assert not [r for r in spark if r.message.lstrip().startswith("{")], "a JSON line left as it was written"
    levels = {r.level for r in spark}
    assert {"info", "warning", "error"} <= levels, levels  # the runtime's log_level lets INFO through
    # The JSON event's exception (class, message, a list of frames) as a folded trace in its record.
    executor = next(r for r in spark if r.message.startswith("Executor: Exception in task") and r.level == "error")
    assert "org.apache.spark.SparkRuntimeException: " in executor.message and RAISED in executor.message
    traced = [r for r in spark if "\n\tat " in r.message]
    assert traced and re.search(r"\n\t\.\.\. \d+ more stack lines$", traced[0].message)
    # A message carrying its own stack (``\n\tat`` in the JSON string), folded too.
    lost = next(r for r in spark if r.message.startswith("TaskSetManager: Lost task") and r.level == "warning")
    for record in (executor, lost, *traced):
        assert_folded(record)
    assert not [r for r in structured if "SQLQueryContextLogger" in r.message]


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
