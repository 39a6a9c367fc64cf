"""Targets compared by one canonical form, and no target overlapping another target or a read: config errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from spark_job.config.tables import canonical_jdbc_url, derived_table_name, jdbc_identifier_limit
from spark_job.config.validation import load_config
from spark_job.errors import ConfigError


def pipeline(targets: list[dict[str, Any]], sources: dict[str, Any] | None = None, queries: list[str] | None = None):
    return {
        "app_name": "identity",
        "sources": sources or {},
        "sequences": [
            {"name": f"s{i}", "query": (queries or [])[i] if queries else "SELECT 1 AS x", "target": target}
            for i, target in enumerate(targets)
        ],
    }


def problems(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(config)
    return [f"{p.path}: {p.message}" for p in err.value.problems]


def parquet(path: str, **more: Any) -> dict[str, Any]:
    return {"type": "parquet", "path": path, **more}


SAME_PATHS = [
    ("/a/b", "/a//b/"),
    ("/a/b", "file:///a/b"),
    ("/a/b", "file:/a/b"),
    ("/a/b", "FILE://localhost/a/b"),
    ("/a/b", "/a/./b"),
    ("/a/b", "/a/x/../b"),
    ("/a/b", "/a/b/."),
    ("s3://bucket/out", "s3a://bucket/out/"),
    ("s3n://bucket/out", "S3A://BUCKET/out"),
    ("gs://bucket/x/out", "gs://bucket/x/y/../out"),
    ("hdfs://nn:8020/out", "HDFS://NN:8020//out/"),
    ("hdfs://nn:8020/out", "hdfs://nn/out"),  # the NameNode's default port
    ("webhdfs://nn:9870/out", "webhdfs://nn/out"),
    ("hdfs:///out", "hdfs://nn/out"),  # no NameNode named: the default one, whichever it is
]


@pytest.mark.parametrize(("first", "second"), SAME_PATHS)
def test_one_place_spelled_two_ways_is_one_target(first: str, second: str) -> None:
    found = problems(pipeline([parquet(first), {"type": "file", "format": "csv", "path": second}]))
    assert len(found) == 1
    # by the identity check, or (hdfs:/// against a named NameNode: maybe one place) by the overlap check
    assert re.match(r"sequences\[1\]\.target(\.path)?: writes the same target as sequences\[0\]", found[0]), found


def test_a_relative_path_is_the_absolute_one_it_resolves_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    found = problems(pipeline([parquet(str(tmp_path / "out")), parquet("sub/../out"), parquet("file:out")]))
    assert [f.split(":")[0] for f in found] == ["sequences[1].target", "sequences[2].target"]
    assert all("writes the same target as sequences[0]" in f for f in found)


def test_places_that_only_look_alike_are_different_targets() -> None:
    config = pipeline(
        [
            parquet("/a/b"),
            parquet("/a/bc"),
            parquet("/A/b"),
            parquet("s3a://bucket/a/b"),
            parquet("gs://bucket/a/b"),
            parquet("hdfs://other:8020/x"),
            parquet("hdfs://nn:8020/x"),
        ]
    )
    assert load_config(config).sequences


def jdbc(url: str, table: str, **more: Any) -> dict[str, Any]:
    return {"type": "jdbc", "url": url, "table": table, **more}


SAME_TABLES = [
    (jdbc("jdbc:postgresql://db.example:5432/shop", "orders"), jdbc("jdbc:postgresql://DB.example/shop", "ORDERS")),
    (jdbc("jdbc:postgresql://h/shop", "orders"), jdbc("jdbc:postgresql://h/shop?sslmode=require", "public.Orders")),
    (jdbc("jdbc:postgresql://h/shop", '"Orders"'), jdbc("jdbc:postgresql://h:5432/shop", 'public."Orders"')),
    (
        jdbc("jdbc:sqlserver://h;databaseName=shop;user=sa;password=x", "Orders"),
        jdbc("jdbc:sqlserver://H:1433;databaseName=shop", "[dbo].[orders]"),
    ),
    (jdbc("jdbc:mysql://u:pw@h/shop", "Orders"), jdbc("jdbc:mysql://h:3306/shop?useSSL=true", "shop.`orders`")),
    (
        jdbc("jdbc:oracle:thin:@h:1521:ORCL", "orders", user="scott"),
        jdbc("jdbc:oracle:thin:scott/tiger@H:1521:orcl", "SCOTT.ORDERS"),
    ),
    (jdbc("jdbc:db2://h/shop:user=a;password=b;", "orders", user="app"), jdbc("jdbc:db2://h:50000/shop", "APP.ORDERS")),
    # the schema the connection names for unqualified tables
    (jdbc("jdbc:postgresql://h/shop?currentSchema=sales", "orders"), jdbc("jdbc:postgresql://h/shop", "sales.orders")),
    (
        jdbc("jdbc:postgresql://h/shop?options=-c%20search_path%3DSales,public", "orders"),
        jdbc("jdbc:postgresql://h/shop", "sales.Orders"),
    ),
    (
        jdbc("jdbc:postgresql://h/shop", "orders", options={"currentSchema": "sales"}),
        jdbc("jdbc:postgresql://h/shop", "sales.orders"),
    ),
    (
        jdbc("jdbc:db2://h:50000/shop:currentSchema=sales;", "orders", user="app"),
        jdbc("jdbc:db2://h/shop", "SALES.ORDERS"),
    ),
    (jdbc("jdbc:h2:tcp://h/shop;SCHEMA=sales", "orders"), jdbc("jdbc:h2:tcp://h/shop", "SALES.ORDERS")),
    # another database of the same server, named in the table
    (jdbc("jdbc:mysql://h/shop", "orders"), jdbc("jdbc:mysql://h/other", "shop.Orders")),
    (
        jdbc("jdbc:sqlserver://h;databaseName=shop", "orders"),
        jdbc("jdbc:sqlserver://h;databaseName=x", "shop.dbo.orders"),
    ),
    # the loopback interface, however it is named
    (jdbc("jdbc:postgresql://localhost/shop", "orders"), jdbc("jdbc:postgresql://127.0.0.1:5432/shop", "orders")),
    (jdbc("jdbc:mysql://[::1]/shop", "orders"), jdbc("jdbc:mysql://localhost:3306/shop", "orders")),
]


@pytest.mark.parametrize(("first", "second"), SAME_TABLES)
def test_one_database_table_spelled_two_ways_is_one_target(first: dict, second: dict) -> None:
    found = problems(pipeline([first, second]))
    assert len(found) == 1 and "sequences[1].target: writes the same target as sequences[0]" in found[0]
    assert "password" not in found[0] and "tiger" not in found[0] and "pw@" not in found[0]
    assert "jdbc:jdbc:" not in found[0]  # the place is named as its URL is written: jdbc:<subprotocol>:...


def test_distinct_database_tables_stay_distinct() -> None:
    config = pipeline(
        [
            jdbc("jdbc:postgresql://h/shop", '"Orders"'),
            jdbc("jdbc:postgresql://h/shop", "orders"),
            jdbc("jdbc:postgresql://h/other", "orders"),
            jdbc("jdbc:postgresql://h:5433/shop", "orders"),
            jdbc("jdbc:postgresql://h/shop", "audit.orders"),
            jdbc("jdbc:oracle:thin:@h:1521:ORCL", '"orders"', user="scott"),
            jdbc("jdbc:oracle:thin:@h:1521:ORCL", "orders", user="scott"),
            jdbc("jdbc:postgresql://h/shop?currentSchema=sales", "orders"),  # sales.orders, not public.orders
            jdbc("jdbc:postgresql://h/shop", "orders", options={"currentSchema": "stock"}),
            jdbc("jdbc:mysql://h/shop", "orders"),
            jdbc("jdbc:mysql://h/other", "orders"),  # other.orders
            jdbc("jdbc:sqlserver://h;databaseName=shop", "orders"),
            jdbc("jdbc:sqlserver://h;databaseName=shop", "sales.dbo.orders"),
        ]
    )
    assert len(load_config(config).sequences) == 13


@pytest.mark.parametrize("spelling", ["default.events", "spark_catalog.default.events", "`default`.`Events`", "EVENTS"])
def test_catalog_tables_compare_by_their_full_name(spelling: str) -> None:
    found = problems(pipeline([{"type": "table", "table": "events"}, {"type": "table", "table": spelling}]))
    assert len(found) == 1 and "writes the same target as sequences[0]" in found[0]


def test_a_target_inside_another_target() -> None:
    found = problems(pipeline([parquet("/lake/out"), parquet("/lake/out/x"), parquet("/lake")]))
    assert found == [
        "sequences[1].target.path: lies inside the target of sequences[0] (/lake/out): "
        "overwriting one replaces the other",
        "sequences[2].target.path: holds the target of sequences[0] (/lake/out): overwriting one replaces the other",
    ]


def test_a_target_on_a_source_or_holding_it() -> None:
    sources = {"events": {"type": "file", "format": "csv", "path": "/lake/raw/events.csv"}}
    same = problems(pipeline([parquet("file:///lake/raw/events.csv/")], sources))
    assert same == [
        "sources.events.path: reads /lake/raw/events.csv, the target of sequences[0]: "
        "a target cannot be a place the pipeline reads"
    ]
    parent = problems(pipeline([parquet("/lake/raw")], sources))
    assert parent == ["sources.events.path: reads /lake/raw/events.csv, inside the target of sequences[0] (/lake/raw)"]


def test_a_target_inside_a_source_folder() -> None:
    sources = {"lake": {"type": "file", "path": "/lake"}}
    found = problems(pipeline([parquet("/lake/derived")], sources))
    assert found == ["sources.lake.path: reads /lake, which holds the target of sequences[0] (/lake/derived)"]


def test_a_glob_source_compares_by_its_fixed_prefix() -> None:
    sources = {"days": {"type": "file", "format": "json", "path": "/lake/events/day=*/part-*.json"}}
    found = problems(pipeline([parquet("/lake/events")], sources))
    assert found == [
        "sources.days.path: reads /lake/events, the target of sequences[0]: "
        "a target cannot be a place the pipeline reads"
    ]
    assert load_config(pipeline([parquet("/lake/other")], sources)).sources


def test_a_direct_path_read_in_sql_against_a_target() -> None:
    found = problems(
        pipeline(
            [parquet("/lake/out"), parquet("/lake/copy")],
            queries=["SELECT 1 AS x", "SELECT * FROM parquet.`file:/lake/out/part-0.parquet`"],
        )
    )
    assert found == [
        "sequences[1].query: reads file:/lake/out/part-0.parquet, inside the target of sequences[0] (/lake/out)"
    ]


def test_a_path_through_a_symbolic_link_is_the_place_it_leads_to(tmp_path: Path) -> None:
    (tmp_path / "2024").mkdir()
    (tmp_path / "latest").symlink_to(tmp_path / "2024")
    (tmp_path / "alias").symlink_to("2024/out")  # a relative link, to a place that does not exist yet
    found = problems(
        pipeline(
            [
                parquet(str(tmp_path / "2024" / "out")),
                parquet(f"file://{tmp_path}/latest/out"),
                parquet(str(tmp_path / "alias")),
            ]
        )
    )
    assert [f.split(":")[0] for f in found] == ["sequences[1].target", "sequences[2].target"]
    assert all("writes the same target as sequences[0]" in f for f in found)
    found = problems(
        pipeline(
            [parquet(str(tmp_path / "latest"))],
            {"ev": {"type": "file", "format": "csv", "path": str(tmp_path / "2024" / "ev.csv"), "alias": "ev"}},
        )
    )
    assert found == [
        f"sources.ev.path: reads {tmp_path}/2024/ev.csv, inside the target of sequences[0] ({tmp_path}/2024)"
    ]


def test_a_catalog_table_and_a_path_holding_its_files_are_one_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table of the session catalog keeps its files in the warehouse (``spark.sql.warehouse.dir``,
    ``spark-warehouse`` in the working directory by default) or at its ``path`` option: overwriting
    the path there replaces the table's data, and the reverse."""
    monkeypatch.chdir(tmp_path)
    found = problems(pipeline([{"type": "table", "table": "Events"}, parquet("spark-warehouse/events")]))
    assert found == [
        f"sequences[1].target.path: writes {tmp_path}/spark-warehouse/events, where the catalog table Events of "
        "sequences[0] keeps its files: two targets cannot keep their data in one place"
    ]
    config = pipeline([parquet("/wh/sales.db/orders/day=1"), {"type": "table", "table": "spark_catalog.Sales.orders"}])
    config["spark_conf"] = {"spark.sql.warehouse.dir": "file:///wh/"}
    [found_one] = problems(config)
    assert found_one.startswith(
        "sequences[1].target.table: holds the target of sequences[0] (/wh/sales.db/orders/day=1)"
    )
    external = {"type": "table", "table": "ext", "options": {"path": "/lake/ext"}}
    sources = {"ev": {"type": "file", "format": "parquet", "path": "/lake/ext/part-0.parquet", "alias": "ev"}}
    [found_one] = problems(pipeline([external], sources))
    assert "sources.ev.path" in found_one and "/lake/ext" in found_one
    found = problems(
        pipeline(
            [{"type": "table", "table": "t"}, {"type": "table", "table": "u", "options": {"path": "spark-warehouse/t"}}]
        )
    )
    assert len(found) == 1 and "catalog table u" in found[0] and "catalog table t of sequences[0]" in found[0]
    # Other places stay apart: another catalog's table, another database's folder, another name.
    assert load_config(
        pipeline(
            [
                {"type": "table", "table": "t"},
                {"type": "table", "table": "glue.db.t"},
                parquet("spark-warehouse/db/t"),
                parquet("spark-warehouse/t2"),
                {"type": "table", "table": "db.t"},
            ]
        )
    ).sequences


