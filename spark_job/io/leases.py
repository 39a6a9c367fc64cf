"""Leases on targets: one run at a time writes a target; a later run fails naming the run that holds it.

A path target's lease is a marker file beside it (``.<name>.sparkpipe-lease``) created atomically,
holding the owner's run id, Spark application id, host, pid, start and expiry, refreshed while the
write runs. It is stale once expired, or at once when its process is gone on the same host. A JDBC
target's lease is the same holder in a row of the ``sparkpipe_leases`` table of the target's schema
(its primary key makes the creation atomic), or on PostgreSQL by default an advisory lock held by an
open connection, which ends with the process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from spark_job.errors import exception_text
from spark_job.io.filesystems import Files
from spark_job.io.swap import table_exists

LEASE_SUFFIX = ".sparkpipe-lease"
LEASE_TTL_S = 120.0
"""How long a lease lives without a refresh; the holder refreshes it every third of that."""


class TargetBusy(RuntimeError):
    """Another run holds the lease of the target being written."""


def run_id(spark: Any) -> str:
    """The owner's run: ``SPARKPIPE_RUN_KEY`` (the CLI's ``--run-key``), else the Spark application id."""
    key = os.environ.get("SPARKPIPE_RUN_KEY")
    if key:
        return key
    return application_id(spark)


def application_id(spark: Any) -> str:
    try:
        return str(spark.sparkContext.applicationId)
    except Exception:  # a Spark Connect session has no SparkContext on the client
        try:
            return str(spark.conf.get("spark.app.id"))
        except Exception:
            return "unknown"


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a lease, as written in the marker."""

    token: str
    run_id: str
    app_id: str
    host: str
    pid: int
    started_at: str
    expires_at: float

    def describe(self) -> str:
        return (
            f"run {self.run_id!r} (Spark application {self.app_id}, host {self.host}, pid {self.pid}, "
            f"started {self.started_at})"
        )

    def stale(self, now: float) -> bool:
        if now > self.expires_at:
            return True
        if self.host == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:  # alive, owned by another user
                return False
        return False

    @classmethod
    def parse(cls, text: str | None) -> LeaseHolder | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(
                token=str(data["token"]),
                run_id=str(data["run_id"]),
                app_id=str(data["app_id"]),
                host=str(data["host"]),
                pid=int(data["pid"]),
                started_at=str(data["started_at"]),
                expires_at=float(data["expires_at"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


class FileMarker:
    """A lease marker that is a file: created atomically through ``Files.create_new``."""

    def __init__(self, files: Files, uri: str) -> None:
        self.files = files
        self.uri = uri
        self.last_error: str | None = None

    def prepare(self) -> None:
        self.files.mkdirs(self.uri.rpartition("/")[0])

    def create(self, text: str) -> bool:
        return self.files.create_new(self.uri, text)

    def read(self) -> str | None:
        return self.files.read_text(self.uri)

    def replace(self, text: str) -> None:
        self.files.replace_text(self.uri, text)

    def remove_if(self, text: str | None) -> None:
        """Remove the marker if it still holds ``text``: only one of several breakers wins the rename."""
        aside = f"{self.uri}.stale-{uuid.uuid4().hex}"
        if not self.files.rename(self.uri, aside):
            return
        if self.files.read_text(aside) != text:
            # Another run replaced the stale marker with a fresh one in between: put it back.
            self.files.rename(aside, self.uri)
            return
        self.files.delete(aside)

    def delete(self) -> None:
        self.files.delete(self.uri)

    def close(self) -> None:
        pass


class Lease:
    """A target's lease held in a marker (a file or a row), taken with ``acquire``, ended with ``release``.

    The marker holds a :class:`LeaseHolder`; a thread refreshes its expiry every third of ``ttl_s``.
    """

    def __init__(self, marker: Any, target: str, spark: Any, ttl_s: float = LEASE_TTL_S) -> None:
        self.marker = marker
        self.target = target
        self.ttl_s = ttl_s
        self.holder = LeaseHolder(
            token=uuid.uuid4().hex,
            run_id=run_id(spark)[:MAX_RUN_ID],
            app_id=application_id(spark),
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            expires_at=0.0,
        )
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        self._lock = threading.Lock()

    def _text(self) -> str:
        holder = LeaseHolder(**{**asdict(self.holder), "expires_at": time.time() + self.ttl_s})
        return json.dumps(asdict(holder))

    def acquire(self) -> None:
        """Take the lease or raise ``TargetBusy`` naming the run holding it."""
        self.marker.prepare()
        for _ in range(5):
            if self.marker.create(self._text()):
                self._refresher = threading.Thread(target=self._refresh, name=f"lease {self.target}", daemon=True)
                self._refresher.start()
                return
            text = self.marker.read()
            other = LeaseHolder.parse(text)
            if other is not None and not other.stale(time.time()):
                raise TargetBusy(
                    f"{self.target} is being written by {other.describe()}; this run did not write it. "
                    "Run again when that run has ended."
                )
            self.marker.remove_if(text)  # stale, unreadable, or gone already
        why = f": {self.marker.last_error}" if self.marker.last_error else ": other runs keep taking it"
        raise TargetBusy(f"could not take the lease of {self.target}{why}")

    def _refresh(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            with self._lock:
                if self._stop.is_set() or not self.held():
                    return
                with contextlib.suppress(Exception):  # checked again before the commit
                    self.marker.replace(self._text())

    def held(self) -> bool:
        other = LeaseHolder.parse(self.marker.read())
        return other is not None and other.token == self.holder.token

    def verify(self) -> None:
        """Raise unless the lease is still this run's: the new data is then not committed."""
        other = LeaseHolder.parse(self.marker.read())
        if other is None or other.token != self.holder.token:
            who = other.describe() if other else "nobody"
            raise TargetBusy(
                f"lost the lease of {self.target} while writing (now held by {who}): the new data was not committed"
            )

    def release(self) -> None:
        self._stop.set()
        try:
            with self._lock:
                if self._refresher is not None and self.held():
                    self.marker.delete()
            if self._refresher is not None:
                self._refresher.join(timeout=5)
                self._refresher = None
        finally:
            self.marker.close()


class PathLease(Lease):
    """The lease of one path target: the marker file ``.<name>.sparkpipe-lease`` beside it."""

    def __init__(self, files: Files, target: str, spark: Any, ttl_s: float = LEASE_TTL_S) -> None:
        parent, _, name = target.rstrip("/").rpartition("/")
        super().__init__(FileMarker(files, f"{parent}/.{name}{LEASE_SUFFIX}"), target, spark, ttl_s)


LEASE_TABLE = "sparkpipe_leases"
MAX_RUN_ID = 200
"""Characters of the run id a lease keeps: the row's holder column has a fixed width."""


def lease_table(table: str) -> str:
    """The lease table of a JDBC target: ``sparkpipe_leases`` in the target's schema (or the default one)."""
    schema, dot, _ = table.rpartition(".")
    return f"{schema}{dot}{LEASE_TABLE}"


class TableMarker:
    """A lease marker that is a row of the lease table, keyed by a hash of the target's identity; the
    primary key makes its creation atomic on any database. It runs on a connection of its own
    (autocommit), so that refreshing it never mixes with the transaction of the commit."""

    def __init__(self, conn: Any, table: str, identity: str) -> None:
        self.conn = conn
        self.table = table
        self.key = hashlib.sha256(identity.encode()).hexdigest()[:40]
        self.last_error: str | None = None

    def _run(self, sql: str, *args: str) -> Any:
        stmt = self.conn.prepareStatement(sql)
        try:
            for i, arg in enumerate(args, 1):
                stmt.setString(i, arg)
            if sql.startswith("SELECT"):
                result = stmt.executeQuery()
                return result.getString(1) if result.next() else None
            return stmt.executeUpdate()
        finally:
            stmt.close()

    def prepare(self) -> None:
        """Create the lease table if it is missing (a concurrent creator may win: then it exists)."""
        self.conn.setAutoCommit(True)
        if table_exists(self.conn, self.table):
            return
        try:
            self._run(
                f"CREATE TABLE {self.table} (lease_key VARCHAR(40) NOT NULL PRIMARY KEY, holder VARCHAR(1000) NOT NULL)"
            )
        except Exception as exc:
            if not table_exists(self.conn, self.table):
                raise TargetBusy(
                    f"could not create the lease table {self.table} ({_first_line(exc)}): create it, or let "
                    "the target's user create tables in its schema (the staged write needs that too)"
                ) from None

    def create(self, text: str) -> bool:
        try:
            self._run(f"INSERT INTO {self.table} (lease_key, holder) VALUES (?, ?)", self.key, text)
            self.last_error = None
            return True
        except Exception as exc:  # a duplicate key, most likely: read who holds it
            self.last_error = _first_line(exc)
            return False

    def read(self) -> str | None:
        return self._run(f"SELECT holder FROM {self.table} WHERE lease_key = ?", self.key)

    def replace(self, text: str) -> None:
        self._run(f"UPDATE {self.table} SET holder = ? WHERE lease_key = ?", text, self.key)

    def remove_if(self, text: str | None) -> None:
        if text is None:
            return  # no row: the next insert decides
        self._run(f"DELETE FROM {self.table} WHERE lease_key = ? AND holder = ?", self.key, text)

    def delete(self) -> None:
        self._run(f"DELETE FROM {self.table} WHERE lease_key = ?", self.key)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


def _first_line(exc: BaseException) -> str:
    """What the database said, on one line (a Py4J error's Java message, not the Java call that failed)."""
    return exception_text(exc).splitlines()[0][:300]


class TableLease(Lease):
    """The lease of a JDBC target on a database without advisory locks (or behind a pooler that
    does not keep sessions): a row of ``sparkpipe_leases`` in the target's schema."""

    def __init__(self, conn: Any, identity: str, target: str, spark: Any, ttl_s: float = LEASE_TTL_S) -> None:
        super().__init__(TableMarker(conn, lease_table(target), identity), target, spark, ttl_s)


def advisory_key(identity: str) -> tuple[int, int]:
    """Two signed 32-bit integers naming a target, for ``pg_try_advisory_lock(int, int)``."""
    digest = hashlib.sha256(identity.encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True), int.from_bytes(digest[4:8], "big", signed=True)


class PostgresLease:
    """A session advisory lock on a PostgreSQL connection (a JDBC ``java.sql.Connection``) kept open
    for the write; the holder is found again by the ``application_name`` of its connection."""

    def __init__(self, conn: Any, identity: str, target: str, spark: Any) -> None:
        self.conn = conn
        self.key = advisory_key(identity)
        self.target = target
        # PostgreSQL keeps 63 bytes of application_name: the run id first, it is what the message names.
        self.label = f"run {run_id(spark)} app {application_id(spark)} pid {os.getpid()}"[:63]

    def _query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        stmt = self.conn.prepareStatement(sql)
        try:
            for i, arg in enumerate(args, 1):
                if isinstance(arg, int):
                    stmt.setInt(i, arg)
                else:
                    stmt.setString(i, str(arg))
            result = stmt.executeQuery()
            count = result.getMetaData().getColumnCount()
            rows = []
            while result.next():
                rows.append(tuple(result.getString(c) for c in range(1, count + 1)))
            return rows
        finally:
            stmt.close()

    def acquire(self) -> None:
        self._query("SELECT set_config('application_name', ?, false)", self.label)
        if self._query("SELECT pg_try_advisory_lock(?, ?)", *self.key)[0][0] in ("t", "true"):
            return
        holders = self._query(
            "SELECT a.application_name, a.client_addr, a.backend_start FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid::int = ? AND l.objid::int = ? AND l.objsubid = 2",
            *self.key,
        )
        who = (
            f"{holders[0][0] or 'another session'} (from {holders[0][1] or 'local'}, since {holders[0][2]})"
            if holders
            else "another session"
        )
        raise TargetBusy(f"{self.target} is being written by {who}; this run did not write it")

    def verify(self) -> None:
        held = self._query(
            "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory' "
            "AND classid::int = ? AND objid::int = ? AND objsubid = 2 AND granted",
            *self.key,
        )
        if held[0][0] in (None, "0"):
            raise TargetBusy(f"lost the lease of {self.target} while writing: the new data was not committed")

    def release(self) -> None:
        with contextlib.suppress(Exception):
            self._query("SELECT pg_advisory_unlock(?, ?)", *self.key)
