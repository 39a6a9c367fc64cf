"""A cheap, honest identity of what a target holds (``target_state``), recorded with each commit and
compared (``unchanged``) before a retry reuses the commit.

Per kind of target:

- a path (parquet, orc, csv, json, avro, delta and iceberg paths, ``gcs``/``s3``/``hdfs``): its data
  files, recursively (names not starting with ``_`` or ``.``, so ``_SUCCESS``, ``_delta_log`` and
  Spark's staging are not counted), each with its size and modification time. An ``append`` target is
  unchanged while every file listed at the commit is still there, same size and time (others may add
  files; beyond ``MAX_LISTED`` files, while it holds as many files and bytes at least); any other mode
  while the listing is the same.
- a catalog table (``table``): it exists; where it has a location (a managed or external table, Delta,
  Iceberg), that location's listing as for a path.
- a JDBC table: it exists and holds the rows it held after the commit (``append``: at least as many).
- anything else (BigQuery, a third-party writer): ``unchecked`` (the fingerprint alone decides).

On a classic session local paths are listed by this process and others through Hadoop's FileSystem; on
Spark Connect every path is listed by the server, through the ``binaryFile`` source (content not read).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from spark_job.engine.capabilities import capabilities_of

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from spark_job.config.validation import SequenceSpec
    from spark_job.io.base import WritePlan

MISSING = "missing"
MAX_LISTED = 10_000
"""The most files whose names an ``append`` target's state keeps; beyond that, only their count and
bytes, and the target counts as unchanged while it holds at least as many of both."""
JDBC_CONNECTION_KEYS = ("url", "user", "password", "driver")


class StateUnknown(Exception):
    """The target's state could not be read (the database or the filesystem did not answer)."""


def is_local(uri: str) -> bool:
    return urlparse(uri).scheme in ("", "file")


def local_path(uri: str) -> str:
    parsed = urlparse(uri)
    return parsed.path if parsed.scheme == "file" else uri


def hidden(relative: str) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.split("/") if part)