def test_a_path_without_scheme_may_be_the_default_filesystem() -> None:
    # on a cluster /out is hdfs:///out: taken conservatively as the same place
    found = problems(pipeline([parquet("/lake/out"), {"type": "hdfs", "path": "hdfs://nn:8020/lake/out/x"}]))
    assert len(found) == 1 and "lies inside the target of sequences[0]" in found[0]


def test_dynamic_partition_overwrite_needs_partition_by() -> None:
    found = problems(pipeline([parquet("/a", dynamic_partition_overwrite=True)]))
    assert found == [
        "sequences[0].target.dynamic_partition_overwrite: dynamic partition overwrite replaces the partitions "
        "written and needs partition_by: add partition_by, or remove it to replace the whole target"
    ]
    found = problems(pipeline([parquet("/a", options={"partitionOverwriteMode": "DYNAMIC"})]))
    assert found[0].startswith("sequences[0].target.options: dynamic partition overwrite")
    assert load_config(pipeline([parquet("/a", dynamic_partition_overwrite=True, partition_by=["day"])])).sequences


@pytest.mark.parametrize(
    ("url", "limit"),
    [
        ("jdbc:postgresql://h/db", 63),
        ("jdbc:mysql://h/db", 64),
        ("jdbc:oracle:thin:@h:1521:x", 30),
        ("jdbc:sqlserver://h", 128),
        ("jdbc:db2://h/db", 128),
        ("jdbc:somethingelse://h/db", 30),
    ],
)
def test_staging_names_fit_the_database_limit_and_differ_from_the_target(url: str, limit: int) -> None:
    assert jdbc_identifier_limit(url) == limit
    long_name = "t" * 200
    names = {derived_table_name(f"s.{long_name}", url, role) for role in ("stage", "prev")}
    assert len(names) == 2
    for name in names:
        table = name.split(".", 1)[1]
        assert len(table.encode()) <= limit and table[:limit] != long_name[:limit]
    # two targets sharing the first characters get different staging tables
    assert derived_table_name(long_name + "a", url, "stage") != derived_table_name(long_name + "b", url, "stage")


