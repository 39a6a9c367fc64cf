"""The large-intermediate benchmark pipeline (``benchmarks/intermediate.yaml``) written by hand in PySpark.

The aggregate is written to parquet, then read back for the step that reads it: the cheap way to
pass a large result on (persisting it costs memory and spill; recomputing it costs the aggregation).

    python benchmarks/handwritten_intermediate.py --data-dir DIR --out-dir DIR --master 'local[2]'
"""

from __future__ import annotations

import argparse
import sys
import time

from pyspark.sql import SparkSession

APP_NAME = "sparkpipe-bench-intermediate-handwritten"
# Must equal intermediate.yaml's spark_conf (compare.py checks it).
SPARK_CONF: dict[str, str] = {"spark.sql.shuffle.partitions": "8"}

# The SQL of intermediate.yaml, verbatim (compare.py checks it, whitespace-insensitively).
SQL: dict[str, str] = {
    "user_days": (
        "SELECT user_id, event_date, count(*) AS n, sum(amount) AS total, max(event_ts) AS last_ts"
        " FROM events GROUP BY user_id, event_date"
    ),
    "user_activity": (
        "SELECT user_id, count(*) AS active_days, sum(n) AS events, sum(total) AS total, max(last_ts) AS last_ts"
        " FROM user_days GROUP BY user_id"
    ),
}


def run(spark: SparkSession, data_dir: str, out_dir: str) -> None:
    """Each step writes its output; a later step reads an earlier one's output back from parquet."""
    spark.read.parquet(f"{data_dir}/events").createOrReplaceTempView("events")
    for name, query in SQL.items():
        spark.sql(query).write.mode("overwrite").parquet(f"{out_dir}/{name}")
        spark.read.parquet(f"{out_dir}/{name}").createOrReplaceTempView(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="directory holding events/")
    parser.add_argument("--out-dir", required=True, help="directory the outputs are written under")
    parser.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    builder = SparkSession.builder.master(args.master).appName(APP_NAME)
    for key, value in SPARK_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    try:
        run(spark, args.data_dir.rstrip("/"), args.out_dir.rstrip("/"))
    finally:
        spark.stop()
    print(f"handwritten: done in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
