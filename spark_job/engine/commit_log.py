"""The commit log of a run key: which sequences committed their target in an earlier try.

A folder per run key, ``sparkpipe-commits-<sha256(key)[:20]>/`` in ``--state-dir`` (else beside the
metrics), holding one JSON file per commit, never rewritten: two drivers on one run key each add their
own records, and a load reads them all (the latest record of a sequence wins). Each record holds the
sequence's fingerprint (``spark_job.engine.fingerprints``), the state of its target right after the
commit (``spark_job.engine.target_state``), where a copy of its result was kept for its readers (when
its target cannot be read back) and its metrics. No record holds a credential.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from spark_job.engine.capabilities import capabilities_of
from spark_job.engine.target_state import is_local, local_path

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger("sparkpipe")

RUN_KEY_ENV = "SPARKPIPE_RUN_KEY"
"""The environment variable naming the run (the writers' leases carry it)."""
RECORD_SUFFIX = ".json"


class StateNotWritable(Exception):
    """The run key's state folder cannot be written: the run is refused before anything runs."""


def folder_of(uri: str) -> str:
    """The folder holding ``uri`` (``metrics.json`` is in ``.``, ``s3a://b/m.json`` in ``s3a://b``)."""
    head, sep, _ = uri.rstrip("/").rpartition("/")
    if not sep:
        return "."
    if head.endswith(":"):  # file:/m.json
        return head + "/"
    return head or "/"


def log_folder(state_dir: str | None, metrics_out: str | None, run_key: str) -> str:
    """The commit log's folder of ``run_key``: in ``state_dir``, else in the folder of ``metrics_out``."""
    folder = state_dir or folder_of(metrics_out or "")
    digest = hashlib.sha256(run_key.encode("utf-8")).hexdigest()[:20]
    return f"{folder.rstrip('/')}/sparkpipe-commits-{digest}"


def refuse_unwritable_local(folder: str) -> str | None:
    """Why the local ``folder`` cannot hold the commit log (None: a file was created and removed there)."""
    path = local_path(folder)
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".sparkpipe-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"{exc.strerror or exc} ({exc.filename or path})" if isinstance(exc, OSError) else str(exc)
    return None


class CommitLog:
    """The records ``sequence -> {fingerprint, state, result, metrics}`` of one run key in ``folder``.

    Args:
        folder: the run key's folder (any URI the session's filesystems reach).
        run_key: the run this log belongs to.
        spark: the session used to reach non-local URIs.
    """

    def __init__(self, folder: str, run_key: str, spark: SparkSession | None) -> None:
        self.folder = folder.rstrip("/")
        self.run_key = run_key
        self.spark = spark
        self.entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return self.folder

    @classmethod
    def of_run(
        cls, run_key: str, state_dir: str | None, metrics_out: str | None, spark: SparkSession | None
    ) -> CommitLog:
        """The log of ``run_key`` in ``state_dir``, else in the folder of the metrics ``metrics_out``."""
        return cls(log_folder(state_dir, metrics_out, run_key), run_key, spark)

    # -- reading ---------------------------------------------------------------------------------
    def load(self) -> None:
        """Read every record; the latest of each sequence wins."""
        latest: dict[str, tuple[float, str]] = {}
        for name, text in self.records():
            try:
                record = json.loads(text)
            except ValueError:  # a record being written by another driver, or cut by a kill
                logger.warning("sparkpipe: commit log %s: %s is not whole JSON; ignored", self.folder, name)
                continue
            if not isinstance(record, dict) or record.get("run_key") != self.run_key:
                continue
            sequence, at = record.get("sequence"), float(record.get("recorded_at") or 0)
            if isinstance(sequence, str) and (sequence not in latest or (at, name) > latest[sequence]):
                latest[sequence] = (at, name)
                self.entries[sequence] = record

    def records(self) -> list[tuple[str, str]]:
        """``(file name, text)`` of every record in the folder."""
        if is_local(self.folder):
            path = local_path(self.folder)
            if not os.path.isdir(path):
                return []
            out = []
            for name in sorted(os.listdir(path)):
                if name.endswith(RECORD_SUFFIX) and not name.startswith("."):
                    with open(os.path.join(path, name), encoding="utf-8") as fh:
                        out.append((name, fh.read()))
            return out
        if self.spark is None:
            raise OSError(f"cannot read the commit log {self.folder} without a Spark session")
        session = capabilities_of(self.spark)
        if session.reaches_hadoop:
            from spark_job.io.filesystems import HadoopFiles

            files = HadoopFiles(self.spark, self.folder)
            names = [n for n in files.list_names(self.folder) if n.endswith(RECORD_SUFFIX) and not n.startswith(".")]
            return [(n, files.read_text(f"{self.folder}/{n}") or "") for n in names]
        try:
            rows = self.spark.read.text(f"{self.folder}/*{RECORD_SUFFIX}", wholetext=True).collect()
        except Exception as exc:  # Spark says a missing path with an error class, not an exception type
            if "PATH_NOT_FOUND" in str(exc) or "does not exist" in str(exc):
                return []
            raise
        return [(str(i), str(row[0])) for i, row in enumerate(rows)]

    def entry(self, name: str) -> dict[str, Any] | None:
        return self.entries.get(name)

    # -- writing ---------------------------------------------------------------------------------
    def probe(self) -> None:
        """Create and remove a file in the folder; raise ``StateNotWritable`` saying why it failed."""
        if is_local(self.folder):
            why = refuse_unwritable_local(self.folder)
        else:
            name = f".sparkpipe-probe-{uuid.uuid4().hex}"
            try:
                self.create(name, "{}")
                self.delete(name)
                why = None
            except Exception as exc:
                why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if why is not None:
            raise StateNotWritable(
                f"the commit log of run key {self.run_key!r} cannot be kept in {self.folder}: {why}; "
                "give --state-dir a folder this driver can write (nothing was run)"
            )

    def record(self, sequence: str, record: dict[str, Any]) -> str:
        """Add a record of ``sequence`` (a file of its own, created only if absent); return its name."""
        record = {"run_key": self.run_key, "sequence": sequence, "recorded_at": time.time(), **record}
        text = json.dumps(record, separators=(",", ":"), default=str)
        name = f"{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:16]}{RECORD_SUFFIX}"
        with self._lock:
            self.create(name, text)
            self.entries[sequence] = record
        return name

    def create(self, name: str, text: str) -> None:
        """Write ``text`` as the new file ``name`` of the folder; never replace one."""
        uri = f"{self.folder}/{name}"
        if is_local(self.folder):
            folder = local_path(self.folder)
            os.makedirs(folder, exist_ok=True)
            # Written aside, then linked in: a reader sees the record whole or not at all, and a name
            # taken already is refused (link does not replace).
            fd, scratch = tempfile.mkstemp(prefix=".sparkpipe-", suffix=".tmp", dir=folder)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                os.link(scratch, os.path.join(folder, name))
            finally:
                os.unlink(scratch)
            return
        if self.spark is None:
            raise OSError(f"cannot write the commit log {self.folder} without a Spark session")
        session = capabilities_of(self.spark)
        if session.reaches_hadoop:
            jvm = session.jvm()
            assert jvm is not None  # reaches_hadoop
            path = jvm.org.apache.hadoop.fs.Path(uri)
            stream = path.getFileSystem(session.hadoop_configuration()).create(path, False)  # create-if-absent
            try:
                stream.write(bytearray(text.encode("utf-8")))
            finally:
                stream.close()
            return
        with tempfile.TemporaryDirectory(prefix="sparkpipe-commit-") as scratch:
            path = os.path.join(scratch, name)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
            self.spark.copyFromLocalToFs(path, uri)

    def delete(self, name: str) -> None:
        uri = f"{self.folder}/{name}"
        if is_local(self.folder):
            os.unlink(os.path.join(local_path(self.folder), name))
            return
        assert self.spark is not None
        session = capabilities_of(self.spark)
        if session.reaches_hadoop:
            from spark_job.io.filesystems import HadoopFiles

            HadoopFiles(self.spark, uri).delete(uri)
