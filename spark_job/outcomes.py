"""What became of a run and its sequences: their states, and the one text a run's metrics document is
summed up in (the CLI's closing lines, the Airflow task log's). Pure Python: the provider imports it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import Enum
from typing import Any


class SequenceState(str, Enum):
    """The state of one sequence in a run, as the metrics document spells it (``status``)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    """Not run: a sequence it reads did not succeed, or the run stopped first."""
    CANCELLED = "cancelled"
    """Its Spark jobs were cancelled (``fail_fast``, a terminated driver); nothing was committed."""
    REUSED = "reused"
    """Committed by an earlier try of the same run key; its figures are that try's."""

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        return self not in (SequenceState.PENDING, SequenceState.RUNNING)

    @property
    def usable(self) -> bool:
        """Whether the sequences reading it can run (its result exists)."""
        return self in (SequenceState.SUCCEEDED, SequenceState.REUSED)

    @property
    def fails_the_run(self) -> bool:
        return self in (SequenceState.FAILED, SequenceState.CANCELLED)


def describe_target(target: Mapping[str, Any]) -> str:
    """``parquet /data/out/x``, ``jdbc jdbc:postgresql://db:5432/shop public.revenue``: the type, then
    where (a JDBC target's database and table), without credentials."""
    from spark_job.config.urls import strip_credentials

    parts = [str(target["type"])] if target.get("type") else []
    parts += [strip_credentials(str(target[k])) for k in ("uri", "table") if target.get(k)]
    return " ".join(parts)


def rule_counts(seq: Mapping[str, Any]) -> str:
    """``; rules: positive_amount 3 failed (drop), has_customer 14 failed (fail, FAILED)`` for a sequence
    with data-quality rules, else empty."""
    rules = seq.get("expectations")
    if not isinstance(rules, Mapping) or not rules:
        return ""
    parts = []
    for name, rule in rules.items():
        rule = rule if isinstance(rule, Mapping) else {}
        failed = rule.get("failed_rows")
        count = f"{failed:,}" if isinstance(failed, int) else "?"
        verdict = "" if rule.get("passed") is not False or rule.get("action") != "fail" else ", FAILED"
        parts.append(f"{name} {count} failed ({rule.get('action')}{verdict})")
    return "; rules: " + ", ".join(parts)


def seconds(value: Any) -> str:
    return f"{value:.1f} s" if isinstance(value, (int, float)) else "an unknown time"


def first_line(text: Any) -> str:
    lines = [line for line in str(text or "").splitlines() if line.strip()]
    return lines[0].strip() if lines else ""


def merged_counts(seq: Mapping[str, Any]) -> str:
    """`` (3 inserted, 2 updated, 1 deleted)`` for a write that updated its target in place, else empty."""
    parts = [
        f"{seq[key]:,} {word}"
        for key, word in (("rows_inserted", "inserted"), ("rows_updated", "updated"), ("rows_deleted", "deleted"))
        if isinstance(seq.get(key), int)
    ]
    return f" ({', '.join(parts)})" if parts else ""


