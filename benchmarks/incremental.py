"""Benchmark an incremental daily run against a full recompute (issue 28).

Thirty days of events (one parquet write per day, as a daily load lands them) feed a daily summary
partitioned by day. The 30th daily run is timed two ways, alternately, on one local[2] session:

- incremental: ``incremental: {source: events, column: day}`` over the target holding days 1-29: the
  watermark is the target's latest day, the scan reads only row groups whose ``day`` statistics reach
  it (the latest committed day again, and the new one) and only those partitions are replaced;
- full: the same SQL without ``incremental``, recomputing all thirty days and replacing the target.

Before each incremental run the target is put back to its 29-day state. Both outputs must be equal.

    python benchmarks/incremental.py                        # 30 days x 400,000 rows, 5 pairs
    python benchmarks/incremental.py --rows-per-day 20000 --pairs 1   # smoke run

Prints each pair's seconds, the medians, their ratio and the rows each run read.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

QUERY = (
    "SELECT day, customer, count(*) AS orders, sum(amount) AS amount, max(updated_at) AS updated_at "
    "FROM events GROUP BY day, customer"
)
SCHEMA = "id BIGINT, customer INT, amount DOUBLE, updated_at TIMESTAMP, day DATE"


def land_day(spark: Any, source: Path, d: int, rows: int) -> None:
    """Day ``d``'s events appended to the source, as its daily load writes them."""
    spark.sql(
        f"SELECT id, CAST(id % 5000 AS INT) AS customer, rand({d}) * 100 AS amount, "
        f"TIMESTAMP'2024-01-01 00:00:00' + make_interval(0, 0, 0, {d}, 0, 0, id % 86400) AS updated_at, "
        f"date_add(DATE'2024-01-01', {d}) AS day FROM range({d * rows}, {(d + 1) * rows})"
    ).repartition(2).write.mode("append").parquet(str(source))


def config(source: Path, target: Path, incremental: bool) -> dict[str, Any]:
    target_spec: dict[str, Any] = {"type": "parquet", "path": str(target), "partition_by": "day"}
    seq: dict[str, Any] = {"name": "daily", "query": QUERY, "target": target_spec}
    if incremental:
        target_spec["dynamic_partition_overwrite"] = True
        seq["incremental"] = {"source": "events", "column": "day"}
    return {
        "app_name": "incremental_bench",
        "sources": {"events": {"type": "file", "path": str(source), "schema": SCHEMA}},
        "sequences": [seq],
    }


def run(spark: Any, cfg: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    from spark_job.config.validation import load_config
    from spark_job.engine.runner import PipelineRunner

    start = time.perf_counter()
    metrics = PipelineRunner(load_config(cfg), spark=spark).run()
    seconds = time.perf_counter() - start
    if metrics["status"] != "succeeded":
        raise SystemExit(f"run failed: {metrics['sequences']}")
    return seconds, metrics["sequences"]["daily"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows-per-day", type=int, default=400_000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()

    import logging

    from pyspark.sql import SparkSession

    logging.getLogger("sparkpipe").setLevel(logging.WARNING)
    spark = (
        SparkSession.builder.master(args.master)
        .appName("incremental-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    root = Path(tempfile.mkdtemp(prefix="sparkpipe-incremental-"))
    try:
        source, target, full, pristine = root / "events", root / "daily", root / "daily_full", root / "daily_29"
        for d in range(args.days - 1):
            land_day(spark, source, d, args.rows_per_day)
        run(spark, config(source, target, incremental=True))  # days 1-29: the target before the 30th run
        shutil.copytree(target, pristine)
        land_day(spark, source, args.days - 1, args.rows_per_day)  # the 30th day lands
        total = args.days * args.rows_per_day
        times: dict[str, list[float]] = {"incremental": [], "full": []}
        read: dict[str, Any] = {}
        for pair in range(args.pairs):
            sides = ("incremental", "full") if pair % 2 == 0 else ("full", "incremental")
            for side in sides:
                if side == "incremental":
                    shutil.rmtree(target)
                    shutil.copytree(pristine, target)
                incremental = side == "incremental"
                seconds, figures = run(spark, config(source, target if incremental else full, incremental))
                times[side].append(seconds)
                read[side] = (figures.get("incremental") or {}).get("rows_read", total)
            print(f"pair {pair + 1}: incremental {times['incremental'][-1]:.2f} s, full {times['full'][-1]:.2f} s")
        columns = ["day", "customer", "orders", "round(amount, 6) AS amount", "updated_at"]
        same = sorted(spark.read.parquet(str(target)).selectExpr(*columns).collect()) == sorted(
            spark.read.parquet(str(full)).selectExpr(*columns).collect()
        )
        inc, whole = statistics.median(times["incremental"]), statistics.median(times["full"])
        print(f"data: {args.days} days x {args.rows_per_day:,} rows = {total:,} rows")
        print(f"rows read: incremental {read['incremental']:,}, full {total:,}")
        print(f"median seconds: incremental {inc:.2f}, full {whole:.2f}; ratio incremental/full: {inc / whole:.3f}")
        print(f"outputs equal: {same}")
        return 0 if same else 1
    finally:
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
