"""Data-quality rules of a sequence (``expectations``, ``min_rows``/``max_rows``): their config, and the
columns, counts and decisions that ride on the sequence's own write.

Every rule is counted by the ``observe()`` of the write itself: ``warn``, ``drop`` and ``fail`` add no
Spark job, ``quarantine`` adds one (the rejected rows are a second output). Config checking imports no
pyspark; only ``SequenceRules`` (run time) builds columns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from spark_job.fields import Field, describe_value

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
    from spark_job.sql import _GiveUp, _tokens

    if not text.strip():
        return "is empty: write a Spark SQL boolean expression such as 'amount > 0'"
    try:
        tokens = _tokens(text)
    except _GiveUp:
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
    raw: Any, path: str, report: Callable[[str, str], None], check_fields: Callable[..., None]
) -> tuple[Expectation, ...]:
    """The rules of ``expectations`` at ``path``; problems are reported (``report(path, message)``)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        report(path, f"must be a list of rules ({{name, condition, on_fail}}), got {describe_value(raw)}")
        return ()
    rules: list[Expectation] = []
    names: dict[str, str] = {}
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            report(where, f"a rule must be a mapping with name and condition, got {describe_value(item)}")
            continue
        item = raw[i] = dict(item)
        check_fields(item, EXPECTATION_FIELDS, where, "an expectation")
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
    return tuple(rules)


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


@dataclass(frozen=True)
class RuleOutcome:
    """What one rule found: ``failed_rows`` (None when a non-staging write was aborted before any count)."""

    rule: Expectation
    failed_rows: int | None
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"failed_rows": self.failed_rows, "action": self.rule.on_fail, "passed": self.passed}


class ExpectationFailed(Exception):
    """A ``fail`` rule or a row bound failed: the sequence fails (its staged write is discarded)."""


