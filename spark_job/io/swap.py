"""Safe replacement of targets: write beside the target, then swap, so no reader sees a partial result.

Path targets: the new data is written to ``.<name>.sparkpipe-staging`` next to the target; once the
write committed, the target is renamed to ``.<name>.sparkpipe-previous``, the staging folder to the
target, and the previous folder is deleted. A run killed while writing leaves the target untouched;
a run killed between the two renames (a few milliseconds) leaves the previous data aside, and the next
run puts it back before doing anything else.

JDBC targets: the new rows go to a staging table; the swap (overwrite) or the copy into the target
(append, or overwrite with ``truncate``) happens in one database transaction.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STAGING_SUFFIX = ".sparkpipe-staging"
PREVIOUS_SUFFIX = ".sparkpipe-previous"


class PathSwap:
    """Staging and swapping one directory target through Hadoop's FileSystem (any scheme)."""

    def __init__(self, spark: SparkSession, uri: str) -> None:
        jvm = spark.sparkContext._jvm
        assert jvm is not None
        conf = spark.sparkContext._jsc.hadoopConfiguration()
        path = jvm.org.apache.hadoop.fs.Path(uri)
        self.fs = path.getFileSystem(conf)
        self.target = self.fs.makeQualified(path)
        parent, name = self.target.getParent(), self.target.getName()
        self.staging = jvm.org.apache.hadoop.fs.Path(parent, f".{name}{STAGING_SUFFIX}")
        self.previous = jvm.org.apache.hadoop.fs.Path(parent, f".{name}{PREVIOUS_SUFFIX}")
        self.parent = parent

    @property
    def staging_uri(self) -> str:
        return str(self.staging.toString())

    def recover(self) -> None:
        """Undo what a killed run left: restore the previous data if the target is missing, drop staging."""
        if not self.fs.exists(self.target) and self.fs.exists(self.previous):
            self.fs.rename(self.previous, self.target)
        self.fs.delete(self.staging, True)
        self.fs.delete(self.previous, True)

    def commit(self) -> None:
        """Put the staged data in place of the target."""
        self.fs.mkdirs(self.parent)
        had_target = self.fs.exists(self.target)
        if had_target and not self.fs.rename(self.target, self.previous):
            raise OSError(f"could not move {self.target} aside to replace it")
        if not self.fs.rename(self.staging, self.target):
            if had_target:
                self.fs.rename(self.previous, self.target)
            raise OSError(f"could not move the new data {self.staging} to {self.target}")
        self.fs.delete(self.previous, True)


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
    return _DRIVERS.get(sub)


def staging_table(table: str) -> str:
    return f"{table}__sparkpipe_staging"


def plain_table_name(table: str) -> bool:
    """Whether ``table`` is ``[catalog.][schema.]name`` of plain identifiers, safe to splice into DDL."""
    return bool(_NAME.match(table))


class JdbcSwap:
    """The transactional end of a staged JDBC write, through the JVM's JDBC driver."""

    def __init__(self, spark: SparkSession, options: dict[str, str]) -> None:
        jvm = spark.sparkContext._jvm
        assert jvm is not None
        self.jvm = jvm
        self.url = options["url"]
        self.table = options["dbtable"]
        self.options = options

    def _connect(self) -> Any:
        driver = jdbc_driver(self.url, self.options.get("driver"))
        if driver:
            # Drivers from spark.jars live in Spark's class loader: register them as Spark itself does.
            self.jvm.org.apache.spark.sql.execution.datasources.jdbc.DriverRegistry.register(driver)
        props = self.jvm.java.util.Properties()
        for key in ("user", "password"):
            if key in self.options:
                props.setProperty(key, self.options[key])
        return self.jvm.java.sql.DriverManager.getConnection(self.url, props)

    @staticmethod
    def _exists(conn: Any, table: str) -> bool:
        stmt = conn.createStatement()
        try:
            stmt.executeQuery(f"SELECT 1 FROM {table} WHERE 1 = 0").close()
            return True
        except Exception:
            return False
        finally:
            stmt.close()

    def drop_staging(self) -> None:
        conn = self._connect()
        try:
            conn.createStatement().execute(f"DROP TABLE IF EXISTS {staging_table(self.table)}")
        finally:
            conn.close()

    def commit(self, mode: str, keep_definition: bool) -> None:
        """Move the staged rows into the target in one transaction.

        ``overwrite`` renames the staging table in place of the target (or, with ``keep_definition``,
        deletes the target's rows and copies the staged ones, keeping its indexes and grants);
        ``append`` copies the staged rows. The staging table is dropped in the same transaction.
        """
        staging = staging_table(self.table)
        name = self.table.rsplit(".", 1)[-1]
        previous = f"{self.table}__sparkpipe_previous"
        conn = self._connect()
        try:
            exists = self._exists(conn, self.table)
            conn.setAutoCommit(False)
            stmt = conn.createStatement()
            if not exists:
                stmt.execute(f"ALTER TABLE {staging} RENAME TO {name}")
            elif mode == "append" or keep_definition:
                if mode == "overwrite":
                    stmt.execute(f"DELETE FROM {self.table}")
                stmt.execute(f"INSERT INTO {self.table} SELECT * FROM {staging}")
                stmt.execute(f"DROP TABLE {staging}")
            else:
                stmt.execute(f"DROP TABLE IF EXISTS {previous}")
                stmt.execute(f"ALTER TABLE {self.table} RENAME TO {previous.rsplit('.', 1)[-1]}")
                stmt.execute(f"ALTER TABLE {staging} RENAME TO {name}")
                stmt.execute(f"DROP TABLE {previous}")
            conn.commit()
        except Exception:
            conn.rollback()
            raise
        finally:
            conn.close()
