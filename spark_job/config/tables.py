"""Canonical identities of tables: a database's through JDBC (read with its dialect,
:mod:`spark_job.dialects`) and the session catalog's. Two spellings of one table give one string.

Standard library only: the Airflow provider validates configs with it at DAG parse time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from spark_job.dialects import dialect_of
from spark_job.dialects import subprotocol as jdbc_subprotocol

__all__ = [
    "canonical_catalog_table",
    "canonical_jdbc_table",
    "canonical_jdbc_url",
    "derived_table_name",
    "jdbc_identifier_limit",
    "jdbc_parameters",
    "jdbc_subprotocol",
    "jdbc_table_identity",
    "join_identifier",
    "split_identifier",
]


def canonical_jdbc_url(url: str, fold_loopback: bool = False) -> str:
    """The database a JDBC URL reaches: subprotocol, hosts and ports (defaults filled in), database;
    credentials and connection parameters left out. ``fold_loopback`` (identities only: names such as
    lineage namespaces keep the host as written) makes every loopback name ``localhost``."""
    return dialect_of(url).canonical_url(url, fold_loopback)


def jdbc_parameters(url: str) -> dict[str, str]:
    """The connection parameters of a JDBC URL (see :meth:`spark_job.dialects.Dialect.parameters`)."""
    return dialect_of(url).parameters(url)


def split_identifier(name: str) -> list[tuple[str, bool]]:
    """``a."B c".[d]`` -> ``[("a", False), ("B c", True), ("d", True)]``: (part, quoted)."""
    parts: list[tuple[str, bool]] = []
    closers = {'"': '"', "`": "`", "[": "]"}
    i, n = 0, len(name)
    while True:
        while i < n and name[i] == " ":
            i += 1
        if i < n and name[i] in closers:
            close, i = closers[name[i]], i + 1
            text: list[str] = []
            while i < n:
                if name[i] == close:
                    if i + 1 < n and name[i + 1] == close:  # a doubled quote inside a quoted name
                        text.append(close)
                        i += 2
                        continue
                    i += 1
                    break
                text.append(name[i])
                i += 1
            parts.append(("".join(text), True))
            while i < n and name[i] != ".":  # whatever follows a closing quote up to the next dot
                i += 1
        else:
            j = name.find(".", i)
            j = n if j < 0 else j
            parts.append((name[i:j].strip(), False))
            i = j
        if i >= n:
            return parts
        i += 1  # the dot


def join_identifier(parts: Iterable[str]) -> str:
    """Parts joined by dots; a part holding a dot or a quote is quoted, so the result is unambiguous."""
    return ".".join('"' + p.replace('"', '""') + '"' if ("." in p or '"' in p) else p for p in parts)


def canonical_jdbc_table(url: str, table: str, user: str | None = None, params: Mapping[str, Any] | None = None) -> str:
    """``[catalog.][schema.]table`` with the database's case rules and its default schema filled in:
    the schema the connection names (``params``: the target's options), else the database's default,
    else the user's own schema (Oracle, DB2) or the URL's database (MySQL)."""
    dialect = dialect_of(url)  # no dialect: the conservative comparison, case-insensitive
    parts = [dialect.fold(part, quoted) for part, quoted in split_identifier(table)]
    if len(parts) == 1:
        schema = None
        if dialect.schema_parameter is not None:
            named = {**dialect.parameters(url), **{str(k): str(v) for k, v in (params or {}).items()}}
            schema = dialect.schema_parameter(named)
        schema = schema or dialect.default_schema
        if schema is None and dialect.user_schema and user:
            schema = user.upper()  # the user's own schema
        if schema is None and dialect.database_is_schema:
            schema = canonical_jdbc_url(url).rsplit("/", 1)[-1]  # the URL's database
        if schema is not None:
            parts.insert(0, schema.lower() if dialect.folding == "insensitive" else schema)
    return join_identifier(parts)


def jdbc_table_identity(url: str, table: str, user: str | None = None, params: Mapping[str, Any] | None = None) -> str:
    """One string per database table, however the URL and the name spell it: the server, then the
    table as :func:`canonical_jdbc_table` folds it. Where a qualified name reaches another database of
    the same server (MySQL's schema is its database; SQL Server's ``db.schema.table``), the URL's
    database gives way to the name's."""
    dialect = dialect_of(url)
    where = canonical_jdbc_url(url, fold_loopback=True)
    name = canonical_jdbc_table(url, table, user, params)
    if dialect.database_is_schema:
        where = where.rsplit("/", 1)[0]  # the table's schema (filled from the URL's database) says which
    elif dialect.three_part_names and len(split_identifier(table)) == 3:
        database, _, name = name.partition(".")
        where = f"{where.rsplit('/', 1)[0]}/{database}"
    return f"{where}/{name}"


def jdbc_identifier_limit(url: str) -> int:
    """The longest identifier the URL's database accepts (30 for a database without a dialect)."""
    return dialect_of(url).identifier_limit


def derived_table_name(table: str, url: str, role: str) -> str:
    """A table name beside ``table`` for ``role`` (``stage``, ``prev``) that fits the database's limit.

    The last part of ``table`` keeps as much of its name as fits, followed by a hash of the target's
    canonical identity: two targets never share a staging table, even when their names only differ
    past the limit, and the name is never truncated back to the target's own by the database.
    """
    parts = table.rsplit(".", 1)
    prefix, name = (parts[0] + ".", parts[1]) if len(parts) == 2 else ("", parts[0])
    digest = hashlib.sha256(f"{canonical_jdbc_url(url)}/{canonical_jdbc_table(url, table)}".encode()).hexdigest()[:8]
    suffix = f"__sp{role}_{digest}"
    keep = max(jdbc_identifier_limit(url) - len(suffix), 1)
    return prefix + name.encode()[:keep].decode(errors="ignore") + suffix


def canonical_catalog_table(table: str) -> str:
    """``t``, ``default.t``, ``spark_catalog.default.t`` and ```T``` are one table (Spark's default
    case-insensitive analysis; an unqualified name is taken to be in ``default``)."""
    parts = [p.lower() for p, _ in split_identifier(table)]
    if len(parts) == 1:
        parts.insert(0, "default")
    if len(parts) == 2:
        parts.insert(0, "spark_catalog")
    return join_identifier(parts)