def test_canonical_urls_drop_credentials_and_parameters() -> None:
    assert canonical_jdbc_url("jdbc:postgresql://H/db?user=u&password=secret") == "jdbc:postgresql://h:5432/db"
    assert (
        canonical_jdbc_url("jdbc:sqlserver://h;user=sa;password=secret;databaseName=D") == "jdbc:sqlserver://h:1433/d"
    )
    assert canonical_jdbc_url("jdbc:mysql://u:secret@h/db") == "jdbc:mysql://h:3306/db"
    assert canonical_jdbc_url("jdbc:oracle:thin:scott/secret@h:1521:orcl") == "jdbc:oracle://h:1521/orcl"


def test_a_target_holding_the_config_or_a_query_file_is_refused(tmp_path: Path) -> None:
    """The files the config reads are data too: an overwrite of the folder holding them deletes them."""
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "q.sql").write_text("SELECT 1 AS x")
    (tmp_path / "conf").mkdir()
    config = tmp_path / "conf" / "pipeline.yaml"
    config.write_text(
        "app_name: p\nsources: {}\nsequences:\n"
        f"  - {{name: a, query_file: ../sql/q.sql, target: {{type: parquet, path: '{tmp_path}/sql'}}}}\n"
        f"  - {{name: b, query: SELECT 2 AS x, target: {{type: parquet, path: 'file://{tmp_path}/conf/'}}}}\n"
        f"  - {{name: c, query: SELECT 3 AS x, target: {{type: parquet, path: '{tmp_path}/out'}}}}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(config)
    found = [f"{p.path}: {p.message}" for p in err.value.problems]
    assert found[:2] == [
        f"sequences[0].target.path: writes {tmp_path}/sql, which holds the query file of sequences[0] "
        f"{tmp_path}/sql/q.sql: the write would delete it; write elsewhere",
        f"sequences[1].target.path: writes file:{tmp_path}/conf, which holds the config file {config}: the write "
        "would delete it; write elsewhere",
    ]
    assert len(found) == 2


def test_paths_without_a_scheme_are_on_the_default_filesystem_the_config_sets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``spark.hadoop.fs.defaultFS`` decides where ``/lake/x`` is: the same place as ``s3a://lake-bucket/lake/x``
    then, and relative paths are under Hadoop's home folder there; the config file stays local."""
    monkeypatch.setenv("HADOOP_USER_NAME", "etl")
    config = pipeline(
        [
            parquet("/lake/x"),
            parquet("s3://LAKE-bucket/lake/x/"),
            parquet("out"),
            parquet("s3a://lake-bucket/user/etl/out"),
        ]
    )
    config["spark_conf"] = {"spark.hadoop.fs.defaultFS": "s3a://lake-bucket"}
    found = problems(config)
    assert [f.split(":")[0] for f in found] == ["sequences[1].target", "sequences[3].target"]
    assert all("writes the same target as sequences[" in f for f in found)
    # Without it, /lake/x may be on the local disk or on HDFS, not on S3.
    del config["spark_conf"]
    assert load_config(config).sequences
    # The config file is on the local disk even when the default filesystem is not.
    path = tmp_path / "p.yaml"
    path.write_text(
        "app_name: p\nspark_conf: {spark.hadoop.fs.defaultFS: 'hdfs://nn:8020'}\nsources: {}\nsequences:\n"
        f"  - {{name: a, query: SELECT 1 AS x, target: {{type: parquet, path: '{tmp_path}'}}}}\n"
    )
    assert load_config(path).sequences  # hdfs://nn/<tmp_path> does not hold the local p.yaml
    path.write_text(path.read_text().replace("'hdfs://nn:8020'", "'file:///'"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    [found_one] = [f"{p.path}: {p.message}" for p in err.value.problems]
    assert "which holds the config file" in found_one


def test_a_jdbc_target_overwriting_a_table_a_source_reads_is_refused() -> None:
    """Spark drops or empties the table before it reads the rows (without staging): nothing would be left."""
    sources = {"o": {"type": "jdbc", "url": "jdbc:postgresql://h/shop", "table": "public.orders", "alias": "o"}}
    reads = ["SELECT * FROM o"] * 2
    targets = [jdbc("jdbc:postgresql://h:5432/shop", "ORDERS", atomic=False), jdbc("jdbc:postgresql://h/shop", "copy")]
    assert problems(pipeline(targets, sources, reads)) == [
        "sequences[0].target: overwrites ORDERS, which sources.o reads: a target cannot be a table the pipeline "
        "reads (write another table; append is allowed)"
    ]
    targets[0]["mode"] = "append"  # adding to what is read is fine
    assert load_config(pipeline(targets, sources, reads)).sequences
    config = pipeline(targets, sources, reads)  # a quarantine overwriting the table read, too
    config["sequences"][1]["expectations"] = [{"name": "q", "condition": "id > 0", "on_fail": "quarantine"}]
    config["sequences"][0]["target"] = jdbc("jdbc:postgresql://h/shop", "copy0")
    config["sequences"][1]["quarantine"] = jdbc("jdbc:postgresql://h/shop", "orders")
    assert problems(config) == [
        "sequences[1].quarantine: overwrites orders, which sources.o reads: a target cannot be a table the "
        "pipeline reads (write another table; append is allowed)"
    ]


TABLE_SPELLINGS = ["t", "default.t", "spark_catalog.default.t", "`T`", "`default`.`t`", "SPARK_CATALOG.Default.T"]


@pytest.mark.parametrize("read", TABLE_SPELLINGS)
@pytest.mark.parametrize("written", ["T", "spark_catalog.`default`.`T`"])
def test_a_table_target_overwriting_a_table_a_source_reads_is_refused(read: str, written: str) -> None:
    sources = {"src": {"type": "table", "table": read}}
    found = problems(pipeline([{"type": "table", "table": written}], sources, ["SELECT * FROM src"]))
    assert found == [
        f"sequences[0].target.table: overwrites the catalog table {written}, which sources.src reads: a target "
        "cannot be a table the pipeline reads (write another table; append is allowed)"
    ]


def test_a_table_read_in_a_query_or_overwritten_by_a_quarantine_is_refused_and_appends_are_allowed() -> None:
    reads = ["SELECT * FROM lake.orders", "SELECT * FROM lake.events"]
    targets = [{"type": "table", "table": "LAKE.ORDERS", "insert_into": True}, {"type": "table", "table": "lake.copy"}]
    assert problems(pipeline(targets, queries=reads)) == [
        "sequences[0].target.table: overwrites the catalog table LAKE.ORDERS, which sequences[0].query reads: a "
        "target cannot be a table the pipeline reads (write another table; append is allowed)"
    ]
    targets[0]["mode"] = "append"  # adding to what is read is what Spark allows
    assert load_config(pipeline(targets, queries=reads)).sequences
    config = pipeline([parquet("/out/a"), {"type": "table", "table": "lake.copy"}], queries=reads)
    config["sequences"][1]["expectations"] = [{"name": "q", "condition": "id > 0", "on_fail": "quarantine"}]
    config["sequences"][1]["quarantine"] = {"type": "table", "table": "`lake`.`Orders`"}
    assert problems(config) == [
        "sequences[1].quarantine.table: overwrites the catalog table `lake`.`Orders`, which sequences[0].query "
        "reads: a target cannot be a table the pipeline reads (write another table; append is allowed)"
    ]
    # Other catalogs' tables compare by their full name too; a different table is fine.
    other = pipeline(
        [{"type": "table", "table": "ice.db.t"}], {"s": {"type": "table", "table": "ICE.DB.T"}}, ["SELECT * FROM s"]
    )
    assert "overwrites the catalog table ice.db.t, which sources.s reads" in problems(other)[0]
    fine = pipeline(
        [{"type": "table", "table": "ice.db.u"}], {"s": {"type": "table", "table": "ice.db.t"}}, ["SELECT * FROM s"]
    )
    assert load_config(fine).sequences


def test_a_path_target_holding_the_files_of_a_table_a_source_reads_is_refused() -> None:
    config = pipeline([parquet("/wh/lake.db")], {"s": {"type": "table", "table": "lake.orders"}}, ["SELECT * FROM s"])
    config["spark_conf"] = {"spark.sql.warehouse.dir": "/wh"}
    assert problems(config) == [
        "sources.s.table: reads /wh/lake.db/orders, inside the target of sequences[0] (/wh/lake.db)"
    ]


@pytest.mark.spark
def test_what_validation_refuses_spark_refuses_at_run_time(spark, tmp_path: Path) -> None:
    """The refused case is the one Spark itself stops, only later (after the session and the sources)."""
    spark.range(3).write.mode("overwrite").saveAsTable("identity_read_and_overwritten")
    try:
        with pytest.raises(Exception, match=r"(?i)overwrite.*read"):
            spark.table("identity_read_and_overwritten").write.mode("overwrite").saveAsTable(
                "spark_catalog.default.IDENTITY_READ_AND_OVERWRITTEN"
            )
        config = pipeline(
            [{"type": "table", "table": "spark_catalog.default.IDENTITY_READ_AND_OVERWRITTEN"}],
            {"s": {"type": "table", "table": "identity_read_and_overwritten"}},
            ["SELECT * FROM s"],
        )
        assert "overwrites the catalog table" in problems(config)[0]
        assert spark.table("identity_read_and_overwritten").count() == 3
    finally:
        spark.sql("DROP TABLE IF EXISTS identity_read_and_overwritten")


def test_credentials_in_a_path_are_not_part_of_the_place_nor_of_any_message() -> None:
    """``s3a://KEY:SECRET@bucket`` is the bucket; an ADLS container in the user info is part of the place."""
    found = problems(
        pipeline(
            [
                parquet("s3a://AKIAKEY:TopSecret1@lake/out"),
                parquet("s3a://lake/out/"),
                parquet("s3a://AKIAKEY:TopSecret1@lake/"),
                parquet("https://h.example/x?sig=TopSecret2&sv=1"),
                parquet("https://h.example/x?sig=TopSecret2&sv=1"),
                parquet("abfss://one@acct.dfs.core.windows.net/out"),
                parquet("abfss://two@acct.dfs.core.windows.net/out"),  # another container: another place
            ]
        )
    )
    found.sort()
    assert [f.split(":")[0] for f in found] == [
        "sequences[1].target",
        "sequences[2].target.path",
        "sequences[4].target",
    ]
    assert "writes the same target as sequences[0] (path:s3a://lake/out)" in found[0]
    assert "s3a://lake/ is the root of a bucket" in found[1]
    assert "(path:https://h.example/x?sv=1)" in found[2]
    assert not [f for f in found if "TopSecret" in f or "topsecret" in f or "AKIAKEY" in f.upper()]
