"""The data-quality rules of a sequence at run time: the columns, counts and decisions that ride on the
sequence's own write (``expectations``, ``min_rows``/``max_rows``).

Every rule is counted by the ``observe()`` of the write itself: ``warn``, ``drop`` and ``fail`` add no
Spark job, ``quarantine`` adds one (the rejected rows are a second output).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spark_job.config.expectations import QUARANTINE_COLUMN, Expectation


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
