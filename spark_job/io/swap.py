"""Safe replacement of targets: write beside the target, then swap, so no reader sees a partial result.

Path targets: the new data is written to ``.<name>.sparkpipe-staging`` next to the target; once the
write committed, the target is renamed to ``.<name>.sparkpipe-previous``, the staging folder to the
target, and the previous folder is deleted. A run killed while writing leaves the target untouched;
a run killed between the two renames (a few milliseconds) leaves the previous data aside, and the next
run puts it back before doing anything else.

JDBC targets: the new rows go to a staging table whose name fits the database's identifier limit; the
swap (overwrite) or the copy into the target (append, or overwrite with ``truncate``) happens in one
database transaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from spark_job.config.tables import canonical_jdbc_url, derived_table_name
from spark_job.engine.capabilities import capabilities_of
from spark_job.io.filesystems import Files

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STAGING_SUFFIX = ".sparkpipe-staging"
"""A path target's new data is written to ``.<name><suffix>`` beside it."""
PREVIOUS_SUFFIX = ".sparkpipe-previous"
"""A path target's old data is moved to ``.<name><suffix>`` beside it while the new data takes its place."""
SPARK_STAGING_PREFIX = ".spark-staging-"
"""Where Spark's dynamic partition overwrite stages a job's files, inside the target."""


class PathSwap:
    """Staging and swapping one directory target (a qualified URI) on one filesystem."""

    def __init__(self, files: Files, target: str) -> None:
        self.files = files
        self.target = target.rstrip("/")
        parent, _, name = self.target.rpartition("/")
        if not name or not parent:
            raise ValueError(f"{target}: a target must be a folder below the filesystem's root")
        self.parent = parent
        self.staging_uri = f"{parent}/.{name}{STAGING_SUFFIX}"
        self.previous_uri = f"{parent}/.{name}{PREVIOUS_SUFFIX}"

    def recover(self) -> None:
        """Undo what a killed run left: restore the previous data if the target is missing, drop the
        staging folders (ours beside the target, Spark's inside it)."""
        if not self.files.exists(self.target) and self.files.exists(self.previous_uri):
            self.files.rename(self.previous_uri, self.target)
        self.files.delete(self.staging_uri)
        self.files.delete(self.previous_uri)
        self.drop_spark_staging()

    def drop_spark_staging(self) -> None:
        """Delete Spark's own job folders left inside the target by a killed or failed job."""
        for name in self.files.list_names(self.target):
            if name.startswith(SPARK_STAGING_PREFIX) or name == "_temporary":
                self.files.delete(f"{self.target}/{name}")

    def discard(self) -> None:
        """Drop the staged data; the target is left as it was."""
        self.files.delete(self.staging_uri)

    def commit(self) -> None:
        """Put the staged data in place of the target."""
        self.files.mkdirs(self.parent)
        had_target = self.files.exists(self.target)
        if had_target and not self.files.rename(self.target, self.previous_uri):
            raise OSError(f"could not move {self.target} aside to replace it")
        if not self.files.rename(self.staging_uri, self.target):
            if had_target:
                self.files.rename(self.previous_uri, self.target)
            raise OSError(f"could not move the new data {self.staging_uri} to {self.target}")
        self.files.delete(self.previous_uri)


_DRIVERS = {
    "postgresql": "org.postgresql.Driver",
    "mysql": "com.mysql.cj.jdbc.Driver",
    "mariadb": "org.mariadb.jdbc.Driver",
    "sqlserver": "com.microsoft.sqlserver.jdbc.SQLServerDriver",
    "oracle": "oracle.jdbc.OracleDriver",
    "db2": "com.ibm.db2.jcc.DB2Driver",
    "h2": "org.h2.Driver",
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*){0,2}$")


def jdbc_driver(url: str, driver: str | None) -> str | None:
    if driver:
        return driver
    sub = url.split(":", 2)[1] if url.count(":") >= 2 else ""
    if sub == "mysql" and "permitmysqlscheme" in url.lower():  # a MariaDB Connector/J URL (spark_jdbc_url)
        return _DRIVERS["mariadb"]
    return _DRIVERS.get(sub)


def spark_jdbc_url(url: str) -> str:
    """The URL handed to Spark for ``url``.

    Spark has no dialect for ``jdbc:mariadb:`` URLs: its default one quotes names with double quotes,
    which MariaDB reads as strings (a read returns the column names as values, a write fails). MariaDB
    Connector/J takes the same URL as ``jdbc:mysql:`` with ``permitMysqlScheme``, for which Spark
    uses its MySQL dialect (backticks, MySQL's types), as for MySQL itself.
    """
    if not url.lower().startswith("jdbc:mariadb:"):
        return url
    rest = url[len("jdbc:mariadb:") :]
    return f"jdbc:mysql:{rest}{'&' if '?' in rest else '?'}permitMysqlScheme=true"


