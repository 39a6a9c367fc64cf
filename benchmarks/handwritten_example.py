"""The example pipeline (``examples/pipeline.yaml``) written by hand in plain PySpark.

What a data engineer would write for the same three steps: the same sources (CSV, one with a schema,
one with ``inferSchema``), the same SQL, the same ``spark_conf`` and the same targets (``event_date``
partitions in parquet, parquet, one JSON file). ``country_revenue`` is read again by ``top_countries``:
its six rows are cached before they are written (the write fills the cache), as any engineer who
knows the result is read again would. No other action than the three writes.

    python benchmarks/handwritten_example.py --data-dir examples/data --out-dir /tmp/out --master 'local[2]'
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pyspark.sql import SparkSession

APP_NAME = "daily_summary"
# Must equal examples/pipeline.yaml's spark_conf (benchmarks/startup.py checks it).
SPARK_CONF: dict[str, str] = {"spark.sql.shuffle.partitions": "4"}
EVENTS_SCHEMA = "event_id BIGINT, user_id BIGINT, event_type STRING, amount DOUBLE, event_date DATE"

DAILY_EVENT_COUNTS = """
SELECT event_date, event_type, count(*) AS events
FROM events
WHERE event_date = DATE'{run_date}'
GROUP BY event_date, event_type
"""
COUNTRY_REVENUE = """
SELECT u.country, sum(e.amount) AS revenue, count(*) AS purchases
FROM events e JOIN users u ON e.user_id = u.user_id
WHERE e.event_type = 'purchase' AND e.event_date = DATE'{run_date}'
GROUP BY u.country
"""
TOP_COUNTRIES = """
SELECT country, revenue, purchases,
       rank() OVER (ORDER BY revenue DESC) AS revenue_rank
FROM country_revenue
"""

SQL: dict[str, str] = {
    "daily_event_counts": DAILY_EVENT_COUNTS,
    "country_revenue": COUNTRY_REVENUE,
    "top_countries": TOP_COUNTRIES,
}


def run(spark: SparkSession, data_dir: str, out_dir: str, run_date: str) -> None:
    spark.read.option("header", True).schema(EVENTS_SCHEMA).csv(f"{data_dir}/events.csv").createOrReplaceTempView(
        "events"
    )
    users = spark.read.option("header", True).option("inferSchema", True).csv(f"{data_dir}/users.csv")
    users.createOrReplaceTempView("users")

    daily = spark.sql(DAILY_EVENT_COUNTS.format(run_date=run_date))
    daily.write.mode("overwrite").partitionBy("event_date").parquet(f"{out_dir}/daily_event_counts")

    revenue = spark.sql(COUNTRY_REVENUE.format(run_date=run_date)).cache()  # read again below
    revenue.write.mode("overwrite").parquet(f"{out_dir}/country_revenue")
    revenue.createOrReplaceTempView("country_revenue")

    spark.sql(TOP_COUNTRIES).coalesce(1).write.mode("overwrite").json(f"{out_dir}/top_countries")
    revenue.unpersist()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parent.parent / "examples" / "data"))
    parser.add_argument("--out-dir", required=True, help="directory the three outputs are written under")
    parser.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    parser.add_argument("--run-date", default="2024-01-03", help="the pipeline's run_date (default its own)")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    builder = SparkSession.builder.master(args.master).appName(APP_NAME)
    for key, value in SPARK_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    try:
        run(spark, args.data_dir.rstrip("/"), args.out_dir.rstrip("/"), args.run_date)
    finally:
        spark.stop()
    print(f"handwritten_example: done in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