class SequenceRules:
    """The columns and counts of one sequence's rules on one session (built at run time).

    Args:
        sequence: the ``SequenceSpec``.
        functions: ``pyspark.sql.functions`` of the session's kind.
    """

    def __init__(self, sequence: Any, functions: Any) -> None:
        self.seq = sequence
        self.F = functions
        self.rules: tuple[Expectation, ...] = tuple(sequence.expectations)

    @property
    def active(self) -> bool:
        return bool(self.rules) or self.seq.min_rows is not None or self.seq.max_rows is not None

    def ok(self, rule: Expectation) -> Any:
        """True for a row that satisfies the rule; a NULL condition fails it."""
        return self.F.coalesce(self.F.expr(rule.condition), self.F.lit(False))

    def check_types(self, df: Any) -> None:
        """Each condition resolves against the result and is boolean (Spark's analysis: no job runs)."""
        if not self.rules:
            return
        for rule in self.rules:
            try:
                field = df.select(self.F.expr(rule.condition).alias("c")).schema.fields[0]
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ExpectationFailed(
                    f"sequence {self.seq.name}: expectation {rule.name} ({rule.path}.condition): "
                    f"{rule.condition!r} does not resolve against the result: {first}"
                ) from None
            if field.dataType.typeName() != "boolean":
                raise ExpectationFailed(
                    f"sequence {self.seq.name}: expectation {rule.name} ({rule.path}.condition): "
                    f"{rule.condition!r} is of type {field.dataType.simpleString()}, not boolean: "
                    "write a comparison such as 'amount > 0'"
                )

    def removed(self) -> Any:
        """True for a row not written to the target (it fails a drop or quarantine rule)."""
        out = self.F.lit(False)
        for rule in self.rules:
            if rule.on_fail in ("drop", "quarantine"):
                out = out | ~self.ok(rule)
        return out

    def quarantined(self) -> Any:
        out = self.F.lit(False)
        for rule in self.rules:
            if rule.on_fail == "quarantine":
                out = out | ~self.ok(rule)
        return out

    def observed_columns(self) -> list[Any]:
        """Aggregates for the write's ``observe``: rows written, rows checked, rows failing each rule."""
        F = self.F
        one = F.lit(1)
        columns = [
            F.count(F.when(~self.removed(), one)).alias("rows"),
            F.count(one).alias("rows_checked"),
            F.count(F.when(self.quarantined(), one)).alias("rows_quarantined"),
        ]
        columns += [F.count(F.when(~self.ok(r), one)).alias(f"failed_{i}") for i, r in enumerate(self.rules)]
        return columns

    def kept(self, df: Any) -> Any:
        """The rows the target receives (what readers of the sequence see)."""
        if not any(r.on_fail in ("drop", "quarantine") for r in self.rules):
            return df
        return df.filter(~self.removed())

    def needing_counts(self) -> list[str]:
        """What is decided on the write's counts rather than by the write itself: ``fail`` rules that
        tolerate failures and the row bounds (a ``fail`` rule tolerating none can abort the job)."""
        needs = [
            f"expectation {r.name} (max_failed)"
            for r in self.rules
            if r.on_fail == "fail" and (r.max_failed != 0 or r.max_failed_share is not None)
        ]
        needs += [bound for bound in ("min_rows", "max_rows") if getattr(self.seq, bound) is not None]
        return needs

    def abort_on_failure(self, df: Any, why: str = "the target cannot stage its write") -> Any:
        """For a target that cannot stage (or a session that receives no counts, ``why``): the job itself
        fails on the first row failing a ``fail`` rule with no tolerance (``raise_error`` in a filter,
        which Spark cannot prune away)."""
        F = self.F
        for rule in self.rules:
            if rule.on_fail == "fail" and rule.max_failed == 0 and rule.max_failed_share is None:
                message = (
                    f"sequence {self.seq.name}: expectation {rule.name} ({rule.condition}) failed: "
                    f"a row failed it and {why}, so the write was aborted"
                )
                df = df.filter(F.when(~self.ok(rule), F.raise_error(F.lit(message))).otherwise(F.lit(True)))
        return df

    def with_failed_rules(self, df: Any) -> Any:
        """The quarantined rows, each with ``failed_rules``: the names of every rule it failed."""
        F = self.F
        names = [F.when(~self.ok(r), F.lit(r.name)) for r in self.rules]
        failed = F.filter(F.array(*names), lambda n: n.isNotNull())
        return df.filter(self.quarantined()).withColumn(QUARANTINE_COLUMN, failed)

    def outcomes(self, observed: Mapping[str, Any]) -> list[RuleOutcome]:
        checked = int(observed.get("rows_checked") or 0)
        out = []
        for i, rule in enumerate(self.rules):
            failed = int(observed.get(f"failed_{i}") or 0)
            out.append(RuleOutcome(rule, failed, failed <= rule.allowed(checked)))
        return out

    def failures(self, outcomes: list[RuleOutcome], observed: Mapping[str, Any]) -> list[str]:
        """One message per ``fail`` rule or row bound that failed (sequence, rule, condition, counts)."""
        checked = int(observed.get("rows_checked") or 0)
        rows = int(observed.get("rows") or 0)
        messages = []
        for outcome in outcomes:
            rule = outcome.rule
            if rule.on_fail == "fail" and not outcome.passed:
                messages.append(
                    f"sequence {self.seq.name}: expectation {rule.name} ({rule.condition}) failed: "
                    f"{outcome.failed_rows:,} of {checked:,} rows failed it, more than {rule.tolerance(checked)}"
                )
        if self.seq.min_rows is not None and rows < self.seq.min_rows:
            messages.append(f"sequence {self.seq.name}: min_rows {self.seq.min_rows:,} failed: {rows:,} rows written")
        if self.seq.max_rows is not None and rows > self.seq.max_rows:
            messages.append(f"sequence {self.seq.name}: max_rows {self.seq.max_rows:,} failed: {rows:,} rows written")
        return messages
