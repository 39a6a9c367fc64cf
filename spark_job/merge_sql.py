"""The statements of ``mode: merge`` on a JDBC target, in the forms a :class:`~spark_job.dialects.Dialect`
names: its upsert form (``on_conflict``, ``on_duplicate_key``, ``update_insert``) and how it writes a
DELETE and an UPDATE joined to another table. A dialect asks :func:`merge_statements`; nothing here
compares databases. Standard library only.

The staged rows are ``s``, the target's ``t`` (``merge_condition`` is written over both). Keys match with
``=``: a row with a NULL key never matches (it is inserted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spark_job.dialects import Dialect

DELETE_JOINS = ("exists", "using", "join")
UPDATE_JOINS = ("correlated", "from", "join")
COUNTS = ("deleted", "updated", "inserted", "probe", "upserted", "upserted_unknown", "upserted_returning")


@dataclass(frozen=True)
class MergeTables:
    """What one merge joins: the target and staging tables (names as the config writes them) and their columns.

    Attributes:
        target: the target table.
        staging: the table holding the incoming rows.
        columns: the columns a new row is inserted with, as (target column, staging column) pairs.
        keys: the merge keys, as (target column, staging column) pairs.
        updated: the columns a matched row takes, as (target column, staging column) pairs.
        condition: the extra condition (database SQL over ``t`` and ``s``) for updating or deleting a
            matched row.
        delete_flag: the staging column that is 1 for a row deleting its key (None: no deletes).
    """

    target: str
    staging: str
    columns: tuple[tuple[str, str], ...]
    keys: tuple[tuple[str, str], ...]
    updated: tuple[tuple[str, str], ...] = ()
    condition: str | None = None
    delete_flag: str | None = None


@dataclass(frozen=True)
class MergeStatement:
    """One statement of a merge and what its result counts.

    ``counts``: ``deleted``, ``updated``, ``inserted`` (its update count is that many rows); ``probe`` (a
    query returning the staged rows to upsert and how many of them match a target row: those are
    updated, the others inserted); ``upserted`` (its update count is the rows inserted plus the rows
    updated); ``upserted_unknown`` (its update count says nothing exact: MySQL counts 1 per insert, 2 per
    update and 0 or 1 for a row left as it was, so the probe's figures stand); ``upserted_returning`` (a
    query running the upsert and returning the rows it inserted and the rows it updated).
    """

    sql: str
    counts: str


class _Parts:
    """The pieces every form is written from, quoted in the dialect's way."""

    def __init__(self, dialect: Dialect, tables: MergeTables) -> None:
        q = self.quote = dialect.quote
        self.t, self.s = tables.target, tables.staging
        self.tables = tables
        self.match = " AND ".join(f"s.{q(sc)} = t.{q(tc)}" for tc, sc in tables.keys)
        self.target_columns = ", ".join(q(tc) for tc, _ in tables.columns)
        self.staged_columns = ", ".join(f"s.{q(sc)}" for _, sc in tables.columns)
        self.updated = [(q(tc), f"s.{q(sc)}") for tc, sc in tables.updated]
        self.target_keys = ", ".join(q(tc) for tc, _ in tables.keys)
        flag = f"s.{q(tables.delete_flag)}" if tables.delete_flag else None
        self.kept = f"{flag} = 0" if flag else "1 = 1"
        self.deleting = f"{flag} = 1" if flag else None
        self.condition = f"({tables.condition})" if tables.condition else None

    def where(self, *parts: str | None) -> str:
        return " AND ".join(p for p in parts if p)

    def insert_new(self) -> MergeStatement:
        """The staged rows without a match, inserted."""
        absent = f"NOT EXISTS (SELECT 1 FROM {self.t} t WHERE {self.match})"
        sql = (
            f"INSERT INTO {self.t} ({self.target_columns}) SELECT {self.staged_columns} FROM {self.s} s "
            f"WHERE {self.where(self.kept, absent)}"
        )
        return MergeStatement(sql, "inserted")

    def probe(self) -> MergeStatement:
        """How many staged rows are upserted, and how many of them match a target row (before the upsert)."""
        first_key = self.tables.keys[0][0]
        sql = (
            f"SELECT COUNT(*), COUNT(t.{self.quote(first_key)}) FROM {self.s} s "
            f"LEFT JOIN {self.t} t ON {self.match} WHERE {self.kept}"
        )
        return MergeStatement(sql, "probe")


# -- DELETE of the matched rows flagged by delete_when --------------------------------------------------


def _delete_exists(p: _Parts) -> str:
    return f"DELETE FROM {p.t} t WHERE EXISTS (SELECT 1 FROM {p.s} s WHERE {p.where(p.match, p.deleting, p.condition)})"


def _delete_using(p: _Parts) -> str:
    return f"DELETE FROM {p.t} AS t USING {p.s} AS s WHERE {p.where(p.match, p.deleting, p.condition)}"


def _delete_join(p: _Parts) -> str:
    return f"DELETE t FROM {p.t} AS t JOIN {p.s} AS s ON {p.match} WHERE {p.where(p.deleting, p.condition)}"


