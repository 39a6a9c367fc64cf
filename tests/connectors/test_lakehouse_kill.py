"""A driver SIGKILLed in the middle of a Delta or Iceberg write (an overwrite, a merge) leaves the table at
its previous version, read back whole by the next run: each write is one commit of the format's log.

Real ``sparkpipe run`` processes with the connector jars of the running Spark in ``spark_conf`` (the
session settings the driver adds itself). Python 3.9: the matrix cells run it (see ``conftest.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .jars import spark_conf
from .runs import kill, run_driver, start_driver, wait_for

SLEEP = "CAST(length(java_method('java.lang.Thread', 'sleep', 300L)) AS BIGINT) AS slept"
# An overwrite's rows are slow in the writing tasks (after the shuffle): the first data file appears at
# once and the write goes on for a minute.
SLOW_WRITE = (
    f"SELECT id, v, {SLEEP} FROM (SELECT /*+ REPARTITION(2) */ CAST(id AS INT) AS id, 'new' AS v FROM range(0, 400))"
)
# A merge takes its rows in first (a job of their own), then runs the MERGE on the rows taken in: slow
# rows would only delay the MERGE, so a merge writes a few.
MERGED = 40
SLOW = f"SELECT /*+ REPARTITION(2) */ CAST(id AS INT) AS id, 'new' AS v, {SLEEP} FROM range(0, {MERGED})"


def pipeline(query: str, target: dict[str, Any], **extra: Any) -> dict[str, Any]:
    conf = {**spark_conf("delta", "iceberg"), "spark.sql.shuffle.partitions": "2"}
    return {
        "app_name": "lake-kill",
        "spark_conf": conf,
        "sequences": [{"name": "s", "query": query, "target": target}],
        **extra,
    }


def data_files(table: Path) -> list[Path]:
    return [p for p in table.rglob("*.parquet") if "_delta_log" not in p.parts and "metadata" not in p.parts]


def read_back(tmp_path: Path, source: dict[str, Any]) -> list[dict[str, Any]]:
    out = tmp_path / f"read-{len(list(tmp_path.glob('read-*')))}"
    config = pipeline("SELECT id, v FROM t", {"type": "json", "path": str(out)})
    config["sources"] = {"t": source}
    run = run_driver(tmp_path, config)
    assert run.status("s") == "succeeded", run.stderr[-5000:]
    rows = [json.loads(line) for f in sorted(out.glob("part-*.json")) for line in f.read_text().splitlines()]
    return sorted(rows, key=lambda r: r["id"])


@pytest.mark.parametrize(
    ("fmt", "mode"), [("delta", "overwrite"), ("delta", "merge"), ("iceberg", "overwrite"), ("iceberg", "merge")]
)
def test_a_killed_write_leaves_the_previous_version(tmp_path: Path, fmt: str, mode: str) -> None:
    table = tmp_path / "lake" / "db" / "orders"
    spec = {"type": fmt, "path": str(table)}
    first = run_driver(
        tmp_path, pipeline("SELECT CAST(id AS INT) AS id, 'old' AS v, 0L AS slept FROM range(0, 5)", spec)
    )
    assert first.status("s") == "succeeded", first.stderr[-5000:]
    before = read_back(tmp_path, spec)
    assert [r["v"] for r in before] == ["old"] * 5
    known = set(data_files(table))
    target = {**spec, "mode": mode, **({"merge_keys": ["id"]} if mode == "merge" else {})}
    proc = start_driver(tmp_path, pipeline(SLOW if mode == "merge" else SLOW_WRITE, target))
    # a new data file of the write exists: the driver is in the middle of writing
    wait_for(proc, lambda: bool(set(data_files(table)) - known), "a data file of the write", tmp_path / "driver.log")
    kill(proc)
    after = read_back(tmp_path, spec)
    if mode == "merge" and after != before:
        # The MERGE of rows already taken in is quick: the kill may come after its commit. Never a part of it.
        assert after == [{"id": i, "v": "new"} for i in range(MERGED)], after[:10]
    else:
        assert after == before
