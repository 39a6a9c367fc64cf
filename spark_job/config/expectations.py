"""The data-quality rules of a sequence as the config declares them (``expectations``): their keys,
their checks and the ``Expectation`` each becomes. The columns and counts that ride on the write are
``spark_job.quality``'s."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from spark_job.config.fields import Field, describe_value

ACTIONS = ("warn", "drop", "fail", "quarantine")
QUARANTINE_COLUMN = "failed_rules"
"""The column of a quarantined row naming the rules it failed (an array of rule names)."""

EXPECTATION_FIELDS: dict[str, Field] = {
    "name": Field("str", required=True, doc="rule name, unique in the sequence (letters, digits and _)"),
    "condition": Field("str", required=True, doc="Spark SQL boolean expression a row must satisfy"),
    "on_fail": Field("str", choices=ACTIONS, doc="warn (default), drop, fail or quarantine"),
    "max_failed": Field("scalar", doc="with on_fail: fail, rows allowed to fail: a count or a share such as '1%'"),
    "description": Field("str", doc="free text"),
}

# Functions that aggregate rows: a rule is checked row by row.
_AGGREGATES = frozenset(
    [
        "any",
        "any_value",
        "approx_count_distinct",
        "approx_percentile",
        "array_agg",
        "avg",
        "bit_and",
        "bit_or",
        "bit_xor",
        "bitmap_construct_agg",
        "bitmap_or_agg",
        "bool_and",
        "bool_or",
        "collect_list",
        "collect_set",
        "corr",
        "count",
        "count_if",
        "count_min_sketch",
        "covar_pop",
        "covar_samp",
        "every",
        "first",
        "first_value",
        "grouping",
        "grouping_id",
        "histogram_numeric",
        "hll_sketch_agg",
        "hll_union_agg",
        "kurtosis",
        "last",
        "last_value",
        "listagg",
        "max",
        "max_by",
        "mean",
        "median",
        "min",
        "min_by",
        "mode",
        "percentile",
        "percentile_approx",
        "percentile_cont",
        "percentile_disc",
        "regr_avgx",
        "regr_avgy",
        "regr_count",
        "regr_intercept",
        "regr_r2",
        "regr_slope",
        "regr_sxx",
        "regr_sxy",
        "regr_syy",
        "skewness",
        "some",
        "std",
        "stddev",
        "stddev_pop",
        "stddev_samp",
        "string_agg",
        "sum",
        "try_avg",
        "try_sum",
        "var_pop",
        "var_samp",
        "variance",
        "cume_dist",
        "dense_rank",
        "lag",
        "lead",
        "nth_value",
        "ntile",
        "percent_rank",
        "rank",
        "row_number",
    ]
)
_SUBQUERY_WORDS = frozenset({"SELECT", "FROM", "WITH", "VALUES", "TABLE", "EXISTS"})
_STATEMENT_WORDS = frozenset({"INSERT", "DROP", "CREATE", "DELETE", "UPDATE", "MERGE", "ALTER", "SET", "USE"})
_PERCENT = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*\Z")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Expectation:
    """One rule: rows for which ``condition`` is false or NULL fail it.

    Attributes:
        name: the rule's name (unique in its sequence).
        condition: a Spark SQL boolean expression over the sequence result's columns.
        on_fail: ``warn`` (count, keep the rows), ``drop`` (count, do not write them), ``quarantine``
            (drop, and write them to the sequence's ``quarantine`` target) or ``fail`` (the sequence
            fails when more rows fail than ``max_failed``).
        max_failed: rows allowed to fail a ``fail`` rule (0 unless given).
        max_failed_share: the same as a share of the rows checked (``"1%"`` is 0.01), if given so.
        path: the config path, e.g. ``sequences[0].expectations[1]``.
    """

    name: str
    condition: str
    on_fail: str = "warn"
    max_failed: int = 0
    max_failed_share: float | None = None
    path: str = ""

    def allowed(self, rows_checked: int) -> int:
        """The most rows that may fail before the rule fails (always 0 for warn, drop and quarantine:
        they never fail the sequence, and ``passed`` says whether any row failed)."""
        if self.on_fail != "fail":
            return 0
        if self.max_failed_share is not None:
            return math.floor(rows_checked * self.max_failed_share + 1e-9)
        return self.max_failed

    def tolerance(self, rows_checked: int) -> str:
        if self.max_failed_share is not None:
            return f"max_failed {self.max_failed_share * 100:g}% ({self.allowed(rows_checked):,} rows)"
        return f"max_failed {self.max_failed:,}"


def condition_problem(text: str) -> str | None:
    """Why ``text`` is not one row-level boolean expression, or None (a conservative lexical check;
    Spark's analysis checks names and the boolean type before the sequence's job starts)."""
    from spark_job.config.sql_lexer import GiveUp, query_tokens

    if not text.strip():
        return "is empty: write a Spark SQL boolean expression such as 'amount > 0'"
    try:
        tokens = query_tokens(text)
    except GiveUp:
        return "cannot be read: an unterminated string, quoted name or comment"
    if not tokens:
        return "holds only comments: write a Spark SQL boolean expression such as 'amount > 0'"
    if any(kind == "name" and value.upper() == "OVER" for kind, value in tokens):
        return "holds OVER: a window function is not allowed, a rule is checked on each row alone"
    depth = 0
    for i, (kind, value) in enumerate(tokens):
        word = value.upper() if kind == "name" else ""
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if kind == "punct" and value == "(":
            depth += 1
        elif kind == "punct" and value == ")":
            depth -= 1
            if depth < 0:
                return "has a ')' without its '('"
        elif kind == "punct" and value == ";":
            return "holds ';': a condition is one expression, not statements"
        elif kind == "punct" and value == "," and depth == 0:
            return "holds a ',' outside parentheses: a condition is one expression (combine rules with AND)"
        elif word in _SUBQUERY_WORDS:
            return f"holds {word}: a subquery is not allowed, a rule is checked on each row alone"
        elif word in _STATEMENT_WORDS and i == 0:
            return f"is a {word} statement, not an expression"
        elif word == "AS" and depth == 0:
            return "holds AS: give the expression only, the rule's name is its name"
        elif kind == "name" and value.lower() in _AGGREGATES and nxt == ("punct", "("):
            prev = tokens[i - 1] if i else None
            if prev != ("punct", "."):  # a struct field or a qualified column named like a function
                return (
                    f"calls {value}(), which aggregates rows: a rule is checked on each row alone "
                    "(use min_rows/max_rows for counts)"
                )
    if depth:
        return "has a '(' without its ')'"
    return None


def parse_expectations(
    raw: Any,
    path: str,
    report: Callable[[str, str], None],
    typed: Callable[[Mapping[str, Any], Mapping[str, Field], str, str], dict[str, Any]],
) -> tuple[tuple[Expectation, ...], list[Any] | None]:
    """The rules of ``expectations`` at ``path``, and the list as written with each rule's keys typed
    (``typed(rule, fields, path, what)`` checks them and returns a typed copy; ``raw`` is not changed).
    Problems are reported (``report(path, message)``)."""
    if raw is None:
        return (), None
    if not isinstance(raw, list):
        report(path, f"must be a list of rules ({{name, condition, on_fail}}), got {describe_value(raw)}")
        return (), None
    rules: list[Expectation] = []
    listed: list[Any] = []
    names: dict[str, str] = {}
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            report(where, f"a rule must be a mapping with name and condition, got {describe_value(item)}")
            listed.append(item)
            continue
        item = typed(item, EXPECTATION_FIELDS, where, "an expectation")
        listed.append(item)
        name, condition = item.get("name"), item.get("condition")
        ok = isinstance(name, str) and isinstance(condition, str)
        if isinstance(name, str) and name.strip():
            if not _NAME.match(name):
                report(f"{where}.name", f"{name!r} is not a valid rule name: use ASCII letters, digits and _")
                ok = False
            elif name.lower() in names:
                report(f"{where}.name", f"rule name {name!r} is already used by {names[name.lower()]}")
                ok = False
            else:
                names[name.lower()] = where
        if isinstance(condition, str) and (problem := condition_problem(condition)):
            report(f"{where}.condition", problem)
            ok = False
        action = item.get("on_fail", "warn")
        if action not in ACTIONS:
            ok = False
        count, share = 0, None
        if "max_failed" in item:
            count, share, problem = _tolerance(item["max_failed"])
            if problem:
                report(f"{where}.max_failed", problem)
                ok = False
            elif action != "fail":
                report(
                    f"{where}.max_failed",
                    f"applies to on_fail: fail only (this rule's on_fail is {action}): remove it or use fail",
                )
                ok = False
        if ok:
            rules.append(Expectation(str(name), str(condition), str(action), count, share, where))
    return tuple(rules), listed


def _tolerance(value: Any) -> tuple[int, float | None, str | None]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            return 0, None, f"must not be negative, got {value}"
        return value, None, None
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            return int(text), None, None
        match = _PERCENT.match(text)
        if match:
            share = float(match.group(1)) / 100
            if share > 1:
                return 0, None, f"{value!r} is more than 100%"
            return 0, share, None
    return 0, None, f"must be a row count (10) or a share of the rows ('1%', '0.5%'), got {describe_value(value)}"
