"""One run of one sequence (``SequenceRun``): its query, the observation riding on its write, its
data-quality rules and the write itself, in the ``WriteFlow`` chosen once when the run is made."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from spark_job.engine.capabilities import NotComputedOnce, capabilities_of
from spark_job.engine.flows import WriteFlow
from spark_job.engine.incremental import IncrementalPart
from spark_job.engine.results import ResultSharing, Setting, committed_result
from spark_job.errors import short_error
from spark_job.outcomes import SequenceState
from spark_job.quality import ExpectationFailed, SequenceRules

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from spark_job.config.validation import SequenceSpec
    from spark_job.engine.metrics import SequenceMetrics
    from spark_job.io.base import StagedWrite

log = logging.getLogger("sparkpipe")

DISCARDED = "the staged write was discarded: the target keeps its old data"


class SequenceCancelled(Exception):
    """A sequence's jobs were cancelled; its write was discarded."""


def output_schema(df: DataFrame) -> list[dict[str, Any]]:
    """The columns a sequence writes, as its metrics report them (Spark's analysis only: no job)."""
    return [{"name": f.name, "type": f.dataType.simpleString(), "nullable": f.nullable} for f in df.schema.fields]


class SequenceRun:
    """One sequence run on its worker thread, from its query to its target's commit.

    The run owns the query's result, the ``observe()`` that counts the rows written and the rules'
    failures in the write's own job, the rules' decision and the write, whose steps follow ``flow``.

    Args:
        spark: the run's session.
        seq: the sequence.
        metrics: the sequence's metrics, where the output schema and the rules' counts are recorded.
        run_id: the pipeline run's id (the observation's name carries it).
        tag: the job group and tag of the sequence's jobs (the observed counts are read for it).
        sharing: how the sequences reading it get its result (None: no sequence reads it).
        setting: a Spark setting as the run sees it (whether a target is read back).
        cancelled: why the sequence was cancelled meanwhile (None while it is not): nothing is committed then.
        mask: hides secrets in what the run logs and reports.
    """

    def __init__(
        self,
        spark: SparkSession,
        seq: SequenceSpec,
        metrics: SequenceMetrics,
        *,
        run_id: str,
        tag: str,
        sharing: ResultSharing | None,
        setting: Setting,
        cancelled: Callable[[], str | None],
        mask: Callable[[str], str],
    ) -> None:
        self.spark = spark
        self.seq = seq
        self.metrics = metrics
        self.tag = tag
        self.sharing = sharing
        self.setting = setting
        self.cancelled = cancelled
        self.mask = mask
        self.session = capabilities_of(spark)
        self.rules = SequenceRules(seq, self.session.functions)
        self.incremental = IncrementalPart.of(spark, seq, self.session, f"sparkpipe_{run_id}_{seq.name}_incremental")
        self.writer = seq.writer
        self.writer.sequence = seq.name
        self.flow = WriteFlow.of(rules=self.rules.active, stages=self.writer.can_stage(spark))
        self.observation = self.session.new_observation(f"sparkpipe_{run_id}_{seq.name}")
        self.result: DataFrame  # the query's result, once run() ran it

    @property
    def keep(self) -> bool:
        return self.sharing is ResultSharing.PERSIST

    def execute(self, jobs: AbstractContextManager[Any]) -> None:
        """Run in ``jobs`` (the sequence's job group, tag and pool); finish the metrics: succeeded (with the
        rows written), cancelled or failed (with the error)."""
        try:
            with jobs:
                rows = self.run()
        except Exception as exc:
            why = self.cancelled()
            if why is not None:
                self.metrics.finish(SequenceState.CANCELLED, error=f"cancelled: {why}")
            else:
                log.debug("sparkpipe: sequence %s failed", self.seq.name, exc_info=True)
                self.metrics.finish(SequenceState.FAILED, error=short_error(exc, self.mask))
            return
        self.metrics.finish(SequenceState.SUCCEEDED, rows=rows)

    def run(self) -> int | None:
        """Run the query, register its result as view ``seq.name`` and write it; return the rows written.

        ``result`` is the query's result (persisted when later sequences read it from memory)."""
        self.refuse_rules_without_counts()
        self.warn_of_secrets_in_the_event_log()
        query = self.seq.query
        if self.incremental is not None:  # its source's new rows or files only
            if self.incremental.reads_files:
                return self.incremental.run_files(self.metrics, self.cancelled)
            query, self.writer = self.incremental.prepare()
            self.writer.sequence = self.seq.name
            self.flow = WriteFlow.of(rules=self.rules.active, stages=self.writer.can_stage(self.spark))
        result = self.spark.sql(query)
        self.rules.check_types(result)  # Spark's analysis only: no job
        # One column per rule, each computed once per row; with a quarantine the rows themselves are
        # computed once, by the target's write, and the quarantine's write reads those same rows.
        result = self.rules.evaluated(result)
        if self.rules.quarantines:
            try:
                result = self.session.computed_once(result)
            except NotComputedOnce as exc:
                raise ExpectationFailed(f"sequence {self.seq.name}: {exc}") from None
        elif self.keep:
            result = result.persist()
        self.result = result
        try:
            kept = self.rules.kept(result)
            self.metrics.schema = output_schema(kept)
            kept.createOrReplaceTempView(self.seq.name)
            self.write()
        except BaseException as exc:
            if self.keep or self.rules.quarantines:
                result.unpersist()
            if self.rules.active and self.metrics.expectations is None:
                self.record_aborted_rules(exc)
            rule = self.rules.aborting_rule(exc)
            if rule is not None:  # Spark's error names the rule, not its condition: say it as the driver does
                raise self.rules.aborted(rule, self.abort_reason(), self.mask) from None
            raise
        rows = self.observed_rows()
        if self.incremental is not None:
            self.metrics.incremental = self.incremental.committed(self.tag)
        if self.sharing is ResultSharing.READ_BACK:
            committed_result(self.spark, self.seq, self.setting).createOrReplaceTempView(self.seq.name)
        return rows

    def warn_of_secrets_in_the_event_log(self) -> None:
        """Spark writes each query's plan graph to its event log node by node, through no redaction: a
        secret value in the sequence's SQL (query or rule condition) gets there; say so, without it."""
        texts = [self.seq.query, *(r.condition for r in self.rules.rules)]
        if not any(self.mask(t) != t for t in texts):
            return
        if str(self.setting("spark.eventLog.enabled") or "").strip().lower() != "true":
            return
        log.warning(
            "sparkpipe: sequence %s: its SQL holds a secret value and Spark's event log is on: Spark writes "
            "the plan of each query there without redaction (sparkPlanInfo), so the value is in the event "
            "log; pass secrets in the settings of sources and targets instead of in SQL text",
            self.seq.name,
        )

    def refuse_rules_without_counts(self) -> None:
        """Rules decided on counts cannot run where the counts never come (Spark Connect 3.5)."""
        if not self.rules.active or self.session.counts_writes:
            return
        uncounted = self.rules.needing_counts()
        if uncounted:
            raise ExpectationFailed(
                f"sequence {self.seq.name}: {', '.join(uncounted)} need the counts of the write's observe(), "
                f"which a {self.session.describe()} does not receive (Spark Connect 3.5 drops them): "
                "run on a classic session (spark-submit) or on Spark Connect 4.x, or remove them"
            )

    # -- the write, by flow ----------------------------------------------------------------------
    def write(self) -> None:
        F, result = self.session.functions, self.result
        if not self.flow.has_rules:  # DIRECT, STAGED
            counted = result.observe(self.observation, F.count(F.lit(1)).alias("rows"))
            staged = self.begin(counted)
            staged.commit()
            self.metrics.record_changes(staged.changes)
            return
        # One observe() counts the rows written and every rule's failures, in the write's own job.
        observed = result.observe(self.observation, *self.rules.observed_columns())
        if self.aborts_in_job:  # before the drop filter: a row failing a drop rule too still aborts
            observed = self.rules.abort_on_failure(observed, self.abort_reason())
        staged = self.begin(self.rules.kept(observed))
        if self.flow is WriteFlow.CHECK_THEN_COMMIT:
            try:
                quarantine = self.check()
            except BaseException:
                staged.discard()  # the target keeps its old data
                raise
            try:  # both are staged: the target commits first; if it cannot, the quarantine is discarded
                staged.commit()
            except BaseException:
                if quarantine is not None:
                    quarantine.discard()
                raise
            self.metrics.record_changes(staged.changes)
        else:  # COMMIT_THEN_CHECK
            staged.commit()
            self.metrics.record_changes(staged.changes)
            quarantine = self.check()
        if quarantine is not None:
            self.commit_quarantine(quarantine)

    @property
    def aborts_in_job(self) -> bool:
        """Whether a ``fail`` rule tolerating no failure aborts the write's own job (see ``abort_reason``)."""
        return self.flow is WriteFlow.COMMIT_THEN_CHECK or (
            not self.session.counts_writes or self.session.counts_may_be_lost
        )

    def abort_reason(self) -> str:
        if self.flow is WriteFlow.COMMIT_THEN_CHECK:  # a fail rule must stop the job: nothing else stands between
            return "the target cannot stage its write"
        # The counts to decide on between write and commit may not come: the job decides.
        return f"a {self.session.describe()} may receive no counts"

    def commit_quarantine(self, quarantine: StagedWrite) -> None:
        """Commit the quarantine after its target: its rows are the rejects of a committed write only."""
        try:
            quarantine.commit()
        except Exception as exc:
            raise RuntimeError(
                f"sequence {self.seq.name}: the target was committed but its quarantine could not be "
                f"(its rejected rows were not written): {short_error(exc, self.mask)}"
            ) from exc

    def begin(self, df: DataFrame) -> StagedWrite:
        """Begin the target's write; a sequence cancelled meanwhile discards it."""
        staged = self.writer.begin_write(df)
        if self.cancelled() is not None:
            staged.discard()
            raise SequenceCancelled(f"{self.seq.name} was cancelled before its write committed")
        return staged

    # -- the rules -------------------------------------------------------------------------------
    def check(self) -> StagedWrite | None:
        """Record each rule's counts; raise ``ExpectationFailed`` for a failed ``fail`` rule or row bound;
        begin the quarantine's write (its rows staged) and return it, to be committed with the target."""
        seq, rules, metrics = self.seq, self.rules, self.metrics
        counted = self.observed_values()
        uncounted = rules.needing_counts() if counted is None else []
        if uncounted:  # the write ran, but its counts did not come (a Spark Connect 4.0 server)
            raise ExpectationFailed(
                f"sequence {seq.name}: the session sent no counts for the write, so {', '.join(uncounted)} "
                "could not be checked ("
                + (
                    DISCARDED
                    if self.flow.checks_before_commit
                    else "the target cannot stage its write: the rows were written"
                )
                + "); run it again, or on Spark 4.1 or newer"
            )
        observed = counted or {}
        ran = bool(observed)
        outcomes = rules.outcomes(observed)
        metrics.expectations = {
            o.rule.name: {**o.to_dict(), **({} if ran else {"failed_rows": None, "passed": True})} for o in outcomes
        }
        checked, rows = int(observed.get("rows_checked") or 0), int(observed.get("rows") or 0)
        quarantined = int(observed.get("rows_quarantined") or 0)
        if counted is not None:  # else unknown (Spark Connect 3.5)
            metrics.rows_quarantined = quarantined
            metrics.rows_dropped = checked - rows - quarantined
        failures = rules.failures(outcomes, observed) if ran else []
        for outcome in outcomes:
            if not outcome.passed or not outcome.failed_rows:
                continue
            rule = outcome.rule
            log.warning(
                "sparkpipe: sequence %s: expectation %s (%s): %s of %s rows failed it (%s)",
                seq.name,
                rule.name,
                self.mask(rule.condition),
                f"{outcome.failed_rows:,}",
                f"{checked:,}",
                {"warn": "written", "drop": "dropped", "quarantine": "quarantined"}.get(rule.on_fail, "tolerated"),
            )
        if failures:
            after = (
                DISCARDED
                if self.flow.checks_before_commit
                else "the target cannot stage its write: the rows were written (see the docs)"
            )
            raise ExpectationFailed("; ".join(failures) + f" ({after})")
        writer = seq.quarantine_writer
        if writer is None:
            return None
        return writer.begin_write(rules.with_failed_rules(self.result))  # the rows the target's write computed

    def record_aborted_rules(self, exc: BaseException) -> None:
        """The job failed before any count was reported (a ``fail`` rule aborted it, or another error)."""
        text = str(exc)
        self.metrics.expectations = {
            r.name: {
                "failed_rows": None,
                "action": r.on_fail,
                "passed": not (r.on_fail == "fail" and f"expectation {r.name} (" in text),
            }
            for r in self.rules.rules
        }

    def observed_values(self) -> dict[str, Any] | None:
        """What the write's observe() counted: empty when the write executed nothing, None when the
        session does not hand the counts to the driver (Spark Connect 3.5)."""
        return self.session.observed(self.observation, self.tag)

    def observed_rows(self) -> int | None:
        """The rows the write counted: 0 when the write executed nothing (mode ignore, existing target),
        None when the session does not hand the counts to the driver."""
        observed = self.observed_values()
        return None if observed is None else int(observed.get("rows") or 0)