def list_files(spark: SparkSession | None, uri: str) -> list[tuple[str, int, int]] | None:
    """``(relative name, size, modification ms)`` of the data files under ``uri``, sorted; None when absent."""
    if spark is not None and not capabilities_of(spark).reaches_hadoop:
        return listed_by_spark(spark, uri)  # Spark Connect: even a local path is the server's
    if is_local(uri):
        root = local_path(uri)
        if not os.path.exists(root):
            return None
        if os.path.isfile(root):
            stat = os.stat(root)
            return [("", stat.st_size, stat.st_mtime_ns // 1_000_000)]
        found = []
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
            for name in files:
                if name.startswith(("_", ".")):
                    continue
                path = os.path.join(folder, name)
                stat = os.stat(path)
                found.append((os.path.relpath(path, root), stat.st_size, stat.st_mtime_ns // 1_000_000))
        return sorted(found)
    if spark is None:
        raise StateUnknown(f"{uri}: no Spark session to list it with")
    return hadoop_files(spark, uri)


def hadoop_files(spark: SparkSession, uri: str) -> list[tuple[str, int, int]] | None:
    session = capabilities_of(spark)
    jvm = session.jvm()
    assert jvm is not None  # reaches_hadoop
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(session.hadoop_configuration())
    if not fs.exists(path):
        return None
    root = str(fs.makeQualified(path).toString()).rstrip("/")
    found = []
    files = fs.listFiles(path, True)
    while files.hasNext():
        status = files.next()
        name = str(status.getPath().toString())
        relative = name[len(root) + 1 :] if name.startswith(root + "/") else ("" if name == root else name)
        if not hidden(relative):
            found.append((relative, int(status.getLen()), int(status.getModificationTime())))
    return sorted(found)


def listed_by_spark(spark: SparkSession, uri: str) -> list[tuple[str, int, int]] | None:
    """The listing through the ``binaryFile`` source (Spark Connect): its content column is not read."""
    try:
        rows = (
            spark.read.format("binaryFile")
            .option("recursiveFileLookup", "true")
            .load(uri)
            .selectExpr("path", "length", "CAST(unix_millis(modificationTime) AS BIGINT) AS ms")
            .collect()
        )
    except Exception as exc:
        if "PATH_NOT_FOUND" in str(exc) or "does not exist" in str(exc):
            return None
        raise
    root = uri.rstrip("/")
    found = []
    for row in rows:
        name = str(row["path"])
        at = name.find(urlparse(root).path or root)
        relative = name[at + len(urlparse(root).path or root) :].lstrip("/") if at >= 0 else name
        if not hidden(relative):
            found.append((relative, int(row["length"]), int(row["ms"])))
    return sorted(found)


def files_state(spark: SparkSession | None, uri: str, keep_names: bool) -> dict[str, Any]:
    files = list_files(spark, uri)
    if files is None:
        return {"kind": "files", MISSING: True}
    digest = hashlib.sha256(json.dumps(files).encode("utf-8")).hexdigest()
    state: dict[str, Any] = {"kind": "files", "files": len(files), "bytes": sum(f[1] for f in files), "digest": digest}
    if keep_names:
        state["listing"] = [list(f) for f in files]
    return state


def recordable(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` as a commit record keeps it: without the file names beyond ``MAX_LISTED`` files (a
    record per commit would grow too large)."""
    if len(state.get("listing") or ()) > MAX_LISTED:
        return {k: v for k, v in state.items() if k != "listing"}
    return state


def table_state(spark: SparkSession, table: str, keep_names: bool) -> dict[str, Any]:
    if not spark.catalog.tableExists(table):
        return {"kind": "table", MISSING: True}
    location = None
    for row in spark.sql(f"DESCRIBE TABLE EXTENDED {table}").collect():
        if str(row[0]).strip().lower() == "location" and row[1]:
            location = str(row[1]).strip()
    if location is None:
        return {"kind": "table"}
    return {**files_state(spark, location, keep_names), "kind": "table"}


def jdbc_state(spark: SparkSession, plan: WritePlan, extra: dict[str, Any]) -> dict[str, Any]:
    options = {k: v for k, v in plan.options.items() if k in JDBC_CONNECTION_KEYS}
    options.update({str(k): str(v) for k, v in extra.items()})
    table = str(plan.table)
    try:
        row = spark.read.format("jdbc").options(**options).option("query", f"SELECT COUNT(*) AS n FROM {table}").load()
        first = row.first()
        rows = int(first[0]) if first is not None else 0
    except Exception as exc:
        text = str(exc).lower()
        if any(m in text for m in ("does not exist", "doesn't exist", "not found", "no such table", "invalid object")):
            return {"kind": "jdbc", MISSING: True}
        raise
    return {"kind": "jdbc", "rows": rows}


def target_state(spark: SparkSession | None, seq: SequenceSpec) -> dict[str, Any]:
    """The state of ``seq``'s target now (no credential in it)."""
    plan = seq.writer.plan()
    append = plan.mode == "append"
    if spark is not None and (plan.format or "").lower() == "jdbc" and plan.table is not None:
        extra = seq.target.get("options") if isinstance(seq.target.get("options"), dict) else {}
        return jdbc_state(spark, plan, extra or {})
    if plan.table is not None and plan.method in ("saveAsTable", "insertInto") and spark is not None:
        return table_state(spark, plan.table, append)
    if plan.path is not None and plan.table is None:
        return files_state(spark, plan.path, append)
    return {"kind": "unchecked"}


def changed(before: dict[str, Any] | None, now: dict[str, Any], append: bool) -> str | None:
    """Why the target is not what was committed (None: it is)."""
    if now.get(MISSING):
        return "its target is gone"
    if not isinstance(before, dict) or before.get(MISSING) or before.get("kind") != now.get("kind"):
        return "its target's state was not recorded with the commit"
    kind = now["kind"]
    if kind == "unchecked":
        return None
    if kind == "jdbc":
        rows, committed = int(now.get("rows") or 0), int(before.get("rows") or 0)
        if rows < committed or (rows != committed and not append):
            return f"its table holds {rows:,} rows, {committed:,} after the commit"
        return None
    if "digest" not in before and "digest" not in now:
        return None  # a table without a location: it exists
    if before.get("digest") == now.get("digest"):
        return None
    if append and "listing" in before:
        current = {tuple(f) for f in now.get("listing") or ()}
        if all(tuple(f) in current for f in before["listing"]):
            return None  # files were added, none of the committed ones changed
        return "files it committed are gone or were rewritten"
    if append and "listing" not in before:  # too many files to keep their names
        if int(now.get("files") or 0) >= int(before.get("files") or 0) and int(now.get("bytes") or 0) >= int(
            before.get("bytes") or 0
        ):
            return None
        return "it holds fewer files or bytes than after the commit"
    return "its files changed (names, sizes or modification times)"
