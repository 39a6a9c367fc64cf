"""A driver SIGKILLed in the middle of a Delta or Iceberg write (an overwrite, a merge) leaves the table at
its previous version, read back whole by the next run: each write is one commit of the format's log.

The killed write is a real ``sparkpipe run`` process with the connector jars of the running Spark in
``spark_conf`` (the session settings the driver adds itself); the first version is written, and every
version read back, on the module's Delta and Iceberg session (``lake_session``), so that a case starts
one JVM besides it. Python 3.9: the matrix cells run it (see ``conftest.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spark_job.io.lake_tables import LakeTable

from .jars import spark_conf
from .lake_session import LakeSession
from .runs import kill, start_driver, wait_for

NAP = "CAST(length(java_method('java.lang.Thread', 'sleep', 300L)) AS BIGINT)"  # 0.3 s per row
# An overwrite's rows are slow in the writing tasks (after the shuffle), but for the first task's: its data
# file appears at once (Iceberg shows a file when its task ends) and the write goes on for a minute.
SLOW_WRITE = (
    f"SELECT id, v, CASE WHEN spark_partition_id() = 0 THEN 0L ELSE {NAP} END AS slept"
    " FROM (SELECT /*+ REPARTITION(2) */ CAST(id AS INT) AS id, 'new' AS v FROM range(0, 400))"
)
# A merge takes its rows in first (a job of their own), then runs the MERGE on the rows taken in: slow
# rows would only delay the MERGE, so a merge writes a few.
MERGED = 40
SLOW = f"SELECT /*+ REPARTITION(2) */ CAST(id AS INT) AS id, 'new' AS v, {NAP} AS slept FROM range(0, {MERGED})"


def pipeline(query: str, target: dict[str, Any]) -> dict[str, Any]:
    conf = {**spark_conf("delta", "iceberg"), "spark.sql.shuffle.partitions": "2"}
    return {"app_name": "lake-kill", "spark_conf": conf, "sequences": [{"name": "s", "query": query, "target": target}]}


def data_files(table: Path) -> list[Path]:
    return [p for p in table.rglob("*.parquet") if "_delta_log" not in p.parts and "metadata" not in p.parts]


def read_back(lake: LakeSession, fmt: str, table: Path) -> list[dict[str, Any]]:
    """The table's current version, as a reader finds it."""
    name = LakeTable(fmt, path=str(table)).name
    return lake.rows(f"SELECT id, v FROM {name} ORDER BY id")


@pytest.mark.parametrize(
    ("fmt", "mode"), [("delta", "overwrite"), ("delta", "merge"), ("iceberg", "overwrite"), ("iceberg", "merge")]
)
def test_a_killed_write_leaves_the_previous_version(lake: LakeSession, tmp_path: Path, fmt: str, mode: str) -> None:
    table = tmp_path / "lake" / "db" / "orders"
    spec = {"type": fmt, "path": str(table)}
    first = {"name": "s", "query": "SELECT CAST(id AS INT) AS id, 'old' AS v, 0L AS slept FROM range(0, 5)"}
    metrics = lake.run({"app_name": "lake-kill", "sequences": [{**first, "target": spec}]})
    assert metrics["sequences"]["s"]["status"] == "succeeded", metrics["sequences"]["s"]["error"]
    before = read_back(lake, fmt, table)
    assert before == [{"id": i, "v": "old"} for i in range(5)]
    known = set(data_files(table))
    target = {**spec, "mode": mode, **({"merge_keys": ["id"]} if mode == "merge" else {})}
    proc = start_driver(tmp_path, pipeline(SLOW if mode == "merge" else SLOW_WRITE, target))
    # a new data file of the write exists: the driver is in the middle of writing
    wait_for(proc, lambda: bool(set(data_files(table)) - known), "a data file of the write", tmp_path / "driver.log")
    kill(proc)
    after = read_back(lake, fmt, table)
    if mode == "merge" and after != before:
        # The MERGE of rows already taken in is quick: the kill may come after its commit. Never a part of it.
        assert after == [{"id": i, "v": "new"} for i in range(MERGED)], after[:10]
    else:
        assert after == before
