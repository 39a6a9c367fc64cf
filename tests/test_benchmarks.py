"""The benchmark configs validate and stay in step with their handwritten twins (the harness refuses
to compare programs that are not the same pipeline)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from spark_job.config.validation import load_config

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
PAIRS = [
    ("pipeline.yaml", "handwritten.py"),
    ("wide.yaml", "handwritten_wide.py"),
    ("wide_csv.yaml", "handwritten_wide_csv.py"),  # the same pipeline over the CSV copies
    ("intermediate.yaml", "handwritten_intermediate.py"),
    ("wide.yaml", "sdp_wide.py"),  # the same pipeline as a Spark Declarative Pipelines project
]


def harness() -> Any:
    spec = importlib.util.spec_from_file_location("sparkpipe_bench_compare", BENCHMARKS / "compare.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("config", "program"), PAIRS)
def test_a_benchmark_config_validates_and_matches_its_handwritten_twin(config: str, program: str) -> None:
    load_config(BENCHMARKS / config)
    pipeline = yaml.safe_load((BENCHMARKS / config).read_text())
    assert harness().check_in_step(pipeline, BENCHMARKS / program) == []


def test_the_harness_notices_a_twin_out_of_step(tmp_path: Path) -> None:
    pipeline = yaml.safe_load((BENCHMARKS / "intermediate.yaml").read_text())
    pipeline["sequences"][1]["query"] += " HAVING count(*) > 1"
    assert harness().check_in_step(pipeline, BENCHMARKS / "handwritten_intermediate.py")


def test_the_declarative_pipelines_twin_declares_each_step_as_a_materialized_view(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("sparkpipe_bench_sdp", BENCHMARKS / "sdp_wide.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    spec_file = module.project(tmp_path / "project", "/data")
    sql = (tmp_path / "project" / "transformations" / "wide.sql").read_text()
    assert sql.count("CREATE MATERIALIZED VIEW") == len(module.SQL) == 12
    assert "CREATE TEMPORARY VIEW events AS SELECT * FROM parquet.`/data/events`" in sql
    assert yaml.safe_load(spec_file.read_text())["configuration"] == module.SPARK_CONF
