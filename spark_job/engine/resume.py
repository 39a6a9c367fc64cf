"""A try of a run key (``ResumedRun``): which sequences an earlier try committed are reused, how their
readers see what was committed, and the record of each commit of this try.

A committed sequence is reused when, all at once:

- its fingerprint (query, rules, target, sources, upstream sequences, result-changing settings;
  ``spark_job.engine.fingerprints``) is the one recorded with the commit;
- its target is still what the commit left (``spark_job.engine.target_state``);
- every sequence it reads is reused too (a sequence that runs again may produce other rows);
- a sequence of this try that reads it can see exactly what was committed: read back from a target
  that holds exactly the result (``can_read_back``), or from the copy kept with the commit. A sequence
  whose target is replaced whole by its write (``overwrite`` of json, csv, JDBC ...) and cannot be read
  back runs again instead, so that its readers and its target agree. A sequence whose target only
  accumulates (``append``, merges) keeps a copy of its result beside the commit log when a later
  sequence reads it; without that copy (it could not be written) its readers fail, saying so, rather
  than read a result recomputed from inputs that may have changed, or write its rows twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from spark_job.engine.capabilities import capabilities_of
from spark_job.engine.commit_log import CommitLog, StateNotWritable
from spark_job.engine.fingerprints import Fingerprints
from spark_job.engine.results import can_read_back
from spark_job.engine.target_state import changed, files_state, recordable, target_state
from spark_job.errors import short_error
from spark_job.outcomes import SequenceState

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from spark_job.config.validation import PipelineConfig, SequenceSpec
    from spark_job.engine.metrics import SequenceMetrics
    from spark_job.engine.results import Setting

logger = logging.getLogger("sparkpipe")

NOT_CARRIED = frozenset({"status", "error", "target"})
"""Metrics of the earlier try not carried over to a reused sequence (the rest is: rows, times, schema,
expectations, rows dropped and quarantined, merge counts...)."""


class ResumedRun:
    """A try of a run key.

    Args:
        log: the run key's commit log (its session reaches the targets).
        config: the pipeline.
        metrics: the run's metrics, by sequence.
        setting: a Spark setting as the run sees it.
    """

    def __init__(
        self, log: CommitLog, config: PipelineConfig, metrics: Mapping[str, SequenceMetrics], setting: Setting
    ) -> None:
        self.log = log
        self.config = config
        self.metrics = metrics
        self.setting = setting
        self.fingerprints = Fingerprints(config)
        self.by_name = {s.name: s for s in config.sequences}
        self.readers: dict[str, list[str]] = {s.name: [] for s in config.sequences}
        for seq in config.sequences:
            for dependency in seq.depends_on:
                self.readers.setdefault(dependency, []).append(seq.name)
        self.reused: dict[str, dict[str, Any]] = {}
        self.refused: str | None = None
        """Why the run key's folder cannot be written (the run was refused), if it cannot."""

    @property
    def spark(self) -> SparkSession | None:
        return self.log.spark

    # -- deciding --------------------------------------------------------------------------------
    def load(self) -> None:
        """Check the log's folder can be written, read the log, decide what is reused and mark it so."""
        try:
            self.log.probe()
        except StateNotWritable as exc:
            self.refused = str(exc)
            raise
        self.log.load()
        candidates = self.committed_and_unchanged()
        self.reused = self.settled(candidates)
        self.mark()
        if self.reused:
            names = ", ".join(self.reused)
            logger.info("sparkpipe: committed by an earlier try of run %s, not run again: %s", self.log.run_key, names)

    def committed_and_unchanged(self) -> dict[str, dict[str, Any]]:
        """The sequences with a record whose fingerprint matches and whose target is as committed."""
        found: dict[str, dict[str, Any]] = {}
        for seq in self.config.sequences:
            entry = self.log.entry(seq.name)
            if entry is None:
                continue
            if entry.get("fingerprint") != self.fingerprints.of(seq):
                logger.info("sparkpipe: sequence %s changed since an earlier try committed it: it runs again", seq.name)
                continue
            try:
                now = target_state(self.spark, seq)
            except Exception as exc:  # not knowing is not reusing, nor writing again (an append twice)
                error = short_error(exc, self.config.mask)
                self.fail(seq.name, f"could not check what an earlier try committed to its target: {error}; retry")
                continue
            why = changed(entry.get("target_state"), now, seq.writer.plan().mode == "append")
            if why is not None:
                logger.warning("sparkpipe: sequence %s runs again: %s since an earlier try committed it", seq.name, why)
                continue
            if not isinstance(entry.get("metrics"), dict):
                continue
            found[seq.name] = entry
        return found

    def settled(self, candidates: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """``candidates`` without those that read a sequence running again, and without a replaceable
        sequence (``overwrite``) that a sequence running again reads but cannot read back (to a fixpoint)."""
        reused = dict(candidates)
        while True:
            drop: dict[str, str] = {}
            for name in reused:
                seq = self.by_name[name]
                upstream = next((d for d in seq.depends_on if d not in reused), None)
                if upstream is not None:
                    drop[name] = f"it reads {upstream}, which runs again"
                    continue
                runs = [r for r in self.readers.get(name, ()) if r not in reused and r not in self.failed]
                if runs and seq.writer.mode == "overwrite" and not self.readable(seq, reused[name]):
                    drop[name] = f"{runs[0]} runs again and reads it, and its target cannot be read back as written"
            if not drop:
                break
            for name, why in drop.items():
                logger.info("sparkpipe: sequence %s runs again: %s", name, why)
                del reused[name]
        for name, entry in reused.items():
            if self.readable(self.by_name[name], entry):
                continue
            for reader in self.readers.get(name, ()):
                if reader not in reused and reader not in self.failed:
                    self.fail(
                        reader,
                        f"it reads {name}, which an earlier try of this run key committed to a target that only "
                        "accumulates, without a readable copy of its result: run the task anew (a new run key, "
                        "e.g. clear it) to run every sequence",
                    )
        return reused

    @property
    def failed(self) -> set[str]:
        return {n for n, m in self.metrics.items() if m.status is SequenceState.FAILED}

    def fail(self, name: str, error: str) -> None:
        figures = self.metrics[name]
        figures.status, figures.error, figures.duration_s = SequenceState.FAILED, error, 0.0
        logger.error("sparkpipe: sequence %s failed: %s", name, error)

    def readable(self, seq: SequenceSpec, entry: Mapping[str, Any]) -> bool:
        """Whether what ``seq`` committed can be read as it was: from its target, or from its copy."""
        if can_read_back(seq, self.setting):
            return True
        result = entry.get("result")
        if not isinstance(result, dict) or not result.get("uri"):
            return False
        try:
            now = files_state(self.spark, str(result["uri"]), False)
        except Exception:
            return False
        return not now.get("missing") and now.get("digest") == result.get("state", {}).get("digest")

    def mark(self) -> None:
        """Mark ``reused`` the settled sequences, with the figures their commit recorded."""
        for name, entry in self.reused.items():
            figures = self.metrics[name]
            for key, value in entry["metrics"].items():
                if key not in NOT_CARRIED and hasattr(figures, key) and not key.startswith("_"):
                    setattr(figures, key, value)
            figures.status, figures.error = SequenceState.REUSED, None

    # -- views -----------------------------------------------------------------------------------
    def register_views(self, spark: SparkSession, setting: Setting) -> None:
        """Views of the reused sequences that a sequence of this try reads, in graph order, from what
        was committed (never from their query: its inputs may have changed)."""
        for seq in self.config.sequences:
            entry = self.reused.get(seq.name)
            if entry is None or all(r in self.reused for r in self.readers.get(seq.name, ())):
                continue
            try:
                self.committed(spark, seq, entry).createOrReplaceTempView(seq.name)
            except Exception as exc:  # its readers then fail on the missing view, each with its own error
                error = short_error(exc, self.config.mask)
                logger.error("sparkpipe: sequence %s: cannot read its committed result: %s", seq.name, error)

    def committed(self, spark: SparkSession, seq: SequenceSpec, entry: Mapping[str, Any]) -> DataFrame:
        result = entry.get("result")
        if isinstance(result, dict) and result.get("uri"):
            df = spark.read.parquet(str(result["uri"]))
        else:
            plan = seq.writer.plan()
            if plan.table is not None and plan.method in ("saveAsTable", "insertInto"):
                df = spark.read.table(plan.table)
            else:
                df = spark.read.format(str(plan.format)).load(str(plan.path))
        schema = entry["metrics"].get("schema")
        if not isinstance(schema, list):
            return df
        F = capabilities_of(spark).functions
        present = {f.name: f.dataType.simpleString() for f in df.schema.fields}
        # The committed columns in their order; a partition column read back with another type is cast.
        columns = [F.col(f"`{c['name']}`") for c in schema]
        return df.select(
            *[col if present.get(c["name"]) == c["type"] else col.cast(c["type"]) for col, c in zip(columns, schema)]
        )

    # -- recording -------------------------------------------------------------------------------
    def record(self, seq: SequenceSpec) -> None:
        """Note that ``seq`` committed: its fingerprint, its target's state, a copy of its result when a
        later sequence reads it and its target only accumulates, and its metrics. A record that cannot be
        written is an error line: the data is committed, and only a retry would write it again."""
        spark = self.spark
        try:
            result = None
            if spark is not None and self.needs_copy(seq):
                uri = f"{self.log.folder}/results/{seq.name}-{uuid.uuid4().hex[:12]}"
                spark.table(seq.name).write.mode("error").parquet(uri)
                result = {"uri": uri, "state": files_state(spark, uri, False)}
            self.log.record(
                seq.name,
                {
                    "fingerprint": self.fingerprints.of(seq),
                    "target_state": recordable(target_state(spark, seq)),
                    "result": result,
                    "metrics": self.metrics[seq.name].to_dict(),
                },
            )
        except Exception as exc:
            error = short_error(exc, self.config.mask)
            logger.error(
                "sparkpipe: sequence %s committed, but could not be recorded in the commit log %s (%s): a retry "
                "of this run key writes it again",
                seq.name,
                self.log.folder,
                error,
            )

    def needs_copy(self, seq: SequenceSpec) -> bool:
        """A later sequence reads it, its target cannot be read back as written, and writing it again on
        a retry would not replace what was written (append, merge)."""
        return (
            bool(self.readers.get(seq.name)) and seq.writer.mode != "overwrite" and not can_read_back(seq, self.setting)
        )
