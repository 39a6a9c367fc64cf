"""Delta Lake and Apache Iceberg targets and sources on real tables (local path tables, a Hadoop catalog and
Spark's session catalog), through the real runner on a session with the jars of the running Spark: every
save mode, dynamic partition overwrite, time travel, ``merge`` (SCD1) with each option, ``scd2``,
duplicate keys, schema drift under each policy, partition pruning, idempotent reruns, failing ``fail``
rules, and the metrics of each write.

Python 3.9, pytest and pyspark only: the matrix cells whose Spark has Delta and Iceberg releases run it
(py39-spark35, py310-spark40); see ``conftest.py``.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from .lake_session import LakeSession

FORMATS = ("delta", "iceberg")
_names = itertools.count()


def config(*sequences: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"app_name": "lakehouse", "sequences": list(sequences), **extra}


def seq(name: str, query: str, target: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "query": query, "target": target, **extra}


def values(rows: list[tuple[Any, ...]], columns: str) -> str:
    """A query returning ``rows`` with ``columns`` (``id INT, v STRING``)."""
    body = ", ".join("(" + ", ".join(_lit(v) for v in row) + ")" for row in rows)
    names = ", ".join(c.split()[0] for c in columns.split(","))
    casts = ", ".join(f"CAST({c.split()[0]} AS {c.split()[1]}) AS {c.split()[0]}" for c in columns.split(","))
    return f"SELECT {casts} FROM VALUES {body} AS v({names})"


def _lit(value: Any) -> str:
    if value is None:
        return "NULL"
    return f"'{value}'" if isinstance(value, str) else str(value)


def ok(metrics: dict[str, Any], name: str = "s") -> dict[str, Any]:
    found = metrics["sequences"][name]
    assert found["status"] == "succeeded", found["error"]
    return dict(found)


def failed(metrics: dict[str, Any], name: str = "s") -> str:
    found = metrics["sequences"][name]
    assert found["status"] == "failed", found
    return str(found["error"])


class Table:
    """A fresh table of one format: a path table under ``tmp_path`` or a catalog table."""

    def __init__(self, lake: LakeSession, fmt: str, tmp_path: Path, catalog: bool = False) -> None:
        self.lake, self.fmt = lake, fmt
        number = next(_names)
        if catalog:
            self.spec: dict[str, Any] = {"table": f"lake.db.t{number}" if fmt == "iceberg" else f"default.t{number}"}
            self.name = self.spec["table"]
        else:
            path = f"{tmp_path}/tables/t{number}"
            self.spec = {"path": path}
            self.name = f"delta.`{path}`" if fmt == "delta" else None
            self.path = path

    def target(self, **settings: Any) -> dict[str, Any]:
        return {"type": self.fmt, **self.spec, **settings}

    def rows(self, order: str = "id", where: str = "TRUE") -> list[tuple[Any, ...]]:
        found = self.lake.rows(f"SELECT * FROM {self.sql_name} WHERE {where} ORDER BY {order}")
        return [tuple(r.values()) for r in found]

    @property
    def sql_name(self) -> str:
        from spark_job.io.lake_tables import LakeTable

        return LakeTable(self.fmt, path=self.spec.get("path"), table=self.spec.get("table")).name


@pytest.fixture(params=FORMATS)
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_save_modes_partitions_and_time_travel(lake: LakeSession, fmt: str, tmp_path: Path) -> None:
    table = Table(lake, fmt, tmp_path)
    columns = "id INT, day STRING, v STRING"
    first = [(1, "d1", "a"), (2, "d1", "b"), (3, "d2", "c")]
    target = table.target(partition_by=["day"])
    assert ok(lake.run(config(seq("s", values(first, columns), target))))["rows_written"] == 3
    ok(lake.run(config(seq("s", values([(4, "d3", "d")], columns), {**target, "mode": "append"}))))
    assert [r[0] for r in table.rows()] == [1, 2, 3, 4]
    dynamic = {**target, "dynamic_partition_overwrite": True}
    ok(lake.run(config(seq("s", values([(5, "d1", "e")], columns), dynamic))))
    assert table.rows() == [(3, "d2", "c"), (4, "d3", "d"), (5, "d1", "e")]  # only d1 replaced
    ok(lake.run(config(seq("s", values([(9, "d9", "z")], columns), target))))
    assert table.rows() == [(9, "d9", "z")]
    ok(lake.run(config(seq("s", values([(8, "d8", "y")], columns), {**target, "mode": "ignore"}))))
    assert table.rows() == [(9, "d9", "z")]
    error = failed(lake.run(config(seq("s", values([(8, "d8", "y")], columns), {**target, "mode": "error"}))))
    assert "exist" in error.lower()
    if fmt == "delta":
        first_version = 0
    else:
        snapshots = lake.rows(f"SELECT snapshot_id FROM {table.sql_name}.snapshots ORDER BY committed_at")
        first_version = int(snapshots[0]["snapshot_id"])
    # the source type reads a version back (time travel) and registers it as a view
    copy = {"type": "json", "path": f"{tmp_path}/copy"}
    source = {"type": fmt, **table.spec, "version": first_version}
    ok(lake.run(config(seq("s", "SELECT id FROM old", copy), sources={"old": source})))
    assert sorted(r["id"] for r in lake.rows(f"SELECT id FROM json.`{tmp_path}/copy`")) == [1, 2, 3]


def test_catalog_tables(lake: LakeSession, fmt: str, tmp_path: Path) -> None:
    table = Table(lake, fmt, tmp_path, catalog=True)
    columns = "id INT, v STRING"
    ok(lake.run(config(seq("s", values([(1, "a")], columns), table.target()))))
    ok(lake.run(config(seq("s", values([(2, "b")], columns), table.target(mode="append")))))
    assert lake.rows(f"SELECT id FROM {table.name} ORDER BY id") == [{"id": 1}, {"id": 2}]
    merged = ok(
        lake.run(config(seq("s", values([(2, "B"), (3, "c")], columns), table.target(mode="merge", merge_keys=["id"]))))
    )
    assert lake.rows(f"SELECT * FROM {table.name} ORDER BY id") == [
        {"id": 1, "v": "a"},
        {"id": 2, "v": "B"},
        {"id": 3, "v": "c"},
    ]
    assert (merged["rows_inserted"], merged["rows_updated"]) == (1, 1)


def test_merge_upserts_deletes_and_reruns(lake: LakeSession, fmt: str, tmp_path: Path) -> None:
    table = Table(lake, fmt, tmp_path)
    columns = "id INT, status STRING, updated INT, op STRING"
    target = table.target(mode="merge", merge_keys=["id"], delete_when="op = 'D'")
    first = ok(
        lake.run(
            config(seq("s", values([(1, "new", 1, "U"), (2, "new", 1, "U"), (3, "new", 1, "D")], columns), target))
        )
    )
    assert (first["rows_written"], first["rows_inserted"]) == (3, 2)  # a delete of an absent key inserts nothing
    assert table.rows() == [(1, "new", 1, "U"), (2, "new", 1, "U")]
    change = [(1, "paid", 2, "U"), (2, "x", 2, "D"), (4, "new", 2, "U")]
    second = ok(lake.run(config(seq("s", values(change, columns), target))))
    assert table.rows() == [(1, "paid", 2, "U"), (4, "new", 2, "U")]
    if fmt == "delta":  # Iceberg's snapshot summary cannot split them when delete_when is set
        assert (second["rows_inserted"], second["rows_updated"], second["rows_deleted"]) == (1, 1, 1)
    ok(lake.run(config(seq("s", values(change, columns), target))))  # the same rows again
    assert table.rows() == [(1, "paid", 2, "U"), (4, "new", 2, "U")]
    older = {**target, "merge_condition": "t.updated < s.updated"}
    ok(lake.run(config(seq("s", values([(1, "stale", 1, "U"), (4, "shipped", 3, "U")], columns), older))))
    assert table.rows() == [(1, "paid", 2, "U"), (4, "shipped", 3, "U")]  # an older change never wins


def test_merge_update_and_exclude_columns(lake: LakeSession, fmt: str, tmp_path: Path) -> None:
    table = Table(lake, fmt, tmp_path)
    columns = "id INT, a STRING, b STRING"
    ok(lake.run(config(seq("s", values([(1, "a1", "b1")], columns), table.target(mode="merge", merge_keys=["id"])))))
    only_a = table.target(mode="merge", merge_keys=["id"], merge_update_columns=["a"])
    ok(lake.run(config(seq("s", values([(1, "a2", "b2"), (2, "a2", "b2")], columns), only_a))))
    assert table.rows() == [(1, "a2", "b1"), (2, "a2", "b2")]
    not_a = table.target(mode="merge", merge_keys=["id"], merge_exclude_columns=["a"])
    # columns matched by name: the query's order differs from the table's
    ok(lake.run(config(seq("s", "SELECT 'b3' AS b, 'a3' AS a, 1 AS id", not_a))))
    assert table.rows() == [(1, "a2", "b3"), (2, "a2", "b2")]


def test_duplicate_keys_write_nothing_or_keep_the_latest(lake: LakeSession, fmt: str, tmp_path: Path) -> None:
    table = Table(lake, fmt, tmp_path)
    columns = "id INT, v STRING, at INT"
    target = table.target(mode="merge", merge_keys=["id"])
    ok(lake.run(config(seq("s", values([(1, "a", 1)], columns), target))))
    twice = [(1, "b", 2), (1, "c", 3), (2, "d", 1)]
    error = (
        failed(
            lake.run(
                config(
                    seq("orders", values(twice, columns), target),
                )
            ),
            "orders",
        )
        if False
        else None
    )
    result = lake.run(config(seq("orders", values(twice, columns), target)))
    error = failed(result, "orders")
    assert "sequence orders" in error and "merge_keys (id)" in error and "(id=1) in 2 rows" in error
    assert table.rows() == [(1, "a", 1)]  # nothing written
    latest = {**target, "deduplicate": {"latest_by": "at"}}
    ok(
        lake.run(
            config(seq("orders", values(twice, columns), latest)),
        ),
        "orders",
    )
    assert table.rows() == [(1, "c", 3), (2, "d", 1)]


@pytest.mark.parametrize("policy", ["fail", "append_new_columns", "sync"])
def test_schema_drift_policies(lake: LakeSession, fmt: str, tmp_path: Path, policy: str) -> None:
    table = Table(lake, fmt, tmp_path)
    target = table.target(mode="merge", merge_keys=["id"], on_schema_change=policy)
    ok(lake.run(config(seq("s", "SELECT 1 AS id, 'a' AS old, 'x' AS kept", target))))
    result = lake.run(config(seq("s", "SELECT 2 AS id, 'b' AS new, 'y' AS kept", target)))
    if policy == "fail":
        error = failed(result)
        assert "the query returns new, which the target lacks" in error and "old" in error
        assert table.rows() == [(1, "a", "x")]
        return
    ok(result)
    rows = lake.rows(f"SELECT * FROM {table.sql_name} ORDER BY id")
    if policy == "append_new_columns":
        assert rows == [
            {"id": 1, "old": "a", "kept": "x", "new": None},
            {"id": 2, "old": None, "kept": "y", "new": "b"},
        ]
    else:
        assert rows == [{"id": 1, "kept": "x", "new": None}, {"id": 2, "kept": "y", "new": "b"}]


def test_merge_prunes_to_the_partitions_touched(lake: LakeSession, tmp_path: Path) -> None:
    table = Table(lake, "delta", tmp_path)
    target = table.target(mode="merge", merge_keys=["day", "id"], partition_by=["day"])
    rows = ", ".join(f"({i}, 'd{i % 5}', 'v')" for i in range(50))
    ok(lake.run(config(seq("s", f"SELECT * FROM VALUES {rows} AS v(id, day, v)", target))))
    ok(lake.run(config(seq("s", "SELECT 3 AS id, 'd3' AS day, 'w' AS v", target))))
    history = lake.rows(f"DESCRIBE HISTORY {table.name} LIMIT 1")[0]["operationMetrics"]

    def files(where: str) -> set[str]:
        return {r["f"] for r in lake.rows(f"SELECT input_file_name() AS f FROM {table.name} WHERE {where}")}

    touched, untouched = files("day = 'd3'"), files("day <> 'd3'")
    assert touched and untouched and not touched & untouched
    # only the touched partition's files were rewritten; the other four partitions' were not read for rewriting
    assert 1 <= int(history["numTargetFilesRemoved"]) <= len(touched)
    assert table.rows(where="id = 3") == [(3, "d3", "w")]


def test_scd2_history(lake: LakeSession, fmt: str, tmp_path: Path) -> None:
    table = Table(lake, fmt, tmp_path)
    columns = "id INT, city STRING, changed INT, op STRING"
    target = table.target(mode="scd2", merge_keys=["id"], scd2={"updated_at": "changed"}, delete_when="op = 'D'")

    def history() -> list[tuple[Any, ...]]:
        return [(r[0], r[1], r[4], r[5], r[6]) for r in table.rows(order="id, valid_from")]

    ok(lake.run(config(seq("s", values([(1, "Oslo", 10, "U"), (2, "Rome", 10, "U")], columns), target))))
    assert history() == [(1, "Oslo", 10, None, True), (2, "Rome", 10, None, True)]
    moved = ok(lake.run(config(seq("s", values([(1, "Bergen", 20, "U"), (2, "Rome", 20, "U")], columns), target))))
    assert history() == [(1, "Oslo", 10, 20, False), (1, "Bergen", 20, None, True), (2, "Rome", 10, None, True)]
    assert (moved["rows_inserted"], moved["rows_updated"]) == (1, 1)
    # out of order: a change at 15 lands between 10 and 20
    ok(lake.run(config(seq("s", values([(1, "Paris", 15, "U")], columns), target))))
    expected = [
        (1, "Oslo", 10, 15, False),
        (1, "Paris", 15, 20, False),
        (1, "Bergen", 20, None, True),
        (2, "Rome", 10, None, True),
    ]
    assert history() == expected
    # a delete closes the current version
    ok(lake.run(config(seq("s", values([(2, "Rome", 30, "D")], columns), target))))
    expected[3] = (2, "Rome", 10, 30, False)
    assert history() == expected
    # the same rows again change nothing
    again = ok(lake.run(config(seq("s", values([(1, "Paris", 15, "U"), (2, "Rome", 30, "D")], columns), target))))
    assert history() == expected
    assert (again["rows_inserted"], again["rows_updated"]) == (0, 0)


def test_scd2_check_columns(lake: LakeSession, fmt: str, tmp_path: Path) -> None:
    table = Table(lake, fmt, tmp_path)
    target = table.target(mode="scd2", merge_keys=["id"], scd2={"check_columns": ["city"]})
    ok(lake.run(config(seq("s", "SELECT 1 AS id, 'Oslo' AS city, 1 AS noise", target))))
    ok(lake.run(config(seq("s", "SELECT 1 AS id, 'Oslo' AS city, 2 AS noise", target))))  # not a checked column
    assert len(table.rows()) == 1
    ok(lake.run(config(seq("s", "SELECT 1 AS id, 'Rome' AS city, 3 AS noise", target))))
    rows = table.rows(order="valid_from")
    assert [(r[1], r[5]) for r in rows] == [("Oslo", False), ("Rome", True)]
    assert rows[0][4] == rows[1][3]  # the old version ends when the new one starts


@pytest.mark.parametrize("mode", ["overwrite", "append", "merge"])
def test_a_failing_fail_rule_leaves_the_previous_version(
    lake: LakeSession, fmt: str, tmp_path: Path, mode: str
) -> None:
    table = Table(lake, fmt, tmp_path)
    settings = {"mode": mode, "merge_keys": ["id"]} if mode == "merge" else {"mode": mode}
    ok(lake.run(config(seq("s", "SELECT 1 AS id, 'a' AS v", table.target(**settings)))))
    rule = [{"name": "no_bad", "condition": "v <> 'bad'", "on_fail": "fail"}]
    bad = seq("s", "SELECT 1 AS id, 'bad' AS v UNION ALL SELECT 2, 'b'", table.target(**settings), expectations=rule)
    assert "no_bad" in failed(lake.run(config(bad)))
    assert table.rows() == [(1, "a")]
    # a tolerance or a row bound is decided on the write's counts: a failure rolls the version back
    tolerated = [{**rule[0], "max_failed": 5}]
    assert "max_rows" in failed(lake.run(config({**bad, "expectations": tolerated, "max_rows": 1})))
    assert table.rows() == [(1, "a")]


def test_a_failing_overwrite_that_changes_the_columns_leaves_the_old_columns_and_rows(
    lake: LakeSession, fmt: str, tmp_path: Path
) -> None:
    table = Table(lake, fmt, tmp_path)
    ok(lake.run(config(seq("s", "SELECT 1 AS id, 'a' AS v, 7 AS kept", table.target(mode="overwrite")))))
    rule = [{"name": "no_bad", "condition": "v <> 'bad'", "on_fail": "fail"}]
    changed = table.target(mode="overwrite", partition_by=["v"])
    bad = seq("s", "SELECT 2 AS id, 'bad' AS v, 3.5 AS added", changed, expectations=rule)
    assert "no_bad" in failed(lake.run(config(bad)))
    assert lake.rows(f"SELECT * FROM {table.sql_name}") == [{"id": 1, "v": "a", "kept": 7}]
    good = seq("s", "SELECT 2 AS id, 'b' AS v, 3.5 AS added", changed, expectations=rule)
    ok(lake.run(config(good)))
    assert [(r["id"], r["v"], float(r["added"])) for r in lake.rows(f"SELECT * FROM {table.sql_name}")] == [
        (2, "b", 3.5)
    ]
    # nothing was left beside the table
    assert sorted(p.name for p in Path(table.path).parent.iterdir()) == [Path(table.path).name]


def test_a_merge_of_rows_drawn_at_random_merges_the_rows_the_checks_saw(
    lake: LakeSession, fmt: str, tmp_path: Path
) -> None:
    """A query with uuid()/rand() is computed once: the keys checked, the rules counted and the rows merged
    are the same rows (Iceberg on Spark 3.5 refuses a MERGE source that is not deterministic)."""
    table = Table(lake, fmt, tmp_path)
    target = table.target(mode="merge", merge_keys=["id"])
    query = "SELECT id, uuid() AS token, rand() AS r FROM range(0, 20)"
    rule = [{"name": "low", "condition": "r < 0.5", "on_fail": "warn"}]
    first = ok(lake.run(config(seq("s", query, target, expectations=rule))))
    failing = first["expectations"]["low"]["failed_rows"]
    counted = "count(*) AS n, count(DISTINCT token) AS tokens, sum(CAST(r >= 0.5 AS INT)) AS high"
    rows = lake.rows(f"SELECT {counted} FROM {table.sql_name}")
    assert rows == [{"n": 20, "tokens": 20, "high": failing}]
    again = ok(lake.run(config(seq("s", query, target))))
    assert (again["rows_written"], lake.rows(f"SELECT count(*) AS n FROM {table.sql_name}")) == (20, [{"n": 20}])
