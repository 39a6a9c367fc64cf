"""``mode: merge`` on a JDBC target: the incoming rows are staged in a table beside the target (as an
overwrite's are), then merged into it in one database transaction, in the form the database's dialect
takes (``spark_job.dialects``, ``spark_job.merge_sql``).

Before anything is written :meth:`JdbcMerge.prepare` reads the target's columns (compared by name under
``on_schema_change``) and, for the forms that need one, its unique keys; :meth:`JdbcMerge.commit` then
creates a missing target from the staged rows' columns (the keys as its primary key where the database
can), adds or drops columns, runs the DELETE of the rows ``delete_when`` flags and the upsert, and the
steps others add to the transaction, and commits. On a database whose DDL commits at once (MySQL,
MariaDB), creating or altering the target happens just before the transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from spark_job.io.incoming import (
    DELETE_FLAG,
    DUPLICATE_SAMPLE,
    MergeError,
    SchemaChanges,
    describe_duplicates,
    schema_changes,
)
from spark_job.io.swap import table_exists
from spark_job.merge_sql import MergeTables

if TYPE_CHECKING:
    from pyspark.sql.types import StructType

    from spark_job.config.merge import MergeSpec
    from spark_job.dialects import Dialect

UNIQUE_KEY_FORMS = ("on_conflict", "on_duplicate_key")
"""The upsert forms that find a target row by a unique index on the merge keys."""

_SIZED = frozenset({"varchar", "char", "bpchar", "character", "character varying", "nvarchar", "nchar", "varbinary"})
_SCALED = frozenset({"numeric", "decimal", "number"})

CommitStep = Callable[[Any], None]
"""A step run on the transaction's JDBC connection just before it commits (e.g. storing a watermark)."""


def _statement_rows(conn: Any, sql: str, limit: int = 0) -> list[list[Any]]:
    """The rows of a query (the first ``limit`` when it is not 0)."""
    stmt = conn.createStatement()
    try:
        if limit:
            stmt.setMaxRows(limit)
        rs = stmt.executeQuery(sql)
        width = rs.getMetaData().getColumnCount()
        rows = []
        while rs.next():
            rows.append([rs.getObject(i) for i in range(1, width + 1)])
        return rows
    finally:
        stmt.close()


def columns_of(conn: Any, table: str) -> list[tuple[str, str]]:
    """The columns of ``table`` as (name, type as DDL writes it), from a query that returns no row."""
    stmt = conn.createStatement()
    try:
        meta = stmt.executeQuery(f"SELECT * FROM {table} WHERE 1 = 0").getMetaData()
        out = []
        for i in range(1, meta.getColumnCount() + 1):
            name, kind = str(meta.getColumnName(i)), str(meta.getColumnTypeName(i))
            precision, scale = int(meta.getPrecision(i)), int(meta.getScale(i))
            if kind.lower() in _SIZED and 0 < precision < 65536:
                kind = f"{kind}({precision})"
            elif kind.lower() in _SCALED and precision > 0:
                kind = f"{kind}({precision},{scale})"
            out.append((name, kind))
        return out
    finally:
        stmt.close()


def unique_keys(conn: Any, table: str, dialect: Dialect) -> list[frozenset[str]]:
    """The column sets (lower-cased) of ``table``'s primary key and unique indexes without a filter, read
    from the driver's metadata."""
    parts = table.split(".")
    name, schema = parts[-1], parts[-2] if len(parts) > 1 else None
    catalog = None
    if dialect.database_is_schema:
        catalog, schema = schema or conn.getCatalog(), None
    elif schema is None:
        schema = conn.getSchema()
    meta = conn.getMetaData()
    found: dict[str, set[str]] = {}
    for spelt in dict.fromkeys((name, dialect.fold(name, False), name.lower(), name.upper())):
        where = schema if schema is None else dialect.fold(schema, False)
        rs = meta.getIndexInfo(catalog, where, spelt, True, True)
        while rs.next():
            column = rs.getString("COLUMN_NAME")
            if column is None or rs.getBoolean("NON_UNIQUE") or rs.getString("FILTER_CONDITION"):
                continue
            found.setdefault(f"index {rs.getString('INDEX_NAME')}", set()).add(column.lower())
        rs.close()
        rs = meta.getPrimaryKeys(catalog, where, spelt)
        while rs.next():
            found.setdefault("primary key", set()).add(rs.getString("COLUMN_NAME").lower())
        rs.close()
        if found:
            break
    return [frozenset(columns) for columns in found.values()]


