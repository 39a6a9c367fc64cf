"""The driver's output as task log records: Spark's level per line, Java stack traces folded to a few lines."""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol

# log4j's default pattern (Spark's log4j2-defaults.properties): ``25/12/02 14:36:41 ERROR TaskSetManager: ...``.
_LOG4J = re.compile(r"^\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} (TRACE|DEBUG|INFO|WARN|ERROR|FATAL) ")
LEVELS = {
    "TRACE": logging.DEBUG,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "FATAL": logging.CRITICAL,
    "OFF": logging.CRITICAL + 10,
    "ALL": logging.NOTSET,
}
_STACK_FRAME = re.compile(r"^\s+(at |\.\.\. \d+ more)")
_CAUSED_BY = re.compile(r"^\s*(Caused by|Suppressed): ")
# A Java exception's first line (``org.apache.spark.SparkException: ...``), which starts a stack trace.
_JAVA_EXCEPTION = re.compile(r"^(: )?([a-z][\w$]*\.)+[A-Z][\w$]*(Exception|Error|Throwable)\b")
_PY_TRACEBACK = "Traceback (most recent call last):"
_PY_WARNING = re.compile(r"^\S+\.py:\d+: \w*Warning: ")
# sparkpipe's own lines carry no level marker: what they report gives it.
_SPARKPIPE_PROBLEM = re.compile(r"^sparkpipe: (.* failed\b|run failed|could not|\d+ problems? in the config)")
_SPARKPIPE_SKIPPED = re.compile(r"^sparkpipe: .*\bskipped\b")
# JVM notices printed on every start, not about the run.
_STARTUP_NOTICES = ("WARNING: Using incubator modules:", "Using Spark's default log4j profile:")
FRAMES_KEPT = 3


class LevelLogger(Protocol):
    """What is needed of a logger: a stdlib ``Logger`` or the task's (``self.log`` of a hook)."""

    def log(self, level: int, event: Any, *args: Any, **kw: Any) -> Any: ...


class DriverOutput:
    """Writes driver output lines to ``log`` at the level each line carries.

    Spark's log4j lines take their own level and are dropped below ``spark_level`` (lines printed
    before the Spark context applies ``spark.log.level``); the lines of a Java stack trace take the
    level of the line that started it and are folded to the first ``FRAMES_KEPT`` frames of each
    exception (``Caused by:`` lines kept) plus ``... N more stack lines``. Python tracebacks are
    errors, Python warnings warnings; other lines are info.
    """

    def __init__(self, log: LevelLogger, spark_level: str = "WARN") -> None:
        self.log = log
        self.min_level = LEVELS.get(spark_level.upper(), logging.WARNING)
        self._level = logging.INFO  # the level of the record a stack trace belongs to
        self._in_stack = False
        self._frames = 0  # frames shown in the current exception
        self._folded = 0  # frames folded in the current trace
        self._in_traceback = False

    def feed(self, line: str) -> None:
        if self._in_stack:
            if _STACK_FRAME.match(line):
                if self._frames < FRAMES_KEPT and not line.lstrip().startswith("..."):
                    self._frames += 1
                    self._emit_stack(line)
                else:
                    self._folded += 1
                return
            if _CAUSED_BY.match(line):
                self._frames = 0
                self._emit_stack(line)
                return
            self._end_stack()
        if self._in_traceback:
            if line.startswith((" ", "\t")) or not line:
                self._emit(logging.ERROR, line)
                return
            self._in_traceback = False
            self._emit(logging.ERROR, line)  # the exception line ends the traceback
            if _JAVA_EXCEPTION.match(line):
                self._start_stack(logging.ERROR)
            return
        match = _LOG4J.match(line)
        if match:
            level = LEVELS[match.group(1)]
            self._level = level
            if level >= self.min_level:
                self._emit(level, line)
            self._in_stack = False
            self._frames = 0
            return
        if line.startswith(_PY_TRACEBACK):
            self._in_traceback = True
            self._emit(logging.ERROR, line)
            return
        if _JAVA_EXCEPTION.match(line):  # the exception of the log4j record above: shown if that was
            self._start_stack(self._level)
            self._emit_stack(line)
            return
        if _STACK_FRAME.match(line):  # a trace whose first line was dropped with its INFO record
            self._start_stack(self._level)
            self.feed(line)
            return
        if line.strip():
            self._emit(self._level_of(line), line)

    def close(self) -> None:
        """Write what a trace still open at the end of the output folded."""
        if self._in_stack:
            self._end_stack()

    def _level_of(self, line: str) -> int:
        if line.startswith(_STARTUP_NOTICES):
            return logging.DEBUG
        if _PY_WARNING.match(line):
            return logging.WARNING
        if _SPARKPIPE_PROBLEM.match(line):
            return logging.ERROR
        if _SPARKPIPE_SKIPPED.match(line):
            return logging.WARNING
        return logging.INFO

    def _start_stack(self, level: int) -> None:
        self._in_stack, self._level, self._frames, self._folded = True, level, 0, 0

    def _end_stack(self) -> None:
        if self._folded:
            self._emit_stack(f"\t... {self._folded} more stack lines")
        self._in_stack, self._frames, self._folded = False, 0, 0

    def _emit_stack(self, line: str) -> None:
        # A trace belongs to the Spark record above it: shown when that record was.
        if self._level >= self.min_level:
            self._emit(self._level, line)

    def _emit(self, level: int, line: str) -> None:
        self.log.log(level, "%s", line)
