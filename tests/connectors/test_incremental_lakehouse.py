"""Incremental runs into Delta Lake and Apache Iceberg tables, on a session with the jars of the running
Spark: a watermarked merge with a lookback (late changes of known keys), a watermarked append, new files
appended to a Delta table batch by batch, each equal to one full run over all the data; the watermark
read from the committed table and the commit's properties recorded with it.

Python 3.9, pytest and pyspark only: the matrix cells whose Spark has Delta and Iceberg releases run it
(py39-spark35, py310-spark40); see ``conftest.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .lake_session import LakeSession

SCHEMA = "id BIGINT, status STRING, updated_at TIMESTAMP"


def land(folder: Path, name: str, rows: list[tuple[int, str, str]]) -> None:
    """One JSON file of changes (id, status, updated_at), written aside and renamed in."""
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps({"id": i, "status": s, "updated_at": u}) + "\n" for i, s, u in rows)
    (folder.parent / f".{name}").write_text(text)
    (folder.parent / f".{name}").rename(folder / name)


def changes_config(source: Path, target: dict[str, Any], incremental: dict[str, Any] | None) -> dict[str, Any]:
    seq: dict[str, Any] = {"name": "s", "query": "SELECT id, status, updated_at FROM changes", "target": target}
    if incremental is not None:
        seq["incremental"] = incremental
    return {
        "app_name": "incremental_lake",
        "sources": {"changes": {"type": "file", "format": "json", "path": str(source), "schema": SCHEMA}},
        "sequences": [seq],
    }


def ok(metrics: dict[str, Any]) -> dict[str, Any]:
    found = metrics["sequences"]["s"]
    assert found["status"] == "succeeded", found["error"]
    return dict(found)


def sql_name(fmt: str, path: str) -> str:
    from spark_job.io.lake_tables import LakeTable

    return LakeTable(fmt, path=path).name


def table_rows(lake: LakeSession, name: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(r.values()) for r in lake.rows(f"SELECT id, status, CAST(updated_at AS STRING) FROM {name}"))


@pytest.mark.parametrize("fmt", ["delta", "iceberg"])
def test_a_watermarked_merge_with_late_changes_equals_one_full_run(lake: LakeSession, fmt: str, tmp_path: Path) -> None:
    source = tmp_path / "changes"
    target: dict[str, Any] = {"type": fmt, "path": str(tmp_path / "orders"), "mode": "merge", "merge_keys": ["id"]}
    target["merge_condition"] = "t.updated_at <= s.updated_at"  # an older change never wins
    target["deduplicate"] = {"latest_by": "updated_at"}  # the full run reads every change of a key at once
    incremental = {"source": "changes", "column": "updated_at", "lookback": "30 minutes"}
    land(source, "1.json", [(1, "new", "2024-01-01 08:00:00"), (2, "new", "2024-01-01 09:00:00")])
    first = ok(lake.run(changes_config(source, target, incremental)))
    assert first["incremental"]["full_refresh"] is True and first["rows_written"] == 2

    land(source, "2.json", [(1, "paid", "2024-01-01 10:00:00"), (3, "new", "2024-01-01 11:00:00")])
    second = ok(lake.run(changes_config(source, target, incremental)))
    assert second["incremental"]["watermark_before"] == "2024-01-01T09:00:00"
    # updated_at >= 09:00 - 30 minutes: the change at 08:00 is not read again, the one at 09:00 is
    assert second["incremental"]["rows_read"] == 3 and second["incremental"]["watermark_after"] == "2024-01-01T11:00:00"

    # A late change (10:30: the watermark 11:00 minus the lookback) and a new order.
    land(source, "3.json", [(2, "cancelled", "2024-01-01 10:30:00"), (4, "new", "2024-01-01 12:00:00")])
    third = ok(lake.run(changes_config(source, target, incremental)))
    assert third["incremental"]["rows_read"] == 3  # 11:00, 10:30 (late) and 12:00

    # The full recompute: every change read at once, the latest per key, the table replaced.
    full = {"type": fmt, "path": str(tmp_path / "orders_full")}
    recompute = changes_config(source, full, None)
    recompute["sequences"][0]["query"] = (
        "SELECT id, status, updated_at FROM (SELECT *, row_number() OVER (PARTITION BY id ORDER BY updated_at DESC) "
        "AS n FROM changes) WHERE n = 1"
    )
    ok(lake.run(recompute))
    got = table_rows(lake, sql_name(fmt, target["path"]))
    assert got == table_rows(lake, sql_name(fmt, full["path"]))
    assert got == [
        (1, "paid", "2024-01-01 10:00:00"),
        (2, "cancelled", "2024-01-01 10:30:00"),
        (3, "new", "2024-01-01 11:00:00"),
        (4, "new", "2024-01-01 12:00:00"),
    ]


def test_a_watermarked_append_records_where_it_read_from(lake: LakeSession, tmp_path: Path) -> None:
    source, path = tmp_path / "changes", str(tmp_path / "log")
    target = {"type": "delta", "path": path, "mode": "append"}
    incremental = {"source": "changes", "column": "updated_at"}
    land(source, "1.json", [(1, "new", "2024-01-01 08:00:00")])
    ok(lake.run(changes_config(source, target, incremental)))
    land(source, "2.json", [(2, "new", "2024-01-01 09:00:00"), (3, "new", "2024-01-01 09:30:00")])
    second = ok(lake.run(changes_config(source, target, incremental)))
    assert second["rows_written"] == 2
    nothing = ok(lake.run(changes_config(source, target, incremental)))
    assert nothing["rows_written"] == 0 and nothing["incremental"]["watermark_after"] == "2024-01-01T09:30:00"
    assert [r[0] for r in table_rows(lake, f"delta.`{path}`")] == [1, 2, 3]
    history = lake.rows(f"DESCRIBE HISTORY delta.`{path}`")
    recorded = [json.loads(h["userMetadata"]) for h in history if h["userMetadata"]]
    assert {"sparkpipe.incremental.column": "updated_at", "sparkpipe.incremental.read_from": "2024-01-01T08:00:00"} in (
        recorded
    )


def test_new_files_are_appended_to_a_delta_table_once(lake: LakeSession, tmp_path: Path) -> None:
    source, path = tmp_path / "drops", str(tmp_path / "taken")
    for i in range(3):
        land(source, f"f{i}.json", [(i, "new", f"2024-01-0{i + 1} 08:00:00")])
    config = {
        "app_name": "files_to_delta",
        "sources": {
            "drops": {
                "type": "file",
                "format": "json",
                "path": str(source),
                "schema": SCHEMA,
                "incremental": {"files": True, "max_files_per_trigger": 2},
            }
        },
        "sequences": [
            {"name": "s", "query": "SELECT * FROM drops", "target": {"type": "delta", "path": path, "mode": "append"}}
        ],
    }
    first = ok(lake.run(config))
    assert first["rows_written"] == 3 and first["incremental"]["batches"] == [0, 1]
    assert (tmp_path / ".taken.sparkpipe-checkpoints" / "s" / "commits" / "1").exists()  # beside the target
    land(source, "f3.json", [(3, "new", "2024-01-04 08:00:00")])
    second = ok(lake.run(config))
    assert second["rows_written"] == 1 and second["incremental"]["batches"] == [2]
    assert [r[0] for r in table_rows(lake, f"delta.`{path}`")] == [0, 1, 2, 3]
    # Each batch is one Delta commit, written with the stream and the batch id (Delta's idempotent writes).
    assert len(lake.rows(f"DESCRIBE HISTORY delta.`{path}`")) == 3
    refreshed = ok(lake.run({**config, "full_refresh": True}))
    assert refreshed["rows_written"] == 4 and [r[0] for r in table_rows(lake, f"delta.`{path}`")] == [0, 1, 2, 3]
