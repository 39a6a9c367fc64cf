"""Writes on a Spark Connect session (no JVM on the client): the staged swap of local targets still holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spark_job.io import writers


def parquet_writer(path: Path, **more: Any) -> Any:
    cls = writers.get("parquet")
    assert cls is not None
    return cls({"type": "parquet", "path": str(path), **more})


def test_overwrite_on_connect_keeps_old_data_on_failure_and_swaps_on_success(
    spark_connect: Any, tmp_path: Path
) -> None:
    target = tmp_path / "out"
    spark_connect.range(4).selectExpr("id", "'old' AS version").write.parquet(str(target))

    failing = spark_connect.sql("SELECT IF(id = 3, raise_error('boom'), id) AS id, 'new' AS version FROM range(8)")
    with pytest.raises(Exception, match="boom"):
        parquet_writer(target).write(failing)
    old = spark_connect.read.parquet(str(target))
    assert sorted((r.id, r.version) for r in old.collect()) == [(i, "old") for i in range(4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

    parquet_writer(target).write(spark_connect.sql("SELECT id, 'new' AS version FROM range(6)"))
    new = spark_connect.read.parquet(str(target))
    assert sorted((r.id, r.version) for r in new.collect()) == [(i, "new") for i in range(6)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_staged_write_on_connect_is_invisible_until_committed(spark_connect: Any, tmp_path: Path) -> None:
    target = tmp_path / "staged"
    spark_connect.range(2).write.parquet(str(target))
    staged = parquet_writer(target).begin_write(spark_connect.range(9))
    assert spark_connect.read.parquet(str(target)).count() == 2
    assert len(list(tmp_path.glob(".staged.sparkpipe-lease.*.claim"))) == 1
    staged.commit()
    assert spark_connect.read.parquet(str(target)).count() == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["staged"]


def test_overwriting_what_the_query_reads_is_refused_on_connect(spark_connect: Any, tmp_path: Path) -> None:
    target = tmp_path / "self"
    spark_connect.range(3).write.parquet(str(target))
    with pytest.raises(ValueError, match="inside the target"):
        parquet_writer(target).write(spark_connect.read.parquet(str(target)))
    assert spark_connect.read.parquet(str(target)).count() == 3
