"""JDBC dialects: what differs between databases, one frozen object per database in a registry.

Each :class:`Dialect` says how a database is reached (subprotocols, driver class, default port, how
its URL names the database and schema), how it reads names (quotes, length limit, case folding,
default schema) and how sparkpipe writes to it (the statements that rename a staging table into
place, the lease, the upsert form of ``mode: merge``). Code asks the dialect instead of comparing
subprotocols. Standard library only: the config package (no pyspark) reads identities with it.

Other databases are added with :func:`register` or an entry point of the group
``sparkpipe.jdbc_dialects`` whose object is a :class:`Dialect`. How URLs are read is in
:mod:`spark_job.jdbc_urls`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from spark_job.jdbc_urls import (
    URL_FORMS,
    current_schema,
    host_port,
    schema_setting,
    search_path_schema,
    subprotocol,
    url_body,
)
from spark_job.merge_sql import DELETE_JOINS, UPDATE_JOINS, MergeStatement, MergeTables, merge_statements
from spark_job.registry import group_entry_points

FOLDINGS = ("lower", "upper", "insensitive")
RENAMES = ("alter_table", "rename_table", "sp_rename")
LEASES = ("advisory", "table")
UPSERTS = ("on_conflict", "on_duplicate_key", "update_insert")


@dataclass(frozen=True)
class Dialect:
    """One database as sparkpipe speaks to it through JDBC.

    Attributes:
        name: the database's name, as messages say it.
        subprotocols: the JDBC subprotocols that name it (``jdbc:<subprotocol>:...``).
        driver: the JDBC driver class loaded when the config names none (a jar given through
            ``spark.jars`` is invisible to ``DriverManager``'s lookup by URL); None: that lookup.
        default_port: the port a URL without one reaches; None for databases that are not network
            servers (H2 in memory, SQLite files) or unknown ones.
        url_form: how its URLs name the server and the database: ``slash``
            (``//host:port/database``), ``oracle`` (``@host:port:SID``, ``@//host/service``) or
            ``sqlserver`` (``//host;databaseName=...``).
        parameters_after_database: connection parameters follow the database after a ``:`` and end
            with ``;`` (DB2: ``//h/db:currentSchema=S;``); otherwise ``?k=v&k=v`` or ``;k=v``.
        database_case_insensitive: a URL's database compares case-insensitively.
        quotes: the opening and closing quote of a quoted identifier.
        identifier_limit: the longest identifier the database accepts, in bytes (30 where unknown:
            every database accepts that much).
        folding: how unquoted names compare: ``lower`` or ``upper`` (folded, quoted names exact),
            ``insensitive`` (every name, quoted too).
        default_schema: the schema of an unqualified table when the connection names none.
        user_schema: an unqualified table is in the schema of the connecting user (Oracle, DB2).
        database_is_schema: a schema is a database of the server, an unqualified table is in the
            URL's database, and a qualified one may name another database (MySQL, MariaDB).
        three_part_names: ``database.schema.table`` names a table of another database of the
            server (SQL Server).
        schema_parameter: reads the schema an unqualified table goes to from the connection's
            parameters (the URL's and the options'), when the database has such a parameter.
        rename: how a table is renamed within its schema: ``alter_table`` (``ALTER TABLE t RENAME TO
            n``), ``rename_table`` (``RENAME TABLE``; MySQL's renames several tables atomically) or
            ``sp_rename`` (SQL Server).
        atomic_swap: one ``RENAME TABLE`` statement swaps the target and the staging table (MySQL
            commits DDL at once, so two statements would not be atomic there).
        lease: how a staged write keeps other runs out by default: ``advisory`` (a session
            advisory lock: PostgreSQL) or ``table`` (a row of the ``sparkpipe_leases`` table).
        upsert: the statement form ``mode: merge`` writes the staged rows into the target with:
            ``on_conflict`` (``INSERT ... ON CONFLICT (keys) DO UPDATE``), ``on_duplicate_key``
            (``INSERT ... ON DUPLICATE KEY UPDATE``) or ``update_insert`` (a portable ``UPDATE`` of
            the matching rows, then ``INSERT`` of the others, in one transaction). The statements
            themselves are written by :mod:`spark_job.merge_sql`; this says which form each database takes.
        delete_join: how a DELETE of the target's rows matching staged rows is written: ``exists`` (``DELETE
            FROM t WHERE EXISTS (...)``), ``using`` (``DELETE FROM t USING s``) or ``join`` (``DELETE t FROM
            t JOIN s``).
        update_join: how an UPDATE from staged rows is written: ``correlated`` (one subquery per column),
            ``from`` (``UPDATE t SET ... FROM s``) or ``join`` (``UPDATE t JOIN s ... SET``).
        create_empty: the statement creating ``{table}`` with the ``{columns}`` of ``{source}`` and no row.
        primary_key: the statement making ``{keys}`` the primary key of ``{table}``; None where a table
            cannot get one after it was created (the merge then relies on the keys being unique).
        add_column: the statement adding ``{column}`` of type ``{type}`` to ``{table}``.
        drop_column: the statement dropping ``{column}`` of ``{table}``.
        key_text_type: the type a text merge key is staged with when the database's text type cannot be a
            key (MySQL's TEXT), as Spark's ``createTableColumnTypes`` reads it.
        ddl_commits: a DDL statement commits the transaction at once (MySQL, MariaDB): the statements
            creating or altering a merge's target run before its transaction.
        inserted_flag: with ``upsert: on_conflict``, a boolean over the rows an upsert returns that is true for
            an inserted row (PostgreSQL ``(xmax = 0)``): the upsert then counts what it did in one statement;
            None: the staged rows matching a target row are counted before it.
        spark_subprotocol: the subprotocol of the URL handed to Spark, when Spark has no dialect of
            its own for this one (MariaDB goes as ``jdbc:mysql:``, for which Spark uses its MySQL dialect).
        spark_parameter: the parameter added to that URL (``permitMysqlScheme=true``: MariaDB
            Connector/J then takes the ``jdbc:mysql:`` URL); it tells such a URL apart.
        lineage_namespace: the scheme of its datasets' namespace in OpenLineage's naming
            (``postgres://host:port``); None: the subprotocol.
    """

    name: str
    subprotocols: tuple[str, ...]
    driver: str | None = None
    default_port: int | None = None
    url_form: str = "slash"
    parameters_after_database: bool = False
    database_case_insensitive: bool = False
    quotes: tuple[str, str] = ('"', '"')
    identifier_limit: int = 30
    folding: str = "insensitive"
    default_schema: str | None = None
    user_schema: bool = False
    database_is_schema: bool = False
    three_part_names: bool = False
    schema_parameter: Callable[[Mapping[str, str]], str | None] | None = field(default=None, compare=False)
    rename: str = "alter_table"
    atomic_swap: bool = False
    lease: str = "table"
    upsert: str = "update_insert"
    delete_join: str = "exists"
    update_join: str = "correlated"
    create_empty: str = "CREATE TABLE {table} AS SELECT {columns} FROM {source} WHERE 1 = 0"
    primary_key: str | None = "ALTER TABLE {table} ADD PRIMARY KEY ({keys})"
    add_column: str = "ALTER TABLE {table} ADD COLUMN {column} {type}"
    drop_column: str = "ALTER TABLE {table} DROP COLUMN {column}"
    key_text_type: str | None = None
    ddl_commits: bool = False
    inserted_flag: str | None = None
    spark_subprotocol: str | None = None
    spark_parameter: str = ""
    lineage_namespace: str | None = None

    def __post_init__(self) -> None:
        for attr, allowed in (
            ("folding", FOLDINGS),
            ("rename", RENAMES),
            ("lease", LEASES),
            ("upsert", UPSERTS),
            ("delete_join", DELETE_JOINS),
            ("update_join", UPDATE_JOINS),
        ):
            if getattr(self, attr) not in allowed:
                raise ValueError(f"dialect {self.name}: {attr} must be one of {', '.join(allowed)}")
        if self.url_form not in URL_FORMS:
            raise ValueError(f"dialect {self.name}: url_form must be one of {', '.join(URL_FORMS)}")

    # -- names ---------------------------------------------------------------------------------
    def quote(self, name: str) -> str:
        """``name`` as a quoted identifier (a closing quote inside it doubled)."""
        opening, closing = self.quotes
        return opening + name.replace(closing, closing * 2) + closing

    def fold(self, part: str, quoted: bool) -> str:
        """One part of a name as the database compares it."""
        if self.folding == "insensitive" or (not quoted and self.folding == "lower"):
            return part.lower()
        if not quoted and self.folding == "upper":
            return part.upper()
        return part

    # -- URLs ----------------------------------------------------------------------------------
    def canonical_url(self, url: str, fold_loopback: bool = False) -> str:
        """The database ``url`` reaches: subprotocol, hosts and ports (defaults filled in), database;
        credentials and connection parameters left out."""
        sub = subprotocol(url)
        body = url_body(url)
        located = URL_FORMS[self.url_form](self, body, fold_loopback)
        if located is not None:
            return f"jdbc:{sub}:{located}"
        # jdbc:postgresql:database (the local server), jdbc:h2:mem:x, jdbc:sqlite:file: no host part
        rest = body.split("?", 1)[0].split(";", 1)[0]
        if self.default_port is not None:
            return f"jdbc:{sub}://{host_port('localhost', self.default_port, fold_loopback)}/{rest}"
        return f"jdbc:{sub}:{rest}"

    def parameters(self, url: str) -> dict[str, str]:
        """The connection parameters of ``url``: ``?k=v&k=v`` (PostgreSQL, MySQL), ``;k=v`` (SQL
        Server, H2), ``:k=v;`` after the database (DB2)."""
        body = url_body(url)
        if self.parameters_after_database:
            tail = body.split("/", 3)[-1].partition(":")[2] if body.startswith("//") else ""
            pairs = tail.split(";")
        elif "?" in body:
            pairs = body.split("?", 1)[1].split("&")
        else:
            pairs = body.split(";")[1:]
        params: dict[str, str] = {}
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if eq and key.strip():
                params[key.strip()] = unquote(value.strip())
        return params

    def spark_url(self, url: str) -> str:
        """The URL handed to Spark for ``url`` (the same, unless Spark needs another subprotocol)."""
        if self.spark_subprotocol is None or subprotocol(url) not in self.subprotocols:
            return url
        rest = url_body(url)
        if self.spark_parameter:
            rest = f"{rest}{'&' if '?' in rest else '?'}{self.spark_parameter}"
        return f"jdbc:{self.spark_subprotocol}:{rest}"

    # -- writes --------------------------------------------------------------------------------
    def rename_sql(self, table: str, new_name: str) -> str:
        """The statement renaming ``table`` (qualified as written) to ``new_name`` (unqualified) in
        the same schema."""
        if self.rename == "rename_table" and self.database_is_schema:
            # MySQL: RENAME TABLE takes a qualified new name (unqualified, it goes to the connection's database)
            prefix = table.rsplit(".", 1)[0] + "." if "." in table else ""
            return f"RENAME TABLE {table} TO {prefix}{new_name}"
        if self.rename == "rename_table":
            return f"RENAME TABLE {table} TO {new_name}"
        if self.rename == "sp_rename":
            return f"EXEC sp_rename '{table.replace(chr(39), chr(39) * 2)}', '{new_name.replace(chr(39), chr(39) * 2)}'"
        return f"ALTER TABLE {table} RENAME TO {new_name}"

    def swap_sql(self, table: str, staging: str, previous: str) -> tuple[str, ...]:
        """The statements, run in one transaction, that put ``staging`` in place of the existing
        ``table`` and drop the old rows (``previous`` is the name the old table passes through)."""
        unqualified = table.rsplit(".", 1)[-1]
        if self.atomic_swap:
            return (
                f"DROP TABLE IF EXISTS {previous}",
                f"RENAME TABLE {table} TO {previous}, {staging} TO {table}",
                f"DROP TABLE {previous}",
            )
        return (
            f"DROP TABLE IF EXISTS {previous}",
            self.rename_sql(table, previous.rsplit(".", 1)[-1]),
            self.rename_sql(staging, unqualified),
            f"DROP TABLE {previous}",
        )

    def merge_sql(self, tables: MergeTables) -> tuple[MergeStatement, ...]:
        """The statements, run in one transaction, that merge the staged rows into the target (``mode: merge``)."""
        return merge_statements(self, tables)

    @property
    def advisory_locks(self) -> bool:
        """Whether the database has session advisory locks (``lease: advisory``)."""
        return self.lease == "advisory"


_MYSQL = Dialect(
    "MySQL",
    ("mysql",),
    driver="com.mysql.cj.jdbc.Driver",
    default_port=3306,
    database_case_insensitive=True,
    quotes=("`", "`"),
    identifier_limit=64,
    database_is_schema=True,
    rename="rename_table",
    atomic_swap=True,
    upsert="on_duplicate_key",
    delete_join="join",
    update_join="join",
    key_text_type="VARCHAR(255)",
    ddl_commits=True,
    lineage_namespace="mysql",
)
"""MySQL; MariaDB is the same database reached through its own driver (below)."""


GENERIC = Dialect("a database", subprotocols=("",))
"""Any database without a dialect of its own: conservative (names compare case-insensitively,
identifiers of at most 30 bytes, no default schema, a lease table, a portable upsert)."""

BUILT_IN = (
    Dialect(
        "PostgreSQL",
        ("postgresql",),
        driver="org.postgresql.Driver",
        default_port=5432,
        identifier_limit=63,
        folding="lower",
        default_schema="public",
        schema_parameter=search_path_schema,
        lease="advisory",
        upsert="on_conflict",
        inserted_flag="(xmax = 0)",
        delete_join="using",
        update_join="from",
        lineage_namespace="postgres",
    ),
    Dialect(
        "Amazon Redshift",
        ("redshift",),
        default_port=5439,
        identifier_limit=127,
        folding="lower",
        default_schema="public",
        schema_parameter=search_path_schema,
        lineage_namespace="redshift",
    ),
    _MYSQL,
    dataclasses.replace(
        _MYSQL,
        name="MariaDB",
        subprotocols=("mariadb",),
        driver="org.mariadb.jdbc.Driver",
        spark_subprotocol="mysql",
        spark_parameter="permitMysqlScheme=true",
    ),
    Dialect(
        "SQL Server",
        ("sqlserver",),
        driver="com.microsoft.sqlserver.jdbc.SQLServerDriver",
        default_port=1433,
        url_form="sqlserver",
        database_case_insensitive=True,
        quotes=("[", "]"),
        identifier_limit=128,
        default_schema="dbo",
        three_part_names=True,
        rename="sp_rename",
        create_empty="SELECT {columns} INTO {table} FROM {source} WHERE 1 = 0",
        add_column="ALTER TABLE {table} ADD {column} {type}",
        lineage_namespace="mssql",
    ),
    Dialect(
        "Oracle",
        ("oracle",),
        driver="oracle.jdbc.OracleDriver",
        default_port=1521,
        url_form="oracle",
        database_case_insensitive=True,
        identifier_limit=30,  # 128 since 12.2; 30 fits every version
        folding="upper",
        user_schema=True,
        add_column="ALTER TABLE {table} ADD ({column} {type})",
        lineage_namespace="oracle",
    ),
    Dialect(
        "DB2",
        ("db2",),
        driver="com.ibm.db2.jcc.DB2Driver",
        default_port=50000,
        parameters_after_database=True,
        identifier_limit=128,
        folding="upper",
        user_schema=True,
        schema_parameter=current_schema,
        rename="rename_table",
        create_empty="CREATE TABLE {table} AS (SELECT {columns} FROM {source}) WITH NO DATA",
        lineage_namespace="db2",
    ),
    Dialect(
        "H2",
        ("h2",),
        driver="org.h2.Driver",
        folding="upper",
        default_schema="PUBLIC",
        schema_parameter=schema_setting,
    ),
    Dialect("SQLite", ("sqlite",), driver="org.sqlite.JDBC", upsert="on_conflict", primary_key=None),
)


class Dialects:
    """Subprotocol → dialect; the built-ins, then the ``sparkpipe.jdbc_dialects`` entry points (loaded on
    first lookup); an unknown subprotocol gets :data:`GENERIC`."""

    group = "sparkpipe.jdbc_dialects"

    def __init__(self, dialects: tuple[Dialect, ...] = ()) -> None:
        self._by_subprotocol: dict[str, Dialect] = {}
        self._plugins_loaded = False
        for dialect in dialects:
            self.register(dialect)

    def register(self, dialect: Dialect) -> Dialect:
        for sub in dialect.subprotocols:
            self._by_subprotocol[sub.lower()] = dialect
        return dialect

    def _load_plugins(self) -> None:
        self._plugins_loaded = True
        for ep in group_entry_points(self.group):
            dialect = ep.load()
            if not isinstance(dialect, Dialect):
                raise TypeError(f"entry point {ep.name} of {self.group} is not a Dialect: {dialect!r}")
            self.register(dialect)

    def get(self, sub: str) -> Dialect:
        """The dialect of the subprotocol ``sub`` (:data:`GENERIC` when none has it)."""
        dialect = self._by_subprotocol.get(sub)
        if dialect is None and not self._plugins_loaded:
            self._load_plugins()
            dialect = self._by_subprotocol.get(sub)
        return dialect or GENERIC

    def of_url(self, url: str) -> Dialect:
        """The dialect of a JDBC URL as the config writes it."""
        return self.get(subprotocol(url))

    def of_spark_url(self, url: str) -> Dialect:
        """The dialect of a URL as handed to Spark (see :meth:`Dialect.spark_url`): a MariaDB URL goes as
        ``jdbc:mysql:...permitMysqlScheme=true``."""
        sub = subprotocol(url)
        for other in self._by_subprotocol.values():
            marker = other.spark_parameter.lower()
            if other.spark_subprotocol == sub and marker and marker.split("=", 1)[0] in url.lower():
                return other
        return self.get(sub)

    def all(self) -> list[Dialect]:
        if not self._plugins_loaded:
            self._load_plugins()
        return list(dict.fromkeys(self._by_subprotocol.values()))


dialects = Dialects(BUILT_IN)


def register(dialect: Dialect) -> Dialect:
    """Add (or replace) the dialect of ``dialect.subprotocols``."""
    return dialects.register(dialect)


def dialect_of(url: str) -> Dialect:
    """The dialect of a JDBC URL (:data:`GENERIC` for a database without one)."""
    return dialects.of_url(url)
