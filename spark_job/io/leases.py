"""Leases on targets: one run at a time writes a target; a later run fails naming the run that holds it.

A path target's lease is held through claim files beside it (``.<name>.sparkpipe-lease.*.claim``,
see :class:`ClaimMarker`: sound on S3 too, which has no atomic create-if-absent), each holding its
run's id, Spark application id, host, pid, start and expiry, refreshed while the write runs. A
claim is stale once expired, or at once when its process is gone on the same host. A JDBC
target's lease is the same holder in a row of the ``sparkpipe_leases`` table of the target's schema
(its primary key makes the creation atomic), or on PostgreSQL by default an advisory lock held by an
open connection, which ends with the process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from spark_job.engine.capabilities import capabilities_of
from spark_job.errors import exception_text
from spark_job.io.filesystems import Files
from spark_job.io.swap import table_exists

LEASE_SUFFIX = ".sparkpipe-lease"
"""A path target's lease is held by claim files ``.<name><suffix>.*.claim`` beside it."""
LEASE_TTL_S = 120.0
"""How long a lease lives without a refresh; the holder refreshes it every third of that."""


class TargetBusy(RuntimeError):
    """Another run holds the lease of the target being written."""


def run_id(spark: Any) -> str:
    """The owner's run: ``SPARKPIPE_RUN_KEY`` (the CLI's ``--run-key``), else the Spark application id."""
    return os.environ.get("SPARKPIPE_RUN_KEY") or app_label(spark)


def app_label(spark: Any) -> str:
    """The Spark application a holder names (``unknown`` without a session)."""
    return (capabilities_of(spark).application_id() if spark is not None else None) or "unknown"


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


CLAIM_SUFFIX = ".claim"
CLAIM_ATTEMPTS = 6
"""How often a taker that met only claims not yet holding withdraws and tries again."""
CLAIM_READS = 100
"""How often a listing of the claims is taken again while one in it cannot be read (about 2 s)."""


@dataclass(frozen=True)
class Claim:
    """One claim file read back: its holder, and whether it holds the lease or only bids for it."""

    uri: str
    text: str
    holder: LeaseHolder
    holds: bool