def sequence_outcome(seq: Mapping[str, Any], *, target: bool = False, whole_error: bool = False) -> str:
    """What happened to one sequence of a metrics document, in words, never ``None``:
    ``succeeded, 1,234 rows in 4.2 s`` (`` -> parquet gs://b/x`` with ``target``), ``failed after 0.4 s:
    <error>`` (its first line unless ``whole_error``), ``skipped: reads x, which failed``,
    ``reused: committed by an earlier try of this run, 12 rows``; each with the rules' counts."""
    status = str(seq.get("status") or "not run")
    error = seq.get("error")
    took = f" in {seconds(seq.get('duration_s'))}" if seq.get("duration_s") is not None else ""
    rows = seq.get("rows_written")
    counted = f"{rows:,} row{'' if rows == 1 else 's'}" if isinstance(rows, int) else ""
    if status in (SequenceState.FAILED, SequenceState.CANCELLED):
        after = f" after {seconds(seq.get('duration_s'))}" if seq.get("duration_s") is not None else ""
        why = str(error).strip() if whole_error and error else first_line(error)
        default = "no error was reported" if status == SequenceState.FAILED else ""
        why = why or default
        return f"{status}{after}{': ' + why if why else ''}{rule_counts(seq)}"
    if status == SequenceState.SKIPPED:
        reason = first_line(error) or "a sequence it reads did not succeed"
        return f"skipped: {reason.removeprefix('not run: ').removeprefix('it ')}"
    if status == SequenceState.REUSED:
        text = f"reused: committed by an earlier try of this run{f', {counted}' if counted else ''}"
    elif status == SequenceState.SUCCEEDED:
        text = f"succeeded, {counted or 'no rows counted'}{merged_counts(seq)}{took}"
    else:
        text = ", ".join(part for part in (status, counted) if part) + took
    where = describe_target(seq.get("target") or {}) if target else ""
    return (f"{text} -> {where}" if where else text) + rule_counts(seq)


def sequence_level(seq: Mapping[str, Any]) -> int:
    """The log level a sequence's outcome is said at: errors for a failure, warnings for a skip."""
    status = seq.get("status")
    if status in (SequenceState.FAILED, SequenceState.CANCELLED):
        return logging.ERROR
    return logging.WARNING if status == SequenceState.SKIPPED else logging.INFO


def usage_summary(usage: Mapping[str, Any]) -> str:
    """``executor_core_seconds=12.4, tasks=40``: the figures of ``runtime.usage``, units in their names."""
    return ", ".join(f"{k}={v:,}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in usage.items())


def run_summary(document: Mapping[str, Any], *, in_task: bool = False, error: bool = True) -> list[tuple[int, str]]:
    """A run's closing lines with their log levels: the outcome, then one line per sequence.

    On the driver's console: ``sparkpipe: daily failed in 12.3 s (3 sequences, at most 2 at once)``, then
    ``  name  <outcome>`` (names aligned), the run's own error (with ``error``) and the sequences not run. In
    the task log (``in_task``): ``Pipeline 'daily' failed in 12.3 s (Spark application <id>)``, the run's
    usage, then ``  name: <outcome> -> <target>`` with the whole error.
    """
    sequences: Mapping[str, Any] = document.get("sequences") or {}
    status = document.get("status") or "ended"
    lines: list[tuple[int, str]] = []
    if in_task:
        app_id = document.get("spark_app_id")
        application = f" (Spark application {app_id})" if app_id else ""
        lines.append(
            (
                logging.INFO,
                f"Pipeline {document.get('app_name')!r} {status} in {seconds(document.get('duration_s'))}{application}",
            )
        )
        usage = (document.get("runtime") or {}).get("usage")
        if usage:
            lines.append((logging.INFO, f"Usage: {usage_summary(usage)}"))
        for name, seq in sequences.items():
            seq = seq if isinstance(seq, Mapping) else {}
            lines.append((sequence_level(seq), f"  {name}: {sequence_outcome(seq, target=True, whole_error=True)}"))
        return lines
    count = len(sequences)
    lines.append(
        (
            logging.INFO,
            f"sparkpipe: {document.get('app_name')} {status} in {document.get('duration_s') or 0.0:.1f} s "
            f"({count} sequence{'' if count == 1 else 's'}, at most {document.get('max_concurrency') or 0} at once)",
        )
    )
    width = max((len(name) for name in sequences), default=0)
    for name, seq in sequences.items():
        lines.append((logging.INFO, f"  {name.ljust(width)}  {sequence_outcome(seq)}"))
    if error and document.get("error"):
        lines.append((logging.ERROR, f"sparkpipe: {document['error']}"))
    skipped = [name for name, seq in sequences.items() if seq.get("status") == SequenceState.SKIPPED]
    if skipped:
        lines.append((logging.WARNING, f"sparkpipe: not run: {', '.join(skipped)}"))
    return lines
