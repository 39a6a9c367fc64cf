"""The driver's output as task log records: Spark's lines under a log source of their own at their own
level, Java stack traces folded to a few lines, sparkpipe's lines at the level of what they report."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

SPARK_LOGGER = "spark"
"""The logger (the task log's *source*) of Spark's own lines: the JVM's log4j lines, PySpark's JSON lines
and the stack traces they carry. Airflow's log view filters by it."""

# log4j's default pattern (Spark's log4j2-defaults.properties): ``25/12/02 14:36:41 ERROR TaskSetManager: ...``;
# the date and level are taken off (the task log has its own), the rest is the message.
_LOG4J = re.compile(r"^\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} (TRACE|DEBUG|INFO|WARN|ERROR|FATAL) (.*)$")
LEVELS = {
    "TRACE": logging.DEBUG,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "FATAL": logging.CRITICAL,
    "CRITICAL": logging.CRITICAL,
    "OFF": logging.CRITICAL + 10,
    "ALL": logging.NOTSET,
}
_STACK_FRAME = re.compile(r"^\s+(at |\.\.\. \d+ more)")
_CAUSED_BY = re.compile(r"^\s*(Caused by|Suppressed): ")
# A Java exception's first line (``org.apache.spark.SparkException: ...``), which starts a stack trace.
_JAVA_EXCEPTION = re.compile(r"^(: )?([a-z][\w$]*\.)+[A-Z][\w$]*(Exception|Error|Throwable)\b")
_PY_TRACEBACK = "Traceback (most recent call last):"
_PY_WARNING = re.compile(r"^\S+\.py:\d+: \w*Warning: ")
# The driver's log lines, levelled for the task log (``LEVELLED_LOG_ENV``): ``WARNING sparkpipe: ...``.
_DRIVER_RECORD = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) (.*)$")
# What the driver prints without a level (its config errors): what they report gives it.
_SPARKPIPE_PROBLEM = re.compile(r"^sparkpipe: (.* failed\b|run failed|could not|\d+ problems? in the config)")
# The driver's closing summary; the task's own summary (the operator's, with targets) replaces it.
_DRIVER_SUMMARY = re.compile(r"^sparkpipe: .+ in \d+(\.\d+)? s \(\d+ sequences?, at most \d+ at once\)$")
# Printed on every start of a JVM, whatever the pipeline: kept out of the task log (debug level).
_START_NOTICES = (
    "WARNING: Using incubator modules:",
    "Using Spark's default log4j profile:",
    "Setting Spark log level to ",
    "NativeCodeLoader: Unable to load native-hadoop library",
)
FRAMES_KEPT = 3


class LevelLogger(Protocol):
    """What is needed of a logger: a stdlib ``Logger`` or the task's (``self.log`` of a hook)."""

    def log(self, level: int, event: Any, *args: Any, **kw: Any) -> Any: ...


@dataclass
class _Record:
    """A record being collected: its first line, then the lines of the stack trace it carries."""

    log: LevelLogger
    level: int
    lines: list[str]
    shown: bool = True
    trace: bool = False  # the lines after the first belong to a stack trace
    frames: int = 0  # frames kept of the current exception
    folded: int = 0  # frames folded away in the whole trace
    python: bool = False  # a Python traceback (ends with its exception line)
    seen_frame: bool = field(default=False)


