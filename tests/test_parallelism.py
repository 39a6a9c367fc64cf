"""The default degree of parallelism: one sequence per 4 of the session's cores, at least 1, at most 4
(``spark_job.engine.scheduler.default_max_parallel``), from the cores of a real session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spark_job.config.validation import load_config
from spark_job.engine.runner import PipelineRunner
from spark_job.engine.scheduler import (
    CORES_PER_SEQUENCE,
    DEFAULT_MAX_PARALLEL,
    MAX_DEFAULT_PARALLEL,
    default_max_parallel,
    session_cores,
)


def test_the_rule() -> None:
    assert CORES_PER_SEQUENCE == 4 and MAX_DEFAULT_PARALLEL == 4 and DEFAULT_MAX_PARALLEL == 1
    assert [default_max_parallel(c) for c in (1, 2, 3, 4, 7, 8, 12, 15, 16, 64, 1024)] == [
        1, 1, 1, 1, 1, 2, 3, 3, 4, 4, 4,
    ]  # fmt: skip
    assert default_max_parallel(None) == 1  # a session that does not say: one at a time
    assert default_max_parallel(0) == 1


def independent(tmp_path: Path, **top: Any) -> dict[str, Any]:
    return {
        "app_name": "parallelism",
        "sequences": [
            {
                "name": f"s{i}",
                "query": f"SELECT {i} AS x",
                "target": {"type": "parquet", "path": str(tmp_path / f"s{i}")},
            }
            for i in range(3)
        ],
        **top,
    }


def test_a_run_takes_its_default_from_the_sessions_cores(spark: Any, tmp_path: Path) -> None:
    """The test session is local[2]: 2 cores, one sequence at a time; the config and the caller still win."""
    assert session_cores(spark) == spark.sparkContext.defaultParallelism == 2
    metrics = PipelineRunner(load_config(independent(tmp_path / "a")), spark=spark).run()
    assert metrics["status"] == "succeeded"
    assert (metrics["max_parallel"], metrics["max_concurrency"]) == (1, 1)

    metrics = PipelineRunner(load_config(independent(tmp_path / "b", max_parallel=3)), spark=spark).run()
    assert metrics["max_parallel"] == 3
    metrics = PipelineRunner(load_config(independent(tmp_path / "c")), spark=spark, max_parallel=2).run()
    assert metrics["max_parallel"] == 2
