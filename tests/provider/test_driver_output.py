"""The driver's output as task log records (``hooks/driver_output.py``), line by line as a hook feeds it:
Spark's lines at their own level without their date, traces folded and said once, the driver's lines at
the level it gave them. ``local/test_task_logs.py`` follows the same through real runs."""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow_provider_sparkpipe.hooks.driver_output import FRAMES_KEPT, DriverOutput


class Records:
    """A logger keeping what it is given: (level, text)."""

    def __init__(self) -> None:
        self.records: list[tuple[int, str]] = []

    def log(self, level: int, event: Any, *args: Any, **kw: Any) -> None:
        self.records.append((level, event % args if args else str(event)))


def feed(lines: list[str], spark_level: str = "WARN") -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(the task's records, Spark's records) of ``lines``."""
    task, spark = Records(), Records()
    output = DriverOutput(task, spark_level, spark_log=spark)
    for line in lines:
        output.feed(line)
    output.close()
    return task.records, spark.records


def frames(n: int, where: str = "org.apache.spark.Task") -> list[str]:
    return [f"\tat {where}.run{i}(Task.scala:{i})" for i in range(n)]


def test_a_log4j_line_keeps_its_level_and_loses_its_date() -> None:
    task, spark = feed(["25/12/02 14:36:41 WARN TaskSetManager: Lost task 0.0 in stage 1.0"])
    assert task == [] and spark == [(logging.WARNING, "TaskSetManager: Lost task 0.0 in stage 1.0")]


def test_sparks_lines_below_its_log_level_are_left_out() -> None:
    lines = ["25/12/02 14:36:41 INFO SparkContext: Running Spark version 4.1.2"]
    assert feed(lines) == ([], [])
    assert feed(lines, "INFO")[1] == [(logging.INFO, "SparkContext: Running Spark version 4.1.2")]


def test_a_java_trace_joins_its_record_folded_to_a_few_frames_of_each_exception() -> None:
    lines = [
        "25/12/02 14:36:41 ERROR Executor: Exception in task 0.0",
        "java.lang.ArithmeticException: / by zero",
        *frames(10),
        "Caused by: java.io.IOException: disk full",
        *frames(4, "java.io.File"),
        "\t... 12 more",
    ]
    _, spark = feed(lines)
    ((level, text),) = spark
    shown = text.split("\n")
    assert level == logging.ERROR
    assert shown[:2] == ["Executor: Exception in task 0.0", "java.lang.ArithmeticException: / by zero"]
    assert shown[2 : 2 + FRAMES_KEPT] == frames(FRAMES_KEPT)
    assert "Caused by: java.io.IOException: disk full" in shown
    assert shown[-1] == f"\t... {10 - FRAMES_KEPT + 4 - FRAMES_KEPT + 1} more stack lines"


def test_the_same_trace_logged_again_is_said_once() -> None:
    trace = ["org.apache.spark.SparkException: Job aborted", *frames(5)]
    _, spark = feed(
        [
            "25/12/02 14:36:41 ERROR TaskSetManager: Task 0 failed",
            *trace,
            "25/12/02 14:36:42 ERROR FileFormatWriter: Aborting job",
            *trace,
        ]
    )
    first, second = (text for _, text in spark)
    assert frames(1)[0] in first
    assert second.split("\n") == [
        "FileFormatWriter: Aborting job",
        "org.apache.spark.SparkException: Job aborted",
        "\t(the same stack trace as above)",
    ]


def test_the_drivers_lines_keep_the_level_it_gave_them_and_its_summary_is_left_at_debug() -> None:
    task, _ = feed(
        [
            "INFO sparkpipe: sequence 'daily' succeeded",
            "WARNING sparkpipe: sequence 'after' skipped: reads daily_check, which failed",
            "ERROR sparkpipe: sequence 'daily_check' failed: boom",
            "INFO sparkpipe: pipeline 'shop' failed in 4.2 s (3 sequences, at most 2 at once)",
            "INFO   daily: succeeded, 40 rows",
            "sparkpipe: 2 problems in the config",
        ]
    )
    assert task == [
        (logging.INFO, "sparkpipe: sequence 'daily' succeeded"),
        (logging.WARNING, "sparkpipe: sequence 'after' skipped: reads daily_check, which failed"),
        (logging.ERROR, "sparkpipe: sequence 'daily_check' failed: boom"),
        (logging.DEBUG, "sparkpipe: pipeline 'shop' failed in 4.2 s (3 sequences, at most 2 at once)"),
        (logging.DEBUG, "  daily: succeeded, 40 rows"),
        (logging.ERROR, "sparkpipe: 2 problems in the config"),
    ]


def test_the_notices_of_every_jvm_start_are_left_at_debug() -> None:
    _, spark = feed(
        [
            "Using Spark's default log4j profile: org/apache/spark/log4j2-defaults.properties",
            "25/12/02 14:36:40 WARN NativeCodeLoader: Unable to load native-hadoop library for your platform",
        ]
    )
    assert [level for level, _ in spark] == [logging.DEBUG]  # the second is below WARN once at debug


def test_a_python_traceback_is_one_error_record() -> None:
    task, _ = feed(
        [
            "Traceback (most recent call last):",
            '  File "sparkpipe_main.py", line 3, in <module>',
            "    main()",
            "RuntimeError: the driver crashed",
        ]
    )
    ((level, text),) = task
    assert level == logging.ERROR and text.endswith("RuntimeError: the driver crashed") and text.count("\n") == 3


def test_a_json_line_of_pyspark_is_a_spark_record_with_its_exception() -> None:
    event = {
        "ts": "2025-12-02T14:36:41.000Z",
        "level": "ERROR",
        "logger": "org.apache.spark.sql.execution.QueryExecution",
        "msg": "Query failed",
        "exception": {"class": "java.lang.IllegalStateException", "msg": "broken", "stacktrace": []},
    }
    _, spark = feed([json.dumps(event)])
    assert spark == [(logging.ERROR, "QueryExecution: Query failed\njava.lang.IllegalStateException: broken")]