def _find(columns: Sequence[str], name: str) -> str | None:
    return next((c for c in columns if c.lower() == name.lower()), None)


class JdbcMerge:
    """One ``mode: merge`` write of a JDBC table, from its staging table, on one connection.

    Args:
        table: the target as the config names it.
        staging: the staging table the incoming rows are written to.
        dialect: the database's dialect.
        merge: the merge settings.
        sequence: the sequence writing (named in errors).
    """

    def __init__(self, table: str, staging: str, dialect: Dialect, merge: MergeSpec, sequence: str) -> None:
        self.table = table
        self.staging = staging
        self.dialect = dialect
        self.merge = merge
        self.sequence = sequence
        self.exists = False
        self.target_columns: list[str] = []
        self.changes = SchemaChanges()

    @property
    def where(self) -> str:
        return f"sequence {self.sequence}: mode merge into {self.table}"

    def prepare(self, conn: Any, incoming: Sequence[str]) -> None:
        """Before anything is written: the target's columns against the ``incoming`` ones under the policy, and the
        unique keys the dialect's upsert needs. Raises :class:`MergeError`."""
        self.exists = table_exists(conn, self.table)
        if not self.exists:
            return
        self.target_columns = [name for name, _ in columns_of(conn, self.table)]
        self.changes = schema_changes(
            incoming, self.target_columns, self.merge.on_schema_change, where=self.where, keys=self.merge.keys
        )
        if self.dialect.upsert in UNIQUE_KEY_FORMS:
            keys = frozenset(k.lower() for k in self.merge.keys)
            if keys not in unique_keys(conn, self.table, self.dialect):
                q = self.dialect.quote
                listed = ", ".join(self.merge.keys)
                form = "ON CONFLICT" if self.dialect.upsert == "on_conflict" else "ON DUPLICATE KEY UPDATE"
                raise MergeError(
                    f"{self.where}: {self.dialect.name} finds the rows to update by a primary key or unique "
                    f"constraint on the merge keys ({listed}) ({form}), and {self.table} has none on exactly "
                    f"those columns: add one, e.g. ALTER TABLE {self.table} ADD UNIQUE "
                    f"({', '.join(q(_find(self.target_columns, k) or k) for k in self.merge.keys)}), "
                    "or fix merge_keys (nothing was written)"
                )

    def staging_types(self, schema: StructType) -> str | None:
        """``createTableColumnTypes`` for the staging table: text keys typed so they can be a key where the
        database's text type cannot (MySQL's TEXT); None when nothing needs it."""
        kind = self.dialect.key_text_type
        if kind is None:
            return None
        keys = {k.lower() for k in self.merge.keys}
        typed = [
            f"`{f.name.replace('`', '``')}` {kind}"
            for f in schema.fields
            if f.name.lower() in keys and f.dataType.typeName() == "string"
        ]
        return ", ".join(typed) or None

    def check_staged_keys(self, conn: Any, incoming: Sequence[str]) -> None:
        """Raise :class:`MergeError` naming a sample of the keys the staged rows repeat (unless ``deduplicate``
        kept one row per key): counted by the database on the staging table, before the target is touched,
        instead of a Spark job computing the query once more."""
        if self.merge.latest_by:
            return
        q = self.dialect.quote
        keys = [_find(incoming, k) or k for k in self.merge.keys]
        listed = ", ".join(q(k) for k in keys)
        found = _statement_rows(
            conn,
            f"SELECT {listed}, COUNT(*) FROM {self.staging} GROUP BY {listed} HAVING COUNT(*) > 1",
            limit=DUPLICATE_SAMPLE,
        )
        if found:
            sample = [(tuple(_plain(v) for v in row[:-1]), int(row[-1])) for row in found]
            raise MergeError(describe_duplicates(self.sequence, keys, sample))

    # -- the transaction ----------------------------------------------------------------------------
    def ddl(self, conn: Any, incoming: Sequence[str]) -> list[str]:
        """Creating a missing target from the staged columns (the keys its primary key), or the schema changes."""
        q, d = self.dialect.quote, self.dialect
        if not self.exists:
            columns = [c for c in incoming if c != DELETE_FLAG]
            out = [d.create_empty.format(table=self.table, columns=", ".join(map(q, columns)), source=self.staging)]
            if d.primary_key is not None:
                keys = ", ".join(q(_find(columns, k) or k) for k in self.merge.keys)
                out.append(d.primary_key.format(table=self.table, keys=keys))
            return out
        types = dict(columns_of(conn, self.staging)) if self.changes.added else {}
        out = [
            d.add_column.format(table=self.table, column=q(c), type=types.get(c) or _typed(types, c))
            for c in self.changes.added
        ]
        out += [d.drop_column.format(table=self.table, column=q(c)) for c in self.changes.dropped]
        return out

    def tables(self, incoming: Sequence[str]) -> MergeTables:
        """The merge's columns: each incoming column paired with the target's column of that name."""
        columns = [c for c in incoming if c != DELETE_FLAG]
        if not self.exists:
            target_names = list(columns)
        else:
            dropped = {c.lower() for c in self.changes.dropped}
            target_names = [c for c in self.target_columns if c.lower() not in dropped] + list(self.changes.added)
        pairs = tuple((_find(target_names, c) or c, c) for c in columns)
        by_incoming = {sc.lower(): (tc, sc) for tc, sc in pairs}
        keys = tuple(by_incoming[k.lower()] for k in self.merge.keys)
        updated = tuple(by_incoming[c.lower()] for c in self.merge.updated_columns(columns))
        return MergeTables(
            target=self.table,
            staging=self.staging,
            columns=pairs,
            keys=keys,
            updated=updated,
            condition=self.merge.condition,
            delete_flag=DELETE_FLAG if DELETE_FLAG in incoming else None,
        )

    def commit(self, conn: Any, incoming: Sequence[str], steps: Sequence[CommitStep] = ()) -> dict[str, int]:
        """Merge the staged rows into the target in one transaction on ``conn`` (left open); return
        ``rows_inserted``, ``rows_updated``, ``rows_deleted``."""
        ddl = self.ddl(conn, incoming)
        statements = self.dialect.merge_sql(self.tables(incoming))
        if ddl and self.dialect.ddl_commits:
            _run(conn, ddl)
            ddl = []
        counts = {"rows_inserted": 0, "rows_updated": 0, "rows_deleted": 0}
        conn.setAutoCommit(False)
        try:
            _run(conn, ddl)
            stmt = conn.createStatement()
            try:
                for statement in statements:
                    if statement.counts == "probe":
                        [[rows, matched]] = _statement_rows(conn, statement.sql)
                        counts["rows_inserted"] = int(rows) - int(matched)
                        counts["rows_updated"] = int(matched)
                        continue
                    if statement.counts == "upserted_returning":
                        [[inserted, updated]] = _statement_rows(conn, statement.sql)
                        counts["rows_inserted"], counts["rows_updated"] = int(inserted or 0), int(updated or 0)
                        continue
                    done = int(stmt.executeUpdate(statement.sql))
                    if statement.counts == "upserted":
                        counts["rows_updated"] = done - counts["rows_inserted"]
                    elif statement.counts != "upserted_unknown":
                        counts[f"rows_{statement.counts}"] += done
            finally:
                stmt.close()
            for step in steps:
                step(conn)
            conn.commit()
        except Exception:
            conn.rollback()
            raise
        finally:
            conn.setAutoCommit(True)
        return counts


def _plain(value: Any) -> Any:
    """A value the driver returned, as Python shows it (a Java object as its text)."""
    return value if value is None or isinstance(value, (int, float, str, bool)) else str(value)


def _typed(types: dict[str, str], column: str) -> str:
    """The staged type of ``column`` whatever the case the driver reports its name in."""
    found = _find(list(types), column)
    if found is None:
        raise MergeError(f"the staging table has no column {column!r} to add to the target")
    return types[found]


def _run(conn: Any, statements: Sequence[str]) -> None:
    stmt = conn.createStatement()
    try:
        for sql in statements:
            stmt.execute(sql)
    finally:
        stmt.close()
