"""The ways one sequence's result reaches its target (``WriteFlow``), chosen once per sequence run.

A flow says in which order the write's steps happen: writing (aside, where the target stages),
deciding on the data-quality rules' counts, and committing. ``SequenceRun`` runs the flow it chose; a new
write mode is one more member here and one more writer method.
"""

from __future__ import annotations

from enum import Enum


class WriteFlow(Enum):
    """How one sequence's write goes, from ``begin_write`` to ``commit`` or ``discard``."""

    DIRECT = "direct"
    """No rules; the writer stages nothing: its commit is Spark's own write of the target."""

    STAGED = "staged"
    """No rules; the writer writes aside first: committed unless the sequence was cancelled meanwhile."""

    CHECK_THEN_COMMIT = "check-then-commit"
    """Rules on a target that stages: written aside with the rules' counts, which then decide between
    commit and discard (a failing ``fail`` rule or row bound leaves the target as it was)."""

    COMMIT_THEN_CHECK = "commit-then-check"
    """Rules on a target that cannot stage: a ``fail`` rule without tolerance aborts the write's own job at
    the first failing row; what needs the counts (tolerances, row bounds) is decided after the commit."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def of(cls, *, rules: bool, stages: bool) -> WriteFlow:
        """The flow of a write with data-quality ``rules`` (or none) by a writer that ``stages`` on the run's
        session (``writer.can_stage(spark)``)."""
        if not rules:
            return cls.STAGED if stages else cls.DIRECT
        return cls.CHECK_THEN_COMMIT if stages else cls.COMMIT_THEN_CHECK

    @property
    def checks_before_commit(self) -> bool:
        """Whether the rules' counts are known before anything is committed."""
        return self is WriteFlow.CHECK_THEN_COMMIT

    @property
    def has_rules(self) -> bool:
        return self in (WriteFlow.CHECK_THEN_COMMIT, WriteFlow.COMMIT_THEN_CHECK)
