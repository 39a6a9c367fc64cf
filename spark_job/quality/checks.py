"""The data-quality rules of a sequence at run time: the columns, counts and decisions that ride on the
sequence's own write (``expectations``, ``min_rows``/``max_rows``).

Each rule's condition is evaluated once per row, into a column of its own (``evaluated``): the write's
``observe()`` counts, the ``fail`` abort, the ``drop`` filter and the quarantine all read that column, so
a condition that is not deterministic (``rand()``, ``current_timestamp()``, a UDF) puts each row in
exactly one of target, quarantine and dropped. ``warn``, ``drop`` and ``fail`` add no Spark job,
``quarantine`` adds one (the rejected rows are a second output, read from the rows the write computed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spark_job.config.expectations import QUARANTINE_COLUMN, Expectation

RULE_COLUMN_PREFIX = "__sparkpipe_rule_"
"""The evaluated rules' columns are named ``__sparkpipe_rule_<i>`` (another suffix if the result has one)."""
ABORT_MARK = "sparkpipe aborted the write"
"""In the error of a job a ``fail`` rule aborted (``raise_error``): the message holds no condition text."""


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
        self.names: tuple[str, ...] = ()
        """The rules' columns in the frame ``evaluated`` returned (one per rule, in order)."""

    @property
    def active(self) -> bool:
        return bool(self.rules) or self.seq.min_rows is not None or self.seq.max_rows is not None

    @property
    def quarantines(self) -> bool:
        return any(r.on_fail == "quarantine" for r in self.rules)

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

    # -- the rules' columns ----------------------------------------------------------------------
    def evaluated(self, df: Any) -> Any:
        """``df`` with one boolean column per rule, true where the row satisfies it: each condition is
        computed once per row (Spark neither merges nor re-evaluates a column that is not deterministic),
        and every count, filter and abort below reads these columns."""
        if not self.rules:
            self.names = ()
            return df
        taken = {c.lower() for c in df.columns}
        names = []
        for i in range(len(self.rules)):
            name, n = f"{RULE_COLUMN_PREFIX}{i}", 0
            while name.lower() in taken:
                n += 1
                name = f"{RULE_COLUMN_PREFIX}{i}_{n}"
            taken.add(name.lower())
            names.append(name)
        self.names = tuple(names)
        return df.select("*", *[self.ok(r).alias(c) for r, c in zip(self.rules, self.names)])

    def passes(self, i: int) -> Any:
        return self.F.col(self.names[i])

    def removed(self) -> Any:
        """True for a row not written to the target (it fails a drop or quarantine rule)."""
        return self._failing(("drop", "quarantine"))

    def quarantined(self) -> Any:
        return self._failing(("quarantine",))

    def _failing(self, actions: tuple[str, ...]) -> Any:
        out = self.F.lit(False)
        for i, rule in enumerate(self.rules):
            if rule.on_fail in actions:
                out = out | ~self.passes(i)
        return out

    def observed_columns(self) -> list[Any]:
        """Aggregates for the write's ``observe`` (on an ``evaluated`` frame): rows written, rows checked,
        rows failing each rule."""
        F = self.F
        one = F.lit(1)
        columns = [
            F.count(F.when(~self.removed(), one)).alias("rows"),
            F.count(one).alias("rows_checked"),
            F.count(F.when(self.quarantined(), one)).alias("rows_quarantined"),
        ]
        columns += [F.count(F.when(~self.passes(i), one)).alias(f"failed_{i}") for i in range(len(self.rules))]
        return columns

    def without_rules(self, df: Any) -> Any:
        return df.drop(*self.names) if self.names else df

    def kept(self, df: Any) -> Any:
        """The rows the target receives (what readers of the sequence see), from an ``evaluated`` frame
        (or the query's result, evaluated here)."""
        if not self.rules:
            return df
        if not self.names or any(n not in df.columns for n in self.names):
            df = self.evaluated(df)
        if any(r.on_fail in ("drop", "quarantine") for r in self.rules):
            df = df.filter(~self.removed())
        return self.without_rules(df)

    def with_failed_rules(self, df: Any) -> Any:
        """The quarantined rows of an ``evaluated`` frame, each with ``failed_rules``: the names of every
        rule it failed."""
        F = self.F
        names = [F.when(~self.passes(i), F.lit(r.name)) for i, r in enumerate(self.rules)]
        failed = F.filter(F.array(*names), lambda n: n.isNotNull())
        return self.without_rules(df.filter(self.quarantined()).withColumn(QUARANTINE_COLUMN, failed))

    # -- decisions -------------------------------------------------------------------------------
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
        which Spark cannot prune away). Put on an ``evaluated`` frame before the rows a ``drop`` rule
        removes are filtered out, so a row failing both still aborts the write.

        The error Spark raises (and logs on its own stderr) names the sequence, the rule and its config
        path, never the condition's text: it may hold a resolved secret."""
        F = self.F
        for i, rule in enumerate(self.rules):
            if rule.on_fail == "fail" and rule.max_failed == 0 and rule.max_failed_share is None:
                message = f"{ABORT_MARK}: sequence {self.seq.name}: expectation {rule.name} ({rule.path}) [{why}]"
                df = df.filter(F.when(~self.passes(i), F.raise_error(F.lit(message))).otherwise(F.lit(True)))
        return df

    def aborting_rule(self, error: BaseException | str) -> Expectation | None:
        """The ``fail`` rule whose ``raise_error`` ended the job that raised ``error``, if one did."""
        text = str(error)
        if ABORT_MARK not in text:
            return None
        for rule in self.rules:
            if f"{ABORT_MARK}: sequence {self.seq.name}: expectation {rule.name} (" in text:
                return rule
        return None

    def aborted(self, rule: Expectation, why: str, mask: Any) -> ExpectationFailed:
        """The error of a write that ``rule`` aborted, with its (masked) condition, as the driver reports it."""
        return ExpectationFailed(
            f"sequence {self.seq.name}: expectation {rule.name} ({mask(rule.condition)}) failed: "
            f"a row failed it and {why}, so the write was aborted"
        )

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
