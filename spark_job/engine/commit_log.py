"""The commit log of a run key: which sequences committed their target in an earlier try.

One small JSON document per run key, next to the metrics (or in ``--state-dir``), rewritten after
each commit. A retry with the same run key reuses the sequences recorded there whose query and
target are unchanged; a new run key (a cleared Airflow task) has no log and runs everything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from spark_job.engine.metrics import write_metrics
from spark_job.errors import short_error
from spark_job.outcomes import SequenceState

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from spark_job.config.validation import PipelineConfig, SequenceSpec
    from spark_job.engine.metrics import SequenceMetrics
    from spark_job.engine.results import Setting

logger = logging.getLogger("sparkpipe")

RUN_KEY_ENV = "SPARKPIPE_RUN_KEY"
"""The environment variable naming the run (the writers' leases carry it)."""


def sequence_fingerprint(seq: SequenceSpec) -> str:
    """What a sequence writes, as a digest: a changed query or target is not the committed sequence."""
    text = json.dumps({"query": seq.query, "target": seq.target}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def log_uri(folder: str, run_key: str) -> str:
    digest = hashlib.sha256(run_key.encode("utf-8")).hexdigest()[:20]
    return f"{folder.rstrip('/')}/sparkpipe-commits-{digest}.json"


def read_text(uri: str, spark: SparkSession | None) -> str | None:
    """The file's text, or None when it does not exist."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = parsed.path if parsed.scheme == "file" else uri
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    if spark is None:
        raise OSError(f"cannot read the commit log {uri} without a Spark session")
    try:
        row = spark.read.text(uri, wholetext=True).first()
    except Exception as exc:  # Spark says a missing path with an error class, not an exception type
        if "PATH_NOT_FOUND" in str(exc) or "does not exist" in str(exc):
            return None
        raise
    return None if row is None else str(row[0])


class CommitLog:
    """Entries ``sequence -> {fingerprint, metrics}`` of one run key at ``uri``.

    Args:
        uri: where the log is kept (any URI the metrics can be written to).
        run_key: the run this log belongs to.
        spark: the session used to reach non-local URIs.
    """

    def __init__(self, uri: str, run_key: str, spark: SparkSession | None) -> None:
        self.uri = uri
        self.run_key = run_key
        self.spark = spark
        self.entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @classmethod
    def of_run(
        cls, run_key: str, state_dir: str | None, metrics_out: str | None, spark: SparkSession | None
    ) -> CommitLog:
        """The log of ``run_key`` in ``state_dir``, else in the folder of the metrics ``metrics_out``."""
        folder = state_dir or (metrics_out or "").rsplit("/", 1)[0] or "."
        return cls(log_uri(folder, run_key), run_key, spark)

    def load(self) -> None:
        text = read_text(self.uri, self.spark)
        if not text:
            return
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"the commit log {self.uri} is not JSON ({exc}); delete it to run everything") from None
        if isinstance(data, dict) and data.get("run_key") == self.run_key:
            self.entries = {k: v for k, v in (data.get("sequences") or {}).items() if isinstance(v, dict)}

    def committed(self, seq: SequenceSpec) -> dict[str, Any] | None:
        """The earlier try's metrics of ``seq`` if it committed and is unchanged since."""
        entry = self.entries.get(seq.name)
        if entry and entry.get("fingerprint") == sequence_fingerprint(seq):
            metrics = entry.get("metrics")
            return metrics if isinstance(metrics, dict) else None
        return None

    def mark_reused(self, sequences: Iterable[SequenceSpec], metrics: Mapping[str, SequenceMetrics]) -> list[str]:
        """Mark ``reused`` in ``metrics`` the sequences an earlier try committed, with that try's figures;
        return their names."""
        reused = []
        for seq in sequences:
            earlier = self.committed(seq)
            if earlier is None:
                continue
            figures = metrics[seq.name]
            figures.status, figures.error = SequenceState.REUSED, None
            figures.rows_written = earlier.get("rows_written")
            figures.duration_s = earlier.get("duration_s")
            figures.started_at, figures.ended_at = earlier.get("started_at"), earlier.get("ended_at")
            figures.schema = earlier.get("schema")
            reused.append(seq.name)
        return reused

    def record(self, seq: SequenceSpec, metrics: dict[str, Any]) -> None:
        """Note that ``seq`` committed, and rewrite the log."""
        with self._lock:
            self.entries[seq.name] = {"fingerprint": sequence_fingerprint(seq), "metrics": metrics}
            text = json.dumps({"run_key": self.run_key, "sequences": self.entries}, separators=(",", ":"))
            parsed = urlparse(self.uri)
            if parsed.scheme not in ("", "file"):
                write_metrics(self.uri, text, self.spark)
                return
            # Locally, a rename: a driver killed while writing leaves the previous log whole.
            path = parsed.path if parsed.scheme == "file" else self.uri
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(f"{path}.tmp", "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(f"{path}.tmp", path)


class ResumedRun:
    """A try of a run key: the sequences an earlier try committed are reused (marked so in the metrics,
    their views registered from what was committed), and each commit of this try is recorded.

    Args:
        log: the run key's commit log.
        config: the pipeline.
        metrics: the run's metrics, by sequence.
    """

    def __init__(self, log: CommitLog, config: PipelineConfig, metrics: Mapping[str, SequenceMetrics]) -> None:
        self.log = log
        self.config = config
        self.metrics = metrics

    def load(self) -> None:
        """Read the log and mark ``reused`` what an earlier try committed (same query and target)."""
        self.log.load()
        reused = self.log.mark_reused(self.config.sequences, self.metrics)
        if reused:
            names = ", ".join(reused)
            logger.info("sparkpipe: committed by an earlier try of run %s, not run again: %s", self.log.run_key, names)

    def register_views(self, spark: SparkSession, setting: Setting) -> None:
        """Views for the reused sequences, in graph order (one recomputed may read another)."""
        from spark_job.engine.results import committed_result

        for seq in self.config.sequences:
            if self.metrics[seq.name].status is not SequenceState.REUSED:
                continue
            try:
                committed_result(spark, seq, setting).createOrReplaceTempView(seq.name)
            except Exception as exc:  # its readers then fail on the missing view, each with its own error
                error = short_error(exc, self.config.mask)
                logger.error("sparkpipe: sequence %s: cannot read its committed result: %s", seq.name, error)

    def record(self, seq: SequenceSpec) -> None:
        """Note that ``seq`` committed (a log that cannot be written is a warning: the data is committed)."""
        try:
            self.log.record(seq, self.metrics[seq.name].to_dict())
        except Exception as exc:  # only a retry would write it again
            error = short_error(exc, self.config.mask)
            logger.warning("sparkpipe: could not record %s in the commit log %s: %s", seq.name, self.log.uri, error)
