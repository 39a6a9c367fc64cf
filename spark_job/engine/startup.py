"""The run's start-up time for the metrics (``startup_s``): from the start of the process that runs the
driver to the start of its first sequence (JVM start, session, sources), the part a class-data archive
makes shorter."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from datetime import datetime, timezone

_IMPORTED_AT = time.time()
_started_at: float | None = None


def _proc_start(pid: str) -> float | None:
    """Epoch seconds at which process ``pid`` started, from ``/proc`` (Linux); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        with open("/proc/uptime", "rb") as fh:
            uptime = float(fh.read().split()[0])
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    # fields[0] is the stat line's third field (state); starttime is the 22nd: clock ticks after boot.
    return time.time() - (uptime - int(fields[19]) / ticks)


def _started_by_spark_submit() -> bool:
    """Whether this Python was started by spark-submit's JVM (client mode, a cluster's driver container)."""
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return False
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as fh:
            return b"org.apache.spark.deploy.SparkSubmit" in fh.read()
    except OSError:
        return False


def process_started_at() -> float:
    """When the driver's process started (epoch seconds): the ``spark-submit`` JVM that started this
    Python, else this process; where ``/proc`` is missing, when the driver's code was first imported."""
    global _started_at
    if _started_at is None:
        parent = _proc_start(str(os.getppid())) if _started_by_spark_submit() else None
        _started_at = parent or _proc_start("self") or _IMPORTED_AT
    return _started_at


def _epoch(iso: str) -> float | None:
    try:
        return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


def startup_seconds(sequence_starts: Iterable[str | None]) -> float | None:
    """Seconds from the process's start to the first of ``sequence_starts`` (ISO times, as the metrics
    give them) of this process; None when no sequence started in it (all reused from an earlier try)."""
    began = process_started_at()
    starts = [t for t in (_epoch(s) for s in sequence_starts if s) if t is not None and t >= began - 0.01]
    return round(max(0.0, min(starts) - began), 3) if starts else None
