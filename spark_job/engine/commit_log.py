"""The commit log of a run key: which sequences committed their target in an earlier try.

One small JSON document per run key, next to the metrics (or in ``--state-dir``), rewritten after
each commit. A retry with the same run key reuses the sequences recorded there whose query and
target are unchanged; a new run key (a cleared Airflow task) has no log and runs everything.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from spark_job.engine.metrics import write_metrics

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from spark_job.config.validation import SequenceSpec

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
