"""The wide benchmark pipeline (``benchmarks/wide.yaml``) written by hand in plain PySpark.

Twelve independent steps over events and users, written one after the other in one session, the
way a competent engineer writes them; nothing is cached (no step reads another).

    python benchmarks/handwritten_wide.py --data-dir DIR --out-dir DIR --master 'local[2]'
"""

from __future__ import annotations

import argparse
import sys
import time

from pyspark.sql import SparkSession

APP_NAME = "sparkpipe-bench-wide-handwritten"
# Must equal wide.yaml's spark_conf (compare.py checks it).
SPARK_CONF: dict[str, str] = {"spark.sql.shuffle.partitions": "8"}

# The SQL of wide.yaml, verbatim (compare.py checks it, whitespace-insensitively).
SQL: dict[str, str] = {
    "daily_types": (
        "SELECT event_date, event_type, count(*) AS n, sum(amount) AS total FROM events GROUP BY event_date, event_type"
    ),
    "user_totals": (
        "SELECT user_id, count(*) AS n, sum(amount) AS total, max(event_ts) AS last_ts FROM events GROUP BY user_id"
    ),
    "type_stats": (
        "SELECT event_type, count(*) AS n, min(amount) AS lo, max(amount) AS hi, avg(amount) AS mean"
        " FROM events"
        " GROUP BY event_type"
    ),
    "hourly": ("SELECT hour(event_ts) AS hour, count(*) AS n FROM events GROUP BY hour(event_ts)"),
    "country_revenue": (
        "SELECT u.country, count(*) AS n, sum(e.amount) AS revenue"
        " FROM events e JOIN users u ON e.user_id = u.user_id"
        " WHERE e.event_type = 'purchase'"
        " GROUP BY u.country"
    ),
    "segment_revenue": (
        "SELECT u.segment, count(*) AS n, sum(e.amount) AS revenue"
        " FROM events e JOIN users u ON e.user_id = u.user_id"
        " GROUP BY u.segment"
    ),
    "country_types": (
        "SELECT u.country, e.event_type, count(*) AS n"
        " FROM events e JOIN users u ON e.user_id = u.user_id"
        " GROUP BY u.country, e.event_type"
    ),
    "signup_cohorts": (
        "SELECT year(u.signup_date) AS cohort, e.event_type, count(*) AS n, sum(e.amount) AS total"
        " FROM events e JOIN users u ON e.user_id = u.user_id"
        " GROUP BY year(u.signup_date), e.event_type"
    ),
    "big_purchases": (
        "SELECT event_id, user_id, amount, event_ts, event_date"
        " FROM events"
        " WHERE event_type = 'purchase' AND amount > 900"
    ),
    "daily_active_users": ("SELECT event_date, count(DISTINCT user_id) AS users FROM events GROUP BY event_date"),
    "amount_buckets": (
        "SELECT CAST(floor(amount / 100) AS INT) AS bucket, count(*) AS n"
        " FROM events"
        " GROUP BY CAST(floor(amount / 100) AS INT)"
    ),
    "users_by_country": ("SELECT country, segment, count(*) AS users FROM users GROUP BY country, segment"),
}


def run(spark: SparkSession, data_dir: str, out_dir: str) -> None:
    """Read the sources, then write each step's output in turn."""
    spark.read.parquet(f"{data_dir}/events").createOrReplaceTempView("events")
    spark.read.parquet(f"{data_dir}/users").createOrReplaceTempView("users")
    for name, query in SQL.items():
        spark.sql(query).write.mode("overwrite").parquet(f"{out_dir}/{name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="directory holding events/ and users/")
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
