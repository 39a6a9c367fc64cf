"""The example data shipped with the DAGs is what its generator writes."""

from __future__ import annotations

import runpy
from pathlib import Path

from tests.provider.support import EXAMPLES


def test_generator_reproduces_the_shipped_files(tmp_path: Path) -> None:
    generate = runpy.run_path(str(EXAMPLES / "data" / "generate.py"))["generate"]
    generate(tmp_path)
    for name in ("customers.csv", "orders.csv"):
        assert (tmp_path / name).read_bytes() == (EXAMPLES / "data" / "shop" / name).read_bytes(), name


def test_generator_scales(tmp_path: Path) -> None:
    generate = runpy.run_path(str(EXAMPLES / "data" / "generate.py"))["generate"]
    generate(tmp_path, customers=100, orders=5000, seed=1)
    assert len((tmp_path / "orders.csv").read_text().splitlines()) == 5001
    assert len((tmp_path / "customers.csv").read_text().splitlines()) == 101
