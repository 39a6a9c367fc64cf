"""The driver's marker lines (``spark_job/markers.py``): what the driver prints is what the hooks read
back, a cut or garbled line is still a marker, and the last readable metrics line wins."""

from __future__ import annotations

from spark_job.markers import (
    APPLICATION_MARKER,
    METRICS_MARKER,
    is_marker_line,
    last_metrics,
    marker_line,
    parse_marker_line,
)


def test_a_document_survives_its_marker_line() -> None:
    document = {"status": "succeeded", "sequences": {"daily": {"rows_written": 40}}, "note": "a\nb"}
    line = marker_line(METRICS_MARKER, document)
    assert "\n" not in line and line.startswith("SPARKPIPE_METRICS {")
    assert parse_marker_line(line + "\r\n") == (METRICS_MARKER, document)
    assert parse_marker_line(marker_line(APPLICATION_MARKER, {"app_id": "local-1", "ui_url": None})) == (
        APPLICATION_MARKER,
        {"app_id": "local-1", "ui_url": None},
    )


def test_a_cut_or_garbled_marker_line_is_still_a_marker_without_a_document() -> None:
    line = marker_line(METRICS_MARKER, {"status": "failed"})
    assert parse_marker_line(line[:-3]) == (METRICS_MARKER, None)
    assert parse_marker_line(METRICS_MARKER + "[1, 2]") == (METRICS_MARKER, None)
    assert is_marker_line(line[:-3])


def test_other_lines_are_no_markers() -> None:
    for line in ("sparkpipe: pipeline 'x' succeeded", " SPARKPIPE_METRICS {}", "SPARKPIPE_METRICS{}", ""):
        assert parse_marker_line(line) is None
        assert not is_marker_line(line)


def test_the_last_readable_metrics_line_wins() -> None:
    lines = [
        marker_line(METRICS_MARKER, {"run": 1}),
        "25/12/02 14:36:41 WARN TaskSetManager: Lost task",
        marker_line(METRICS_MARKER, {"run": 2}),
        marker_line(APPLICATION_MARKER, {"app_id": "local-2"}),
        marker_line(METRICS_MARKER, {"run": 3})[:-2],  # cut by a log that truncates long lines
    ]
    assert last_metrics(lines) == {"run": 2}
    assert last_metrics(["no marker here"]) is None
