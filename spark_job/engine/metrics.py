"""The run's metrics document (the provider's XCom contract) and where it is written."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from spark_job.engine.startup import startup_seconds
from spark_job.errors import short_error
from spark_job.markers import METRICS_MARKER, marker_line
from spark_job.outcomes import SequenceState, sequence_outcome

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("sparkpipe")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class SequenceMetrics:
    """What one sequence did; ``status`` is a :class:`~spark_job.outcomes.SequenceState`, its text in ``to_dict``.
    ``outcome()`` says it in words (``spark_job.outcomes.sequence_outcome``)."""

    target: dict[str, Any]
    status: SequenceState = SequenceState.PENDING
    rows_written: int | None = None
    duration_s: float | None = None
    started_at: str | None = None
    ended_at: str | None = None
    error: str | None = None
    expectations: dict[str, dict[str, Any]] | None = None
    rows_dropped: int | None = None
    rows_quarantined: int | None = None
    schema: list[dict[str, Any]] | None = None
    """The columns written (name, Spark SQL type, nullable), once the query was analysed."""
    incremental: dict[str, Any] | None = None
    """An incremental sequence's watermark before and after and the rows its filter let through, or its
    new-files batches."""
    rows_inserted: int | None = None
    rows_updated: int | None = None
    rows_deleted: int | None = None
    """What a write updating its target in place (``mode: merge``) changed there, from the write's own
    counts (the database's update counts, the table format's commit metrics); None for other writes."""
    _t0: float = field(default=0.0, repr=False)

    def start(self) -> None:
        self.started_at, self._t0 = now_iso(), time.monotonic()

    def finish(self, status: SequenceState, rows: int | None = None, error: str | None = None) -> None:
        self.status, self.rows_written, self.error = status, rows, error
        self.ended_at = now_iso()
        self.duration_s = round(time.monotonic() - self._t0, 3)

    def record_changes(self, changes: Mapping[str, int] | None) -> None:
        """Keep the ``rows_inserted``, ``rows_updated`` and ``rows_deleted`` a committed write returned."""
        for key in ("rows_inserted", "rows_updated", "rows_deleted"):
            if changes and changes.get(key) is not None:
                setattr(self, key, int(changes[key]))

    def outcome(self) -> str:
        """What happened, in words: ``succeeded, 1,234 rows in 2.1 s``, ``failed after 0.4 s: ...``."""
        return sequence_outcome(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": str(self.status),
            "rows_written": self.rows_written,
            "duration_s": self.duration_s,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "target": self.target,
            "error": self.error,
        }
        for key in ("rows_inserted", "rows_updated", "rows_deleted"):
            if getattr(self, key) is not None:  # only for a write that updates in place
                out[key] = getattr(self, key)
        if self.schema is not None:
            out["schema"] = self.schema
        if self.incremental is not None:
            out["incremental"] = self.incremental
        if self.expectations is not None:  # only for a sequence with data-quality rules
            out["expectations"] = self.expectations
            out["rows_dropped"] = self.rows_dropped
            out["rows_quarantined"] = self.rows_quarantined
        return out


@dataclass
class RunMetrics:
    """The whole run, serialised by ``to_dict`` into the documented metrics JSON."""

    app_name: str
    sequences: dict[str, SequenceMetrics]
    status: str = "running"
    started_at: str = field(default_factory=now_iso)
    duration_s: float | None = None
    spark_app_id: str | None = None
    runtime: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    max_parallel: int | None = None
    max_concurrency: int = 0
    _t0: float = field(default_factory=time.monotonic, repr=False)

    def finish(self, error: str | None = None) -> None:
        self.error = error
        failed = error is not None or any(SequenceState(s.status).fails_the_run for s in self.sequences.values())
        self.status = "failed" if failed else "succeeded"
        self.duration_s = round(time.monotonic() - self._t0, 3)

    def skip_pending(self, reason: str) -> None:
        """Mark ``skipped`` (``reason`` as the error) every sequence that has not run."""
        for name, seq in self.sequences.items():
            if not seq.status.finished:
                seq.status, seq.error = SequenceState.SKIPPED, reason
                log.warning("sparkpipe: sequence %s skipped: %s", name, reason.removeprefix("not run: "))

    def record_usage(self, spark: SparkSession) -> None:
        """``runtime.usage``: what the run's tasks consumed (best effort, never fails the run)."""
        try:
            usage = executor_usage(spark)
        except Exception as exc:
            log.debug("sparkpipe: no usage figures: %s", exc)
            return
        if usage is not None:
            self.runtime["usage"] = usage

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "app_name": self.app_name,
            "status": self.status,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            # from the process's start to the first sequence's: JVM, session, sources
            "startup_s": startup_seconds(seq.started_at for seq in self.sequences.values()),
            "spark_app_id": self.spark_app_id,
            "runtime": self.runtime,
            "max_parallel": self.max_parallel,
            "max_concurrency": self.max_concurrency,
            "sequences": {name: seq.to_dict() for name, seq in self.sequences.items()},
        }
        if self.error is not None:
            out["error"] = self.error
        return out


def runtime_from_env() -> dict[str, Any]:
    """What the submitting runtime told the driver about itself (``SPARKPIPE_RUNTIME`` JSON)."""
    raw = os.environ.get("SPARKPIPE_RUNTIME")
    if not raw:
        return {"kind": "spark-submit"}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"kind": raw}
    return value if isinstance(value, dict) else {"kind": str(value)}