_DELETES: dict[str, Callable[[_Parts], str]] = {"exists": _delete_exists, "using": _delete_using, "join": _delete_join}


# -- UPDATE of the matched rows -------------------------------------------------------------------------


def _update_correlated(p: _Parts) -> str:
    sets = ", ".join(f"{tc} = (SELECT {sc} FROM {p.s} s WHERE {p.match})" for tc, sc in p.updated)
    matched = p.where(p.match, p.kept, p.condition)
    return f"UPDATE {p.t} t SET {sets} WHERE EXISTS (SELECT 1 FROM {p.s} s WHERE {matched})"


def _update_from(p: _Parts) -> str:
    sets = ", ".join(f"{tc} = {sc}" for tc, sc in p.updated)
    return f"UPDATE {p.t} AS t SET {sets} FROM {p.s} AS s WHERE {p.where(p.match, p.kept, p.condition)}"


def _update_join(p: _Parts) -> str:
    # The SET list reads only s: MySQL assigns left to right, so a SET reading t would see earlier changes.
    sets = ", ".join(f"t.{tc} = {sc}" for tc, sc in p.updated)
    return f"UPDATE {p.t} AS t JOIN {p.s} AS s ON {p.match} SET {sets} WHERE {p.where(p.kept, p.condition)}"


_UPDATES: dict[str, Callable[[_Parts], str]] = {
    "correlated": _update_correlated,
    "from": _update_from,
    "join": _update_join,
}


# -- the upsert forms -----------------------------------------------------------------------------------


def _update_insert(dialect: Dialect, p: _Parts) -> list[MergeStatement]:
    """Portable: UPDATE the matched rows, then INSERT the others (one transaction)."""
    out = []
    if p.updated:
        out.append(MergeStatement(_UPDATES[dialect.update_join](p), "updated"))
    out.append(p.insert_new())
    return out


def _on_conflict(dialect: Dialect, p: _Parts) -> list[MergeStatement]:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE`` (PostgreSQL, SQLite): needs a unique index on the keys."""
    if not p.updated:
        return [p.insert_new()]
    sets = ", ".join(f"{tc} = EXCLUDED.{tc}" for tc, _ in p.updated)
    # The incoming row is EXCLUDED there; the condition, written over s, reads it as s in a subquery.
    only_if = f" WHERE EXISTS (SELECT 1 FROM (SELECT EXCLUDED.*) AS s WHERE {p.condition})" if p.condition else ""
    sql = (
        f"INSERT INTO {p.t} AS t ({p.target_columns}) SELECT {p.staged_columns} FROM {p.s} AS s WHERE {p.kept} "
        f"ON CONFLICT ({p.target_keys}) DO UPDATE SET {sets}{only_if}"
    )
    if dialect.inserted_flag is None:
        return [p.probe(), MergeStatement(sql, "upserted")]
    # One statement: each row it inserted or updated says which (PostgreSQL: xmax is 0 on an inserted row).
    counted = (
        f"WITH merged AS ({sql} RETURNING {dialect.inserted_flag} AS inserted) SELECT "
        "SUM(CASE WHEN inserted THEN 1 ELSE 0 END), SUM(CASE WHEN inserted THEN 0 ELSE 1 END) FROM merged"
    )
    return [MergeStatement(counted, "upserted_returning")]


def _on_duplicate_key(dialect: Dialect, p: _Parts) -> list[MergeStatement]:
    """``INSERT ... ON DUPLICATE KEY UPDATE`` (MySQL, MariaDB): needs a unique index on the keys.

    With a condition, a joined UPDATE and an INSERT of the others instead: ``ON DUPLICATE KEY UPDATE``
    assigns left to right, so a condition over ``t`` would read the columns already assigned."""
    if not p.updated or p.condition:
        return _update_insert(dialect, p)
    sets = ", ".join(f"{tc} = {sc}" for tc, sc in p.updated)
    sql = (
        f"INSERT INTO {p.t} ({p.target_columns}) SELECT {p.staged_columns} FROM {p.s} AS s WHERE {p.kept} "
        f"ON DUPLICATE KEY UPDATE {sets}"
    )
    return [p.probe(), MergeStatement(sql, "upserted_unknown")]


_UPSERTS: dict[str, Callable[[Dialect, _Parts], list[MergeStatement]]] = {
    "update_insert": _update_insert,
    "on_conflict": _on_conflict,
    "on_duplicate_key": _on_duplicate_key,
}


def merge_statements(dialect: Dialect, tables: MergeTables) -> tuple[MergeStatement, ...]:
    """The statements, run in this order in one transaction, that merge ``tables.staging`` into ``tables.target``:
    the DELETE of the matched rows flagged by ``delete_when`` (when there is a flag), then the upsert in
    ``dialect``'s form."""
    parts = _Parts(dialect, tables)
    out: list[MergeStatement] = []
    if tables.delete_flag:
        out.append(MergeStatement(_DELETES[dialect.delete_join](parts), "deleted"))
    out.extend(_UPSERTS[dialect.upsert](dialect, parts))
    return tuple(out)
