"""Validation time against config size: 1k, 10k and 20k sequences and sources, valid and invalid, YAML and JSON.

    python benchmarks/validation_scaling.py [--sizes 1000,10000,20000]

Prints the seconds per case and the ratio of the largest two sizes (2.0 is linear growth for 10k → 20k).
Each case writes its config to a temporary folder and times ``load_config`` on the file (parse + validate).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from spark_job.config.validation import load_config
from spark_job.errors import ConfigError


def chain(n: int) -> dict[str, Any]:
    """n sources and n sequences, each sequence reading its source and the previous sequence, listed in
    reverse order (the graph must reorder them)."""
    sources = {f"src{i}": {"type": "file", "format": "parquet", "path": f"/data/src{i}"} for i in range(n)}
    sequences = [
        {
            "name": f"s{i}",
            "query": f"SELECT a.*, '${{day}}' AS day FROM src{i} a" + (f" JOIN s{i - 1} b ON a.id = b.id" if i else ""),
            "target": {"type": "parquet", "path": f"/out/s{i}", "mode": "overwrite"},
        }
        for i in reversed(range(n))
    ]
    return {"app_name": "scale", "vars": {"day": "2024-01-01"}, "sources": sources, "sequences": sequences}


def unknown_relations(n: int) -> dict[str, Any]:
    config = chain(n)
    for seq in config["sequences"]:
        seq["query"] = seq["query"].replace("FROM src", "FROM missing_src")
    return config


def undefined_vars(n: int) -> dict[str, Any]:
    config = chain(n)
    for i, seq in enumerate(config["sequences"]):
        seq["query"] = seq["query"].replace("${day}", f"${{undefined_{i}}}")
    return config


def parentheses(n: int) -> dict[str, Any]:
    config = chain(1)
    config["sequences"][0]["query"] = "SELECT " + "(" * n + "1" + ")" * n + " AS x FROM src0"
    return config


CASES: dict[str, tuple[Callable[[int], dict[str, Any]], bool]] = {
    "valid chain": (chain, True),
    "unknown relations": (unknown_relations, False),
    "undefined vars": (undefined_vars, False),
    "runs of parentheses": (parentheses, True),
}


def time_case(config: dict[str, Any], suffix: str, valid: bool, folder: Path) -> float:
    path = folder / f"config{suffix}"
    path.write_text(json.dumps(config) if suffix == ".json" else yaml.safe_dump(config, sort_keys=False))
    start = time.perf_counter()
    try:
        load_config(path)
        ok = True
    except ConfigError:
        ok = False
    elapsed = time.perf_counter() - start
    if ok != valid:
        raise SystemExit(f"{path}: expected {'valid' if valid else 'invalid'}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,20000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"libyaml: {getattr(yaml, '__with_libyaml__', False)}")
    print(f"{'case':<22}{'format':<7}" + "".join(f"{n:>10,}" for n in sizes) + f"{'ratio':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (build, valid) in CASES.items():
            for suffix in (".yaml", ".json"):
                times = [
                    time_case(build(n * (5 if name == "runs of parentheses" else 1)), suffix, valid, Path(tmp))
                    for n in sizes
                ]
                ratio = times[-1] / times[-2] if len(times) > 1 and times[-2] > 0 else float("nan")
                print(f"{name:<22}{suffix[1:]:<7}" + "".join(f"{t:>9.2f}s" for t in times) + f"{ratio:>8.2f}")


if __name__ == "__main__":
    main()
