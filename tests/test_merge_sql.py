"""The statements of ``mode: merge`` on a JDBC target, as each dialect writes them (spark_job.merge_sql), and
what validation says about a JDBC merge target; pure Python (linted for Python 3.9: the matrix cells run it).
The statements run on real databases in test_jdbc_merge.py and connectors/test_mariadb_merge.py."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from spark_job.config.validation import load_config
from spark_job.dialects import GENERIC, dialect_of
from spark_job.errors import ConfigError
from spark_job.io.incoming import MergeError, SchemaChanges, schema_changes
from spark_job.merge_sql import MergeTables

TABLES = MergeTables(
    target="shop.orders",
    staging="shop.orders__stage",
    columns=(("id", "ID"), ("status", "Status"), ("updated_at", "updated_at")),
    keys=(("id", "ID"),),
    updated=(("status", "Status"), ("updated_at", "updated_at")),
    condition="t.updated_at < s.updated_at",
    delete_flag="sparkpipe_delete",
)


def forms(url: str, tables: MergeTables = TABLES) -> list[tuple[str, str]]:
    return [(s.counts, s.sql) for s in dialect_of(url).merge_sql(tables)]


def test_postgresql_deletes_with_using_and_upserts_on_conflict() -> None:
    upsert = (
        'INSERT INTO shop.orders AS t ("id", "status", "updated_at") SELECT s."ID", s."Status", s."updated_at" '
        'FROM shop.orders__stage AS s WHERE s."sparkpipe_delete" = 0 ON CONFLICT ("id") DO UPDATE SET '
        '"status" = EXCLUDED."status", "updated_at" = EXCLUDED."updated_at" '
        "WHERE EXISTS (SELECT 1 FROM (SELECT EXCLUDED.*) AS s WHERE (t.updated_at < s.updated_at))"
    )
    assert forms("jdbc:postgresql://h/db") == [
        (
            "deleted",
            'DELETE FROM shop.orders AS t USING shop.orders__stage AS s WHERE s."ID" = t."id" '
            'AND s."sparkpipe_delete" = 1 AND (t.updated_at < s.updated_at)',
        ),
        (
            "upserted_returning",
            f"WITH merged AS ({upsert} RETURNING (xmax = 0) AS inserted) SELECT SUM(CASE WHEN inserted THEN 1 ELSE "
            "0 END), SUM(CASE WHEN inserted THEN 0 ELSE 1 END) FROM merged",
        ),
    ]
    # Without a flag saying which rows were inserted (SQLite), the matching rows are counted first.
    sqlite = [s.counts for s in dialect_of("jdbc:sqlite:x.db").merge_sql(TABLES)]
    assert sqlite == ["deleted", "probe", "upserted"]


@pytest.mark.parametrize("url", ["jdbc:mysql://h/shop", "jdbc:mariadb://h/shop"])
def test_mysql_and_mariadb_upsert_on_duplicate_key(url: str) -> None:
    plain = dataclasses.replace(TABLES, condition=None, delete_flag=None)
    assert forms(url, plain) == [
        (
            "probe",
            "SELECT COUNT(*), COUNT(t.`id`) FROM shop.orders__stage s LEFT JOIN shop.orders t ON s.`ID` = t.`id` "
            "WHERE 1 = 1",
        ),
        (
            "upserted_unknown",
            "INSERT INTO shop.orders (`id`, `status`, `updated_at`) SELECT s.`ID`, s.`Status`, s.`updated_at` "
            "FROM shop.orders__stage AS s WHERE 1 = 1 ON DUPLICATE KEY UPDATE `status` = s.`Status`, "
            "`updated_at` = s.`updated_at`",
        ),
    ]
    # A condition: a joined UPDATE (its SET reads only s) and an INSERT of the rows without a match.
    assert [counts for counts, _ in forms(url)] == ["deleted", "updated", "inserted"]
    delete, update, insert = (sql for _, sql in forms(url))
    assert delete.startswith("DELETE t FROM shop.orders AS t JOIN shop.orders__stage AS s ON s.`ID` = t.`id`")
    assert update == (
        "UPDATE shop.orders AS t JOIN shop.orders__stage AS s ON s.`ID` = t.`id` SET t.`status` = s.`Status`, "
        "t.`updated_at` = s.`updated_at` WHERE s.`sparkpipe_delete` = 0 AND (t.updated_at < s.updated_at)"
    )
    assert insert.endswith("AND NOT EXISTS (SELECT 1 FROM shop.orders t WHERE s.`ID` = t.`id`)")


def test_other_databases_update_then_insert() -> None:
    statements = [(s.counts, s.sql) for s in GENERIC.merge_sql(TABLES)]
    assert [c for c, _ in statements] == ["deleted", "updated", "inserted"]
    assert statements[0][1].startswith("DELETE FROM shop.orders t WHERE EXISTS (SELECT 1 FROM shop.orders__stage s")
    assert statements[1][1].startswith(
        'UPDATE shop.orders t SET "status" = (SELECT s."Status" FROM shop.orders__stage s WHERE s."ID" = t."id")'
    )
    assert [s.counts for s in dialect_of("jdbc:sqlserver://h;databaseName=x").merge_sql(TABLES)] == [
        "deleted",
        "updated",
        "inserted",
    ]


def test_only_keys_means_insert_only() -> None:
    keys_only = MergeTables("t", "s_t", columns=(("id", "id"),), keys=(("id", "id"),))
    for url in ("jdbc:postgresql://h/db", "jdbc:mariadb://h/db", "jdbc:h2:mem:x"):
        assert [s.counts for s in dialect_of(url).merge_sql(keys_only)] == ["inserted"], url


def test_each_dialect_says_how_it_creates_and_alters_a_target() -> None:
    pg, maria, sqlserver, oracle = (
        dialect_of(u)
        for u in ("jdbc:postgresql://h/db", "jdbc:mariadb://h/db", "jdbc:sqlserver://h", "jdbc:oracle:thin:@h:1521:x")
    )
    assert not pg.ddl_commits and maria.ddl_commits and maria.key_text_type == "VARCHAR(255)"
    assert sqlserver.create_empty.startswith("SELECT {columns} INTO {table}")
    assert oracle.add_column == "ALTER TABLE {table} ADD ({column} {type})"
    assert dialect_of("jdbc:sqlite:x.db").primary_key is None
    with pytest.raises(ValueError, match="delete_join must be one of"):
        dataclasses.replace(GENERIC, delete_join="merge")


def test_schema_changes_under_each_policy() -> None:
    incoming, target = ["ID", "status", "channel"], ["id", "status", "op"]
    with pytest.raises(MergeError, match="the query returns channel, which the target lacks; the target has op"):
        schema_changes(incoming, target, "fail", where="sequence s")
    assert schema_changes(incoming, target, "append_new_columns", where="s") == SchemaChanges(
        added=("channel",), kept=("op",)
    )
    assert schema_changes(incoming, target, "sync", where="s") == SchemaChanges(added=("channel",), dropped=("op",))
    assert not schema_changes(["Id", "STATUS"], ["id", "status"], "fail", where="s")
    with pytest.raises(MergeError, match="merge key 'id'"):
        schema_changes(["status"], ["id", "status"], "sync", where="s", keys=["id"])


def jdbc_target(**extra: Any) -> dict[str, Any]:
    return {
        "app_name": "v",
        "sequences": [
            {
                "name": "s",
                "query": "SELECT 1 AS id",
                "target": {"type": "jdbc", "url": "jdbc:postgresql://h/db", "table": "orders", **extra},
            }
        ],
    }


def test_a_jdbc_target_merges_and_says_what_it_cannot() -> None:
    loaded = load_config(jdbc_target(mode="merge", merge_keys=["id"], merge_condition="t.u < s.u"))
    assert loaded.sequences[0].writer.mode == "merge"
    with pytest.raises(ConfigError) as refused:
        load_config(jdbc_target(mode="merge", merge_keys=["id"], truncate=True, atomic=False))
    text = str(refused.value)
    assert "sequences[0].target.truncate: applies to mode overwrite or append" in text
    assert "sequences[0].target.atomic: applies to mode overwrite or append" in text
    with pytest.raises(ConfigError, match=r"target\.mode: 'scd2' is not one of"):
        load_config(jdbc_target(mode="scd2", merge_keys=["id"], scd2={"updated_at": "u"}))
    with pytest.raises(ConfigError, match="plain"):
        load_config(jdbc_target(mode="merge", merge_keys=["id"], table='"Odd Name"'))


def test_a_var_in_merge_condition_is_checked_as_database_sql() -> None:
    """merge_condition is the database's SQL: a value passed in may not change it."""
    config = jdbc_target(mode="merge", merge_keys=["id"], merge_condition="t.updated_at < '${since}'")
    assert load_config(config, {"since": "2024-01-01"}, vars_from="--var").sequences[0].target["merge_condition"] == (
        "t.updated_at < '2024-01-01'"
    )
    with pytest.raises(ConfigError, match="merge_condition: the value"):
        load_config(config, {"since": "x' OR '1' = '1"}, vars_from="--var")


def test_the_plan_shows_the_mode_keys_and_policy() -> None:
    from spark_job.plan import build_plan, render

    config = jdbc_target(
        mode="merge", merge_keys=["id"], delete_when="op = 'D'", deduplicate={"latest_by": "updated_at"}
    )
    text = render(build_plan(load_config(config)), "text")
    assert (
        "jdbc jdbc:postgresql://h/db orders (merge; merge_keys id; delete_when op = 'D'; deduplicate latest_by "
        "updated_at; on_schema_change fail)"
    ) in text
    document = json.loads(render(build_plan(load_config(config)), "json"))["sequences"]["s"]
    assert (document["mode"], document["merge_keys"], document["on_schema_change"]) == ("merge", ["id"], "fail")