class ClaimMarker:
    """A path target's lease marker, sound on any filesystem whose listing is strongly consistent
    (local disks, HDFS, S3, GCS, ADLS): it needs neither an atomic create-if-absent nor an atomic
    rename, which S3 does not have.

    Each taker puts a claim of its own beside the target, ``.<name>.sparkpipe-lease.<token>.<n>.claim``
    (a new file for each refresh, the previous one deleted only after it, so that a claim is readable
    whole at every moment), then lists the claims. Of two takers, the one listing later sees the
    other's claim, written before the other listed: at most one lists no live claim but its own. That
    one holds the lease and says so in a new claim (``holds``); the other withdraws its claim, and when
    what it met only bid too (both came in the same instant) it tries again after a random pause, so
    that one of them wins. A claim is written whole before its writer lists, so one that cannot be
    read yet (being written, or replaced by its holder's next one since the listing) only makes the
    reader list again (see :meth:`claims`).
    """

    def __init__(self, files: Files, target: str, token: str) -> None:
        self.files = files
        self.parent, _, name = target.rstrip("/").rpartition("/")
        self.prefix = f".{name}{LEASE_SUFFIX}."
        self.legacy = f"{self.parent}/.{name}{LEASE_SUFFIX}"
        """The marker file of earlier versions: a run of one still holds the target while it is there."""
        self.token = token
        self.mine: str | None = None
        self.holds = False
        self.serial = 0
        self.last_error: str | None = None

    def prepare(self) -> None:
        self.files.mkdirs(self.parent)

    def _put(self, text: str, holds: bool) -> None:
        """A new claim of this run, whole; then the previous one goes."""
        self.serial += 1
        uri = f"{self.parent}/{self.prefix}{self.token}.{self.serial}{CLAIM_SUFFIX}"
        self.files.replace_text(uri, json.dumps({**json.loads(text), "holds": holds}))
        previous, self.mine, self.holds = self.mine, uri, holds
        if previous is not None:
            self.files.delete(previous)

    def _withdraw(self) -> None:
        if self.mine is not None:
            self.files.delete(self.mine)
        self.mine, self.holds = None, False

    def _read(self, uri: str) -> str | None:
        try:
            return self.files.read_text(uri)
        except Exception:  # being written or deleted right now
            return None

    def claims(self) -> list[Claim]:
        """The live claims beside the target; stale ones of others are deleted on the way.

        A listed claim that cannot be read was replaced by its holder's next one, or is being
        written: the listing is taken again until every claim in it reads whole. One that never
        does (a claim file left half written) stops the taker, naming it.
        """
        for _ in range(CLAIM_READS):
            found: list[Claim] = []
            unreadable: list[str] = []
            now = time.time()
            for name in self.files.list_names(self.parent):
                if not (name.startswith(self.prefix) and name.endswith(CLAIM_SUFFIX)):
                    continue
                uri = f"{self.parent}/{name}"
                text = self._read(uri)
                holder = LeaseHolder.parse(text)
                if text is None or holder is None:
                    unreadable.append(uri)
                elif holder.token != self.token and holder.stale(now):
                    with contextlib.suppress(Exception):
                        self.files.delete(uri)
                else:
                    found.append(Claim(uri, text, holder, json.loads(text).get("holds") is True))
            if not unreadable:
                return found
            time.sleep(0.02)
        raise TargetBusy(f"the lease claim {unreadable[0]} cannot be read: delete it if no run is writing the target")

    def create(self, text: str) -> bool:
        try:
            for attempt in range(CLAIM_ATTEMPTS):
                if self._read(self.legacy) is not None:
                    return False  # ``read`` names its holder, or ``remove_if`` deletes it when stale
                self._put(text, holds=False)
                others = [c for c in self.claims() if c.holder.token != self.token]
                if not others:
                    self._put(text, holds=True)
                    return True
                self._withdraw()
                if any(c.holds for c in others):
                    return False
                time.sleep(random.uniform(0.05, 0.25) * (attempt + 1))
            return False
        except BaseException:
            with contextlib.suppress(Exception):
                self._withdraw()
            raise

    def read(self) -> str | None:
        """The holder's claim: this run's while it holds and no other claim does, else another's."""
        if (legacy := self._read(self.legacy)) is not None:
            return legacy
        claims = self.claims()
        now = time.time()
        mine = [c for c in claims if c.uri == self.mine and not c.holder.stale(now)]
        others = sorted((c for c in claims if c.holder.token != self.token), key=lambda c: not c.holds)
        if self.holds and mine and not (others and others[0].holds):
            return mine[0].text
        return others[0].text if others else None

    def replace(self, text: str) -> None:
        self._put(text, holds=self.holds)

    def remove_if(self, text: str | None) -> None:
        """Delete an earlier version's marker file still holding ``text`` (stale claims go in ``claims``)."""
        if text is not None and self._read(self.legacy) == text:
            self.files.delete(self.legacy)

    def delete(self) -> None:
        self._withdraw()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._withdraw()


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
            app_id=app_label(spark),
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
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
                if self._stop.is_set():
                    return
                try:
                    if not self.held():
                        return
                    self.marker.replace(self._text())
                except Exception:  # checked again before the commit
                    pass

    def held(self) -> bool:
        other = LeaseHolder.parse(self.marker.read())
        return other is not None and other.token == self.holder.token

    def verify(self) -> None:
        """Raise unless the lease is still this run's: the new data is then not committed."""
        try:
            text = self.marker.read()
        except TargetBusy as exc:
            raise TargetBusy(f"{exc}; the new data was not committed") from None
        other = LeaseHolder.parse(text)
        if other is None or other.token != self.holder.token:
            who = other.describe() if other else "nobody"
            raise TargetBusy(
                f"lost the lease of {self.target} while writing (now held by {who}): the new data was not committed"
            )

    def release(self) -> None:
        self._stop.set()
        try:
            with self._lock, contextlib.suppress(Exception):  # the marker's close ends the rest
                if self._refresher is not None and self.held():
                    self.marker.delete()
            if self._refresher is not None:
                self._refresher.join(timeout=5)
                self._refresher = None
        finally:
            self.marker.close()


class PathLease(Lease):
    """The lease of one path target: claim files ``.<name>.sparkpipe-lease.*.claim`` beside it."""

    def __init__(
        self, files: Files, target: str, spark: Any, ttl_s: float = LEASE_TTL_S, label: str | None = None
    ) -> None:
        super().__init__(None, label or target, spark, ttl_s)
        self.marker = ClaimMarker(files, target, self.holder.token)


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
        self.label = f"run {run_id(spark)} app {app_label(spark)} pid {os.getpid()}"[:63]

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
