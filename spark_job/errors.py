"""The user-facing error type of the driver: config problems reported all at once."""

from __future__ import annotations

from collections.abc import Iterable
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
