"""The benchmark pipeline (``benchmarks/pipeline.yaml``) written by hand in plain PySpark.

This is the baseline sparkpipe is measured against: what a competent data engineer would write
for the same four steps, with the same SQL, the same ``spark_conf`` and the same targets.

Reuse: ``country_totals`` is written *and* read again by ``top_countries``. Without help Spark
would run the events/users join a second time for that read, so -- as any engineer who knows the
result is reused would -- the small aggregate is ``cache()``-d before it is written (the write
fills the cache) and exposed to the next step with ``createOrReplaceTempView``; ``top_countries``
then reads the 20 cached rows instead of recomputing the join. No other step is cached: the
others are read once. No extra actions (``count``/``show``) are run: the job only writes.

    python benchmarks/handwritten.py --data-dir DIR --out-dir DIR --master 'local[2]'
"""

from __future__ import annotations

import argparse
import sys
import time

from pyspark.sql import DataFrame, SparkSession

APP_NAME = "sparkpipe-bench-handwritten"
# Must equal pipeline.yaml's spark_conf (compare.py checks it).
SPARK_CONF: dict[str, str] = {"spark.sql.shuffle.partitions": "8"}

# The SQL of pipeline.yaml, verbatim (compare.py checks it, whitespace-insensitively).
DAILY_COUNTS = """
SELECT event_date, event_type, count(*) AS n, sum(amount) AS total
FROM events
GROUP BY event_date, event_type
"""
COUNTRY_TOTALS = """
SELECT u.country,
       count(*) AS n_events,
       sum(CASE WHEN e.event_type = 'purchase' THEN e.amount ELSE 0D END) AS revenue
FROM events e JOIN users u ON e.user_id = u.user_id
GROUP BY u.country
"""
ENTERPRISE_PURCHASES = """
SELECT e.event_id, e.user_id, u.country, e.amount, e.event_ts, e.event_date
FROM events e JOIN users u ON e.user_id = u.user_id
WHERE e.event_type = 'purchase' AND e.amount > 500 AND u.segment = 'enterprise'
"""
TOP_COUNTRIES = """
SELECT country, revenue, n_events, revenue / sum(revenue) OVER () AS revenue_share
FROM country_totals
ORDER BY revenue DESC
LIMIT 5
"""

SQL: dict[str, str] = {
    "daily_counts": DAILY_COUNTS,
    "country_totals": COUNTRY_TOTALS,
    "enterprise_purchases": ENTERPRISE_PURCHASES,
    "top_countries": TOP_COUNTRIES,
}


def run(spark: SparkSession, data_dir: str, out_dir: str) -> None:
    """Read the sources, run the four steps, write the four outputs."""
    spark.read.parquet(f"{data_dir}/events").createOrReplaceTempView("events")
    spark.read.parquet(f"{data_dir}/users").createOrReplaceTempView("users")

    # (a) group-by on events
    spark.sql(DAILY_COUNTS).write.mode("overwrite").parquet(f"{out_dir}/daily_counts")

    # (b) join + group-by; cached because (d) reads it again
    country_totals: DataFrame = spark.sql(COUNTRY_TOTALS).cache()
    country_totals.write.mode("overwrite").parquet(f"{out_dir}/country_totals")
    country_totals.createOrReplaceTempView("country_totals")

    # (c) join + filter, row-level
    (
        spark.sql(ENTERPRISE_PURCHASES)
        .write.mode("overwrite")
        .partitionBy("event_date")
        .parquet(f"{out_dir}/enterprise_purchases")
    )

    # (d) reads (b) by name
    spark.sql(TOP_COUNTRIES).write.mode("overwrite").json(f"{out_dir}/top_countries")
    country_totals.unpersist()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="directory holding events/ and users/")
    parser.add_argument("--out-dir", required=True, help="directory the four outputs are written under")
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
