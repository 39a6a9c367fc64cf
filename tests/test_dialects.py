"""JDBC dialects: one object per database in a registry; what the writers run today is what the dialects
say, and their rename SQL runs on a real PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from spark_job.config.tables import canonical_jdbc_table, canonical_jdbc_url, jdbc_identifier_limit
from spark_job.dialects import BUILT_IN, GENERIC, Dialect, dialect_of, dialects, register
from spark_job.io.swap import jdbc_driver, spark_jdbc_url

URLS = {
    "PostgreSQL": "jdbc:postgresql://h/shop",
    "Amazon Redshift": "jdbc:redshift://h/shop",
    "MySQL": "jdbc:mysql://h/shop",
    "MariaDB": "jdbc:mariadb://h/shop",
    "SQL Server": "jdbc:sqlserver://h;databaseName=shop",
    "Oracle": "jdbc:oracle:thin:@h:1521:shop",
    "DB2": "jdbc:db2://h/shop",
    "H2": "jdbc:h2:mem:shop",
    "SQLite": "jdbc:sqlite:/tmp/shop.db",
}


def test_every_database_has_one_dialect_found_by_its_urls() -> None:
    assert sorted(d.name for d in BUILT_IN) == sorted(URLS)
    for dialect in BUILT_IN:
        assert dialect_of(URLS[dialect.name]) is dialect
        assert dialect_of(URLS[dialect.name].upper().replace("JDBC:", "jdbc:", 1)) is dialect  # any case
    assert dialect_of("jdbc:somethingelse://h/db") is GENERIC
    assert dialect_of("not a url") is GENERIC


def test_names_fold_and_quote_as_each_database_reads_them() -> None:
    pg, mysql, mssql, oracle = (dialect_of(URLS[n]) for n in ("PostgreSQL", "MySQL", "SQL Server", "Oracle"))
    assert (pg.fold("Orders", False), pg.fold("Orders", True)) == ("orders", "Orders")
    assert (oracle.fold("Orders", False), oracle.fold("Orders", True)) == ("ORDERS", "Orders")
    assert (mysql.fold("Orders", True), GENERIC.fold("Orders", True)) == ("orders", "orders")
    assert pg.quote('a"b') == '"a""b"' and mysql.quote("a`b") == "`a``b`" and mssql.quote("a]b") == "[a]]b]"
    assert [jdbc_identifier_limit(URLS[n]) for n in ("PostgreSQL", "MySQL", "Oracle", "SQL Server")] == [
        63,
        64,
        30,
        128,
    ]


def test_the_url_names_the_database_and_the_schema() -> None:
    assert canonical_jdbc_url("jdbc:mariadb://u:pw@H/Shop?x=1") == "jdbc:mariadb://h:3306/shop"
    assert canonical_jdbc_url("jdbc:db2://h/shop:currentSchema=S;") == "jdbc:db2://h:50000/shop"
    assert canonical_jdbc_url("jdbc:oracle:thin:@//H/Svc") == "jdbc:oracle://h:1521/svc"
    assert canonical_jdbc_url("jdbc:postgresql:shop") == "jdbc:postgresql://localhost:5432/shop"
    assert canonical_jdbc_url("jdbc:sqlite:/tmp/shop.db") == "jdbc:sqlite:/tmp/shop.db"
    assert canonical_jdbc_table("jdbc:postgresql://h/shop?currentSchema=Sales", "t") == "sales.t"
    assert canonical_jdbc_table("jdbc:h2:tcp://h/shop;SCHEMA=sales", "t") == "SALES.T"
    assert canonical_jdbc_table("jdbc:oracle:thin:@h:1521:x", "t", user="scott") == "SCOTT.T"
    assert canonical_jdbc_table("jdbc:mysql://h/Shop", "T") == "shop.t"
    assert canonical_jdbc_table("jdbc:sqlserver://h", "T") == "dbo.t"


def test_the_writers_use_what_the_dialects_say() -> None:
    """The JDBC writers still spell some of this themselves; until they ask the dialect, both agree."""
    for dialect in BUILT_IN:
        url = URLS[dialect.name]
        spark_url = spark_jdbc_url(url)
        assert spark_url == dialect.spark_url(url)
        assert dialects.of_spark_url(spark_url) is dialect
        if dialect.name not in ("SQLite",):  # a driver the writers do not name yet
            assert jdbc_driver(spark_url, None) == dialect.driver
    assert spark_jdbc_url("jdbc:mariadb://h/shop?a=1") == "jdbc:mysql://h/shop?a=1&permitMysqlScheme=true"
    assert [d.name for d in BUILT_IN if d.advisory_locks] == ["PostgreSQL"]
    # The statements JdbcSwap runs on MySQL/MariaDB (one atomic RENAME) and elsewhere.
    mysql, pg = dialect_of(URLS["MySQL"]), dialect_of(URLS["PostgreSQL"])
    assert mysql.swap_sql("shop.t", "shop.t__s", "shop.t__p") == (
        "DROP TABLE IF EXISTS shop.t__p",
        "RENAME TABLE shop.t TO shop.t__p, shop.t__s TO shop.t",
        "DROP TABLE shop.t__p",
    )
    assert mysql.rename_sql("shop.t__s", "t") == "RENAME TABLE shop.t__s TO shop.t"
    assert pg.swap_sql("s.t", "s.t__s", "s.t__p") == (
        "DROP TABLE IF EXISTS s.t__p",
        "ALTER TABLE s.t RENAME TO t__p",
        "ALTER TABLE s.t__s RENAME TO t",
        "DROP TABLE s.t__p",
    )
    assert dialect_of(URLS["SQL Server"]).rename_sql("dbo.t__s", "t") == "EXEC sp_rename 'dbo.t__s', 't'"


def test_each_database_names_its_lineage_namespace() -> None:
    namespaces = {d.name: d.lineage_namespace for d in BUILT_IN if d.lineage_namespace}
    assert namespaces == {
        "PostgreSQL": "postgres",
        "Amazon Redshift": "redshift",
        "MySQL": "mysql",
        "MariaDB": "mysql",
        "SQL Server": "mssql",
        "Oracle": "oracle",
        "DB2": "db2",
    }


def test_each_database_has_an_upsert_form() -> None:
    forms = {d.name: d.upsert for d in BUILT_IN}
    assert forms["PostgreSQL"] == forms["SQLite"] == "on_conflict"
    assert forms["MySQL"] == forms["MariaDB"] == "on_duplicate_key"
    assert forms["Oracle"] == forms["SQL Server"] == GENERIC.upsert == "update_insert"


def test_a_dialect_of_another_database_is_registered_and_used() -> None:
    with pytest.raises(ValueError, match="folding must be one of"):
        Dialect("Bad", ("bad",), folding="title")
    custom = register(
        Dialect(
            "Test DB",
            ("sparkpipetestdb",),
            default_port=7777,
            identifier_limit=40,
            folding="upper",
            default_schema="MAIN",
        )
    )
    url = "jdbc:sparkpipetestdb://H/Db"
    assert dialect_of(url) is custom
    assert canonical_jdbc_url(url) == "jdbc:sparkpipetestdb://h:7777/Db"
    assert canonical_jdbc_table(url, "orders") == "MAIN.ORDERS"
    assert jdbc_identifier_limit(url) == 40


@pytest.mark.postgres
def test_the_swap_statements_run_on_postgresql(postgres: Any) -> None:
    pg = dialect_of(postgres.jdbc_url)
    with postgres.connect() as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS dialect_test")
        conn.execute("DROP TABLE IF EXISTS dialect_test.t, dialect_test.t__s, dialect_test.n")
        conn.execute("CREATE TABLE dialect_test.t AS SELECT 1 AS v")
        conn.execute("CREATE TABLE dialect_test.t__s AS SELECT 2 AS v")
        with conn.transaction():
            for statement in pg.swap_sql("dialect_test.t", "dialect_test.t__s", "dialect_test.t__p"):
                conn.execute(statement)
        assert conn.execute("SELECT v FROM dialect_test.t").fetchall() == [(2,)]
        conn.execute("CREATE TABLE dialect_test.n__s AS SELECT 3 AS v")
        conn.execute(pg.rename_sql("dialect_test.n__s", "n"))
        assert conn.execute("SELECT v FROM dialect_test.n").fetchall() == [(3,)]
        left = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'dialect_test'")
        assert sorted(r[0] for r in left.fetchall()) == ["n", "t"]
        conn.execute(f"DROP TABLE dialect_test.{pg.quote('t')}, dialect_test.n")
