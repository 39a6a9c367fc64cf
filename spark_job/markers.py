"""The driver's marker lines: JSON documents on stdout for whoever follows its output.

The driver prints them (:func:`marker_line`) and the provider's hooks read them back from a process
pipe, a pod log or a job's output files (:func:`parse_marker_line`, :func:`last_metrics`): one format,
one parser. Standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

METRICS_MARKER = "SPARKPIPE_METRICS "
"""Prefix of the single stdout line that carries the run's metrics document as JSON."""

APPLICATION_MARKER = "SPARKPIPE_APPLICATION "
"""Prefix of the stdout line, printed once the session runs, with ``{"app_id", "ui_url"}`` as JSON:
the Spark application's id and its live Spark UI address (null when the UI is disabled or the
session is a Spark Connect one)."""

MARKERS = (METRICS_MARKER, APPLICATION_MARKER)

LEVELLED_LOG_ENV = "SPARKPIPE_LEVELLED_LOG"
"""Set (to ``1``) by whoever turns the driver's output into log records (the local runtime's hook): the
driver's log lines then start with their level (``WARNING sparkpipe: ...``), so each keeps the level the
driver gave it."""


def marker_line(marker: str, document: dict[str, Any]) -> str:
    """The line announcing ``document``: the marker, then compact JSON on one line."""
    return marker + json.dumps(document, separators=(",", ":"), default=str)


def parse_marker_line(line: str) -> tuple[str, dict[str, Any] | None] | None:
    """``(marker, document)`` of a marker line, None for any other line.

    The document is None when the line was cut or garbled (a log that truncates long lines):
    the line is still a marker, never a line of the driver's own output."""
    line = line.rstrip("\r\n")
    for marker in MARKERS:
        if line.startswith(marker):
            try:
                document = json.loads(line[len(marker) :])
            except ValueError:
                return marker, None
            return marker, document if isinstance(document, dict) else None
    return None


def is_marker_line(line: str) -> bool:
    return line.startswith(MARKERS)


def last_metrics(lines: Iterable[str]) -> dict[str, Any] | None:
    """The metrics document of the last readable ``SPARKPIPE_METRICS`` line among ``lines``."""
    found = None
    for line in lines:
        parsed = parse_marker_line(line)
        if parsed is not None and parsed[0] == METRICS_MARKER and parsed[1] is not None:
            found = parsed[1]
    return found