def staging_table(table: str, url: str) -> str:
    """The staging table of ``table``: beside it, within the database's identifier limit, and the same
    for every spelling of the URL's server (``127.0.0.1``/``localhost``), so that the next write of the
    target replaces one a killed run left."""
    return derived_table_name(table, canonical_jdbc_url(url, fold_loopback=True), "stage")


def previous_table(table: str, url: str) -> str:
    return derived_table_name(table, canonical_jdbc_url(url, fold_loopback=True), "prev")


def plain_table_name(table: str) -> bool:
    """Whether ``table`` is ``[catalog.][schema.]name`` of plain identifiers, safe to splice into DDL."""
    return bool(_NAME.match(table))


def table_exists(conn: Any, table: str) -> bool:
    """Whether ``table`` can be read on the JDBC connection ``conn`` (a query that returns no row)."""
    stmt = conn.createStatement()
    try:
        stmt.executeQuery(f"SELECT 1 FROM {table} WHERE 1 = 0").close()
        return True
    except Exception:
        return False
    finally:
        stmt.close()


class JdbcSwap:
    """The transactional end of a staged JDBC write, through the JVM's JDBC driver."""

    def __init__(self, spark: SparkSession, options: dict[str, str]) -> None:
        session = capabilities_of(spark)
        jvm = session.jvm()
        if jvm is None:
            raise RuntimeError(f"a {session.describe()} has no JDBC driver in this process to swap tables with")
        self.jvm = jvm
        self.url = options["url"]
        self.table = options["dbtable"]
        self.options = options
        self.staging = staging_table(self.table, self.url)
        self.previous = previous_table(self.table, self.url)

    def connect(self) -> Any:
        driver = jdbc_driver(self.url, self.options.get("driver"))
        if driver:
            # Drivers from spark.jars live in Spark's class loader: register them as Spark itself does.
            self.jvm.org.apache.spark.sql.execution.datasources.jdbc.DriverRegistry.register(driver)
        props = self.jvm.java.util.Properties()
        for key in ("user", "password"):
            if key in self.options:
                props.setProperty(key, self.options[key])
        return self.jvm.java.sql.DriverManager.getConnection(self.url, props)

    def drop_staging(self, conn: Any) -> None:
        stmt = conn.createStatement()
        try:
            stmt.execute(f"DROP TABLE IF EXISTS {self.staging}")
        finally:
            stmt.close()

    def commit(self, conn: Any, mode: str, keep_definition: bool, steps: Sequence[Callable[[Any], None]] = ()) -> None:
        """Move the staged rows into the target in one transaction on ``conn`` (left open).

        ``overwrite`` renames the staging table in place of the target (or, with ``keep_definition``,
        deletes the target's rows and copies the staged ones, keeping its indexes and grants);
        ``append`` copies the staged rows. The staging table is dropped in the same transaction. The
        target is renamed or emptied only in the transaction that brings the new rows. Each of ``steps`` runs
        on ``conn`` just before the commit (on MySQL a swap's renames have committed by then).
        """
        name = self.table.rsplit(".", 1)[-1]
        previous_name = self.previous.rsplit(".", 1)[-1]
        mysql = self.url.lower().startswith(("jdbc:mysql:", "jdbc:mariadb:"))
        exists = table_exists(conn, self.table)
        conn.setAutoCommit(False)
        try:
            stmt = conn.createStatement()
            if not exists and mysql:
                # ALTER TABLE db.x RENAME TO y would move the table to the connection's database.
                stmt.execute(f"RENAME TABLE {self.staging} TO {self.table}")
            elif not exists:
                stmt.execute(f"ALTER TABLE {self.staging} RENAME TO {name}")
            elif mode == "append" or keep_definition:
                if mode == "overwrite":
                    stmt.execute(f"DELETE FROM {self.table}")
                stmt.execute(f"INSERT INTO {self.table} SELECT * FROM {self.staging}")
                stmt.execute(f"DROP TABLE {self.staging}")
            elif mysql:
                # MySQL commits DDL at once; its multi-table RENAME is the one atomic swap it has.
                stmt.execute(f"DROP TABLE IF EXISTS {self.previous}")
                stmt.execute(f"RENAME TABLE {self.table} TO {self.previous}, {self.staging} TO {self.table}")
                stmt.execute(f"DROP TABLE {self.previous}")
            else:
                stmt.execute(f"DROP TABLE IF EXISTS {self.previous}")
                stmt.execute(f"ALTER TABLE {self.table} RENAME TO {previous_name}")
                stmt.execute(f"ALTER TABLE {self.staging} RENAME TO {name}")
                stmt.execute(f"DROP TABLE {self.previous}")
            for step in steps:
                step(conn)
            conn.commit()
        except Exception:
            conn.rollback()
            raise
        finally:
            conn.setAutoCommit(True)
