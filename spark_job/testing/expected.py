"""What a pipeline test expects of a sequence (``Expected``), and the differences between those rows and
the rows the sequence gave (``compare``)."""

from __future__ import annotations

import datetime
import decimal
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REL_TOL = 1e-9
ABS_TOL = 1e-9
MAX_DIFF_ROWS = 20


@dataclass(frozen=True)
class Expected:
    """What one sequence must produce: ``rows`` (a list, compared as a multiset unless ``ordered``) or a ``count``,
    and ``failed``: rule name -> the rows that must fail that data-quality rule (``expect_failed``)."""

    sequence: str
    path: str
    rows: list[dict[str, Any]] | None = None
    count: int | None = None
    ordered: bool = False
    failed: dict[str, int] | None = None


def compare(expected: Expected, actual: list[dict[str, Any]]) -> list[str]:
    """Human-readable differences between expected and actual rows (empty when they match)."""
    name = expected.sequence
    if expected.count is not None:
        if len(actual) != expected.count:
            return [f"{name}: expected {expected.count:,} rows, got {len(actual):,}"]
        return []
    rows = expected.rows or []
    columns = list(dict.fromkeys(k for row in rows for k in row))
    present = set(actual[0]) if actual else set()
    absent = [c for c in columns if actual and c not in present]
    if absent:
        return [f"{name}: column {', '.join(absent)} not in the result (it has {', '.join(sorted(present))})"]
    projected = [{c: row.get(c) for c in columns} for row in actual]
    if expected.ordered:
        return _compare_ordered(name, rows, projected)
    unmatched = list(range(len(projected)))
    missing: list[dict[str, Any]] = []
    for row in rows:
        hit = next((i for i in unmatched if _rows_equal(row, projected[i])), None)
        if hit is None:
            missing.append(row)
        else:
            unmatched.remove(hit)
    extra = [projected[i] for i in unmatched]
    if not missing and not extra:
        return []
    lines = [f"{name}: {len(missing)} expected row(s) missing, {len(extra)} unexpected row(s)"]
    unpaired = list(extra)
    for row in missing[:MAX_DIFF_ROWS]:
        # A missing row and an unexpected one that agree on some columns are shown as one row that differs.
        closest = max(unpaired, key=lambda other: _same_columns(row, other), default=None)
        if closest is not None and _same_columns(row, closest) > 0:
            unpaired.remove(closest)
            diffs = [
                f"{c}: expected {_show(row.get(c))}, got {_show(closest.get(c))}"
                for c in columns
                if not _values_equal(row.get(c), closest.get(c))
            ]
            lines.append(f"  ~ {_show_row(row)}: {'; '.join(diffs)}")
        else:
            lines.append(f"  - {_show_row(row)}")
    lines += [f"  + {_show_row(row)}" for row in unpaired[:MAX_DIFF_ROWS]]
    return lines


def _compare_ordered(name: str, rows: list[dict[str, Any]], actual: list[dict[str, Any]]) -> list[str]:
    lines = []
    for i, (want, got) in enumerate(zip(rows, actual)):
        if not _rows_equal(want, got):
            lines.append(f"  row {i}: expected {_show_row(want)}, got {_show_row(got)}")
    if len(rows) != len(actual):
        lines.append(f"  expected {len(rows)} rows, got {len(actual)}")
    return [f"{name}: the rows differ (in order)", *lines[:MAX_DIFF_ROWS]] if lines else []


def _rows_equal(want: Mapping[str, Any], got: Mapping[str, Any]) -> bool:
    return all(_values_equal(want.get(c), got.get(c)) for c in want)


def _same_columns(want: Mapping[str, Any], got: Mapping[str, Any]) -> int:
    return sum(1 for c in want if _values_equal(want.get(c), got.get(c)))


def _values_equal(want: Any, got: Any) -> bool:
    if want is None or got is None:
        return want is None and got is None
    if isinstance(want, bool) or isinstance(got, bool):
        return want == got
    if isinstance(want, (int, float, decimal.Decimal)) and isinstance(got, (int, float, decimal.Decimal)):
        if isinstance(want, int) and isinstance(got, int):
            return want == got
        return math.isclose(float(want), float(got), rel_tol=REL_TOL, abs_tol=ABS_TOL)
    if isinstance(got, (datetime.date, datetime.datetime)) and isinstance(want, str):
        return want in (got.isoformat(), str(got))
    if isinstance(want, Mapping) and isinstance(got, Mapping):
        return set(want) == set(got) and all(_values_equal(want[k], got[k]) for k in want)
    if isinstance(want, list) and isinstance(got, list):
        return len(want) == len(got) and all(_values_equal(a, b) for a, b in zip(want, got))
    return bool(want == got)


def _show(value: Any) -> str:
    return "null" if value is None else repr(value) if isinstance(value, str) else str(value)


def _show_row(row: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in row.items()) + "}"