class DriverOutput:
    """Writes driver output lines to the task log, one record per event.

    Spark's log4j lines and PySpark's (or log4j's, with ``spark.log.structuredLogging.enabled``)
    JSON lines go to ``spark_log`` at their own level, without their own date and level, and are
    dropped below ``spark_level`` (lines printed before the Spark context applies
    ``spark.log.level``). A Java stack trace joins the record it belongs to, folded to the first
    ``FRAMES_KEPT`` frames of each exception (``Caused by:`` lines kept) plus ``... N more stack
    lines``; a trace with the frames of the one before it (Spark logs a failed task from several
    places) is said once. Python tracebacks are one error record, Python warnings warnings.
    sparkpipe's lines go to ``log`` at the level the driver gave them (a failed sequence: error, a
    skipped one: warning); the driver's closing summary is left at debug level, the task logging its own.
    """

    def __init__(self, log: LevelLogger, spark_level: str = "WARN", spark_log: LevelLogger | None = None) -> None:
        self.log = log
        self.spark_log: LevelLogger = spark_log if spark_log is not None else logging.getLogger(SPARK_LOGGER)
        self.min_level = LEVELS.get(spark_level.upper(), logging.WARNING)
        self._level = logging.INFO  # the level of the last Spark record (a trace printed alone takes it)
        self._open: _Record | None = None
        self._in_summary = False
        self._last_frames: tuple[str, ...] = ()  # the frames of the last trace written

    def feed(self, line: str) -> None:
        line = line.rstrip("\r")
        if self._open is not None and self._continues(self._open, line):
            return
        self.flush()
        self._start(line)

    def flush(self) -> None:
        """Write the record still being collected (its trace is complete)."""
        record, self._open = self._open, None
        if record is None or not record.shown:
            return
        lines = list(record.lines)
        frames = tuple(line for line in lines[1:] if _STACK_FRAME.match(line))
        if frames and frames == self._last_frames:
            # Spark logs one failure from several places (the task, the executor, the scheduler, the
            # writer), each with the same stack: said once, the later records point to it.
            lines = [line for line in lines if not _STACK_FRAME.match(line)] + ["\t(the same stack trace as above)"]
        else:
            if frames:
                self._last_frames = frames
            if record.folded:
                lines.append(f"\t... {record.folded} more stack lines")
        record.log.log(record.level, "%s", "\n".join(lines))

    def close(self) -> None:
        """The output ended: write what is still open."""
        self.flush()

    # Starting and continuing records. ---------------------------------------------------------------

    def _start(self, line: str) -> None:
        driver = _DRIVER_RECORD.match(line)
        if driver:
            self._driver_record(LEVELS[driver.group(1)], driver.group(2))
            return
        self._in_summary = False
        match = _LOG4J.match(line)
        if match:
            self._spark_record(LEVELS[match.group(1)], match.group(2))
            return
        if line.startswith("{"):
            event = _json_event(line)
            if event is not None:
                self._json_record(event)
                return
        if line.startswith(_PY_TRACEBACK):
            self._open = _Record(self.log, logging.ERROR, [line], python=True)
            return
        if _JAVA_EXCEPTION.match(line) or _STACK_FRAME.match(line) or _CAUSED_BY.match(line):
            # A trace whose record was printed without one, or dropped with its level: it takes that level.
            self._open = _Record(self.spark_log, self._level, [], shown=self._level >= self.min_level)
            self._open.trace = True
            self._continues(self._open, line)
            return
        if not line.strip():
            return
        if _is_start_notice(line):
            self.spark_log.log(logging.DEBUG, "%s", line)
        elif line.startswith("sparkpipe: "):
            self.log.log(logging.ERROR if _SPARKPIPE_PROBLEM.match(line) else logging.INFO, "%s", line)
        elif _PY_WARNING.match(line):
            self.log.log(logging.WARNING, "%s", line)
        else:
            self.spark_log.log(logging.INFO, "%s", line)

    def _driver_record(self, level: int, message: str) -> None:
        """One of the driver's log lines, at the level the driver logged it."""
        if _DRIVER_SUMMARY.match(message):
            self._in_summary = True
        elif self._in_summary and not (message.startswith("  ") or message.startswith("sparkpipe: not run: ")):
            self._in_summary = False
        self.log.log(logging.DEBUG if self._in_summary else level, "%s", message)

    def _spark_record(self, level: int, message: str) -> None:
        self._level = level
        if _is_start_notice(message):
            level = logging.DEBUG
        self._open = _Record(self.spark_log, level, [message], shown=level >= self.min_level)

    def _json_record(self, event: Mapping[str, Any]) -> None:
        level = LEVELS.get(str(event.get("level", "INFO")).upper(), logging.INFO)
        self._level = level
        logger = str(event.get("logger") or "").rsplit(".", 1)[-1]
        message = str(event.get("msg", ""))
        first, *rest = message.split("\n") if message else [""]
        record = _Record(self.spark_log, level, [f"{logger}: {first}" if logger else first])
        record.shown = level >= self.min_level
        self._open = record
        lines = [*rest, *_exception_lines(event.get("exception"), message)]
        for item in lines:
            if not self._continues(record, item):
                record.lines.append(item)
        self.flush()

    def _continues(self, record: _Record, line: str) -> bool:
        """Whether ``line`` belongs to ``record`` (and add it, folding frames); False ends the record."""
        if record.python:
            record.lines.append(line)
            if not line.startswith((" ", "\t")) and line.strip():
                # The exception line ends the Python part; a Java trace may follow (a Py4J error).
                record.python, record.trace = False, True
            return True
        if _STACK_FRAME.match(line):
            record.trace = record.seen_frame = True
            if record.frames < FRAMES_KEPT and not line.lstrip().startswith("..."):
                record.frames += 1
                record.lines.append(line)
            else:
                record.folded += 1
            return True
        if _CAUSED_BY.match(line):
            record.trace, record.frames, record.seen_frame = True, 0, False
            record.lines.append(line)
            return True
        if not record.trace and _JAVA_EXCEPTION.match(line):
            record.trace = True
            record.lines.append(line)
            return True
        # The rest of an exception's message (a query plan) comes before the first frame.
        if record.trace and not record.seen_frame and line.strip() and not _starts_record(line):
            record.lines.append(line)
            return True
        return False


def _starts_record(line: str) -> bool:
    return bool(
        _LOG4J.match(line)
        or _DRIVER_RECORD.match(line)
        or line.startswith(("sparkpipe: ", "{", _PY_TRACEBACK))
        or _is_start_notice(line)
        or _PY_WARNING.match(line)
    )


def _is_start_notice(line: str) -> bool:
    return line.startswith(_START_NOTICES[:3]) or _START_NOTICES[3] in line


def _json_event(line: str) -> Mapping[str, Any] | None:
    """A structured log line of PySpark (``PySparkLogger``) or of log4j's JSON layout, else None."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if isinstance(event, dict) and "msg" in event and "level" in event:
        return event
    return None


def _exception_lines(exception: Any, message: str) -> list[str]:
    """A JSON event's exception as the lines a log4j trace has: class and message, then frames."""
    if not isinstance(exception, Mapping):
        return []
    lines: list[str] = []
    name = str(exception.get("class") or "")
    text = str(exception.get("msg") or "")
    head, *more = text.split("\n") if text else [""]
    if head == message.split("\n")[0]:
        head = ""  # the record's message already says it
    lines.append(f"{name}: {head}" if head else name)
    lines += [line for line in more if line.strip()]
    frames = exception.get("stacktrace")
    if isinstance(frames, list) and not any(_STACK_FRAME.match(line) for line in lines):
        for frame in frames:
            if isinstance(frame, Mapping):
                where = f"{frame.get('file')}:{frame.get('line')}" if frame.get("line") else str(frame.get("file"))
                owner = f"{frame.get('class')}." if frame.get("class") else ""
                lines.append(f"\tat {owner}{frame.get('method')}({where})")
    return lines