def metrics_not_written(document: dict[str, Any], uri: str, error: str) -> None:
    """The metrics could not be written to ``uri``: the run failed (its caller reads them), said in
    ``document`` (still printed on the marker line) and on stderr."""
    why = f"the metrics could not be written to {uri}: {error}"
    log.error("sparkpipe: %s", why)
    document["status"] = "failed"
    document["error"] = f"{document['error']}; {why}" if document.get("error") else why


def publish_metrics(
    document: dict[str, Any], uri: str | None, spark: SparkSession | None, mask: Callable[[str], str]
) -> None:
    """Write the run's metrics ``document`` to ``uri`` (a run whose metrics cannot be written failed: the
    document says so) and print it on the driver's output as a marker line."""
    if uri:
        try:
            write_metrics(uri, json.dumps(document, separators=(",", ":"), default=str), spark)
        except Exception as exc:  # the metrics are the run's result: a run without them failed
            metrics_not_written(document, uri, short_error(exc, mask))
    print(marker_line(METRICS_MARKER, document), flush=True)


def write_metrics(uri: str, text: str, spark: SparkSession | None) -> None:
    """Write ``text`` to ``uri``.

    Classic session: through Hadoop's FileSystem (any scheme the cluster has). Spark Connect session:
    a local path is written by this (client) process, any other URI is uploaded to the server's
    filesystem with ``copyFromLocalToFs``. Without a session (it failed to start): local paths only.
    """
    from spark_job.engine.capabilities import capabilities_of

    parsed = urlparse(uri)
    local = parsed.scheme in ("", "file")
    session = capabilities_of(spark) if spark is not None else None
    if session is not None and session.connect and not local:
        import tempfile

        assert spark is not None
        with tempfile.TemporaryDirectory(prefix="sparkpipe-metrics-") as folder:
            path = os.path.join(folder, "metrics.json")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
            spark.copyFromLocalToFs(path, uri)
        return
    jvm = session.jvm() if session is not None else None
    if jvm is not None and session is not None:
        conf = session.hadoop_configuration()
        path = jvm.org.apache.hadoop.fs.Path(uri)
        fs = path.getFileSystem(conf)
        stream = fs.create(path, True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()
        return
    if not local:
        raise OSError(f"cannot write metrics to {uri} without a Spark session")
    target = parsed.path if parsed.scheme == "file" else uri
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    with open(target, "w", encoding="utf-8") as fh:
        fh.write(text)


def _usage_url(spark: SparkSession, path: str) -> str | None:
    """``<the application's UI>/api/v1/applications/<id>/<path>``; None on a Spark Connect session (the
    server's application is not this run's alone) or when the UI is disabled."""
    from urllib.parse import quote

    from spark_job.engine.capabilities import capabilities_of

    session = capabilities_of(spark)
    base, app_id = session.ui_url(), session.application_id()
    if session.connect or not base or not app_id:
        return None
    return f"{base.rstrip('/')}/api/v1/applications/{quote(app_id)}/{path}"


def _open_usage_url(url: str) -> Any:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the driver's own UI: no proxy
    return opener.open(url, timeout=10)


def prepare_usage(spark: SparkSession) -> threading.Thread | None:
    """Start the UI's monitoring API in the background while the sequences run: its first request loads
    and starts Spark's REST layer (about a second), which :func:`executor_usage` would otherwise wait for
    after the last sequence. None (no thread) where there is no usage to ask for; a failure here only
    leaves that work to the end."""
    url = _usage_url(spark, "stages")
    if url is None:
        return None

    def touch() -> None:
        try:
            with _open_usage_url(url) as response:
                response.read()
        except (OSError, ValueError):
            pass

    thread = threading.Thread(target=touch, name="sparkpipe-usage-api", daemon=True)
    thread.start()
    return thread


def executor_usage(spark: SparkSession) -> dict[str, Any] | None:
    """What the run's tasks consumed, from the application's own status store (the monitoring REST
    API of its Spark UI, which Spark's status listener fills): executor core-seconds (task run time
    times ``spark.task.cpus``), CPU seconds and task count. No Spark job runs for it.

    None on a Spark Connect session (the server's application is not this run's alone) or when the
    UI is disabled (``spark.ui.enabled=false``)."""
    from spark_job.engine.capabilities import capabilities_of

    url = _usage_url(spark, "stages")
    if url is None:
        return None
    session = capabilities_of(spark)
    stages: list[dict[str, Any]] = []
    for _ in range(10):  # the listener bus may still be recording the last stage
        try:
            with _open_usage_url(url) as response:
                stages = json.load(response)
        except (OSError, ValueError):
            return None
        if not any(s.get("status") == "ACTIVE" for s in stages):
            break
        time.sleep(0.2)
    run_ms = sum(int(s.get("executorRunTime") or 0) for s in stages)
    cpu_ns = sum(int(s.get("executorCpuTime") or 0) for s in stages)
    tasks = sum(int(s.get("numCompleteTasks") or 0) + int(s.get("numFailedTasks") or 0) for s in stages)
    cpus_per_task = int(session.spark_conf("spark.task.cpus", "1") or 1)
    return {
        "executor_core_seconds": round(run_ms * cpus_per_task / 1000, 3),
        "executor_cpu_seconds": round(cpu_ns / 1e9, 3),
        "tasks": tasks,
        "source": "spark_status_store",
    }
