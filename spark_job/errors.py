"""The user-facing errors of the driver: config problems reported all at once, a failed run, and the short
text a Spark failure is reported in."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config.

    Attributes:
        path: where in the config, e.g. ``sequences[1].target.mode`` (empty for the whole file).
        message: what is wrong and, where possible, what to do about it.
        file: the config file the problem was found in, if the config came from a file.
        line: 1-based line in ``file``, when known.
    """

    path: str
    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        return f"{where}{self.path}: {self.message}" if self.path else f"{where}{self.message}"


class ConfigError(Exception):
    """A config that cannot run. ``problems`` lists every problem found, in config order."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class PipelineFailed(Exception):
    """Raised by the Python API when a run finished with at least one failed sequence."""

    def __init__(self, metrics: dict) -> None:
        self.metrics = metrics
        failed = [
            f"{name}: {seq.get('error')}"
            for name, seq in metrics.get("sequences", {}).items()
            if seq.get("status") == "failed"
        ]
        super().__init__("pipeline failed: " + ("; ".join(failed) or str(metrics.get("error"))))


def exception_text(exc: BaseException, max_causes: int = 5) -> str:
    """An exception's message. A Py4JJavaError's own message only says which Java call failed: its
    Java exception's and their causes' messages instead, one per line."""
    java = getattr(exc, "java_exception", None)
    if java is None:
        return str(exc).strip() or type(exc).__name__
    messages: list[str] = []
    while java is not None and len(messages) < max_causes:
        messages.append(str(java.toString()))
        java = java.getCause()
    return "\n".join(dict.fromkeys(messages))


MAX_ERROR_CHARS = 4000

_CAUSED_BY = re.compile(r"^Caused by: (.+)$", re.MULTILINE)
# A failed task's message carries the task's Java stack trace (Spark 3.5 reports a write's failure that
# way): its frames would crowd the causes, which say what went wrong, out of the first lines.
_JAVA_FRAME = re.compile(r"^\s*(at [\w$.<>/]+\(.*\)|\.\.\. \d+ more)\s*$")
_JOB_ABORTED = "Job aborted due to stage failure"


def short_error(exc: BaseException, mask: Callable[[str], str]) -> str:
    """The first lines of an exception (Spark's messages end in long plans), secrets hidden by ``mask``."""
    text = exception_text(exc)
    # With spark.sql.pyspark.jvmStacktrace.enabled the message ends in the JVM's stack trace: its
    # "Caused by:" lines say why (the database's "password authentication failed", "Connection refused").
    text, _, trace = text.partition("\n\nJVM stacktrace:\n")
    causes = [c.strip() for c in _CAUSED_BY.findall(trace) if c.strip() and c.strip() not in text]
    if causes:
        text += "\ncaused by: " + "\ncaused by: ".join(list(dict.fromkeys(causes))[-2:])
    lines = [line for line in text.splitlines() if line.strip() and not _JAVA_FRAME.match(line)]
    lines = [line for line in lines if line.strip() != "Driver stacktrace:"]
    if len(lines) > 1 and _JOB_ABORTED in lines[0]:
        # Spark 3.5 reports a failed task as its job's abort, the task's own exception last (Spark 4
        # raises that one): lead with it, so the first line says why.
        lines.insert(0, lines.pop())
    text = "\n".join(lines[:8])
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + "..."
    advice = connector_advice(exception_text(exc))
    if advice:
        text += f"\n{advice}"
    return mask(f"{type(exc).__name__}: {text}" if ":" not in lines[0] else text)


def connector_advice(message: str, spark_version: str | None = None) -> str | None:
    """What to add when Spark's error ``message`` shows a connector's jar missing (the connector table's
    artifact for ``spark_version``, by default the running pyspark's), or None."""
    from spark_job.config.connectors import how_to_add, missing_connector

    name = missing_connector(message)
    if name is None:
        return None
    if spark_version is None:
        try:
            from pyspark import __version__
        except ImportError:
            return None
        spark_version = str(__version__)
    return f"the {name} connector is missing: {how_to_add(name, spark_version)}"
