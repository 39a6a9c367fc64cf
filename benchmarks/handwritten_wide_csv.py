"""The wide benchmark over CSV (``benchmarks/wide_csv.yaml``) written by hand in plain PySpark.

The same twelve steps as ``handwritten_wide.py`` (its SQL and settings, imported), over the CSV copies of
events and users: each source read with its declared schema and registered as a view, each step written
one after the other, nothing cached, as a data engineer writes it; Spark parses the CSV for every step
that reads it.

    python benchmarks/handwritten_wide_csv.py --data-dir DIR --out-dir DIR --master 'local[2]'
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

from pyspark.sql import SparkSession

HERE = Path(__file__).resolve().parent


def _wide() -> object:
    spec = importlib.util.spec_from_file_location("_handwritten_wide", HERE / "handwritten_wide.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_WIDE = _wide()
APP_NAME = "sparkpipe-bench-wide-csv-handwritten"
# The same settings and SQL as the wide pipeline (compare.py checks them against wide_csv.yaml).
SPARK_CONF: dict[str, str] = dict(_WIDE.SPARK_CONF)  # type: ignore[attr-defined]
SQL: dict[str, str] = dict(_WIDE.SQL)  # type: ignore[attr-defined]
SCHEMAS = {
    "events": "event_id BIGINT, user_id BIGINT, event_type STRING, amount DOUBLE, event_ts TIMESTAMP, event_date DATE",
    "users": "user_id BIGINT, country STRING, signup_date DATE, segment STRING",
}


def run(spark: SparkSession, data_dir: str, out_dir: str) -> None:
    """Register the CSV sources, then write each step's output in turn."""
    for name, schema in SCHEMAS.items():
        spark.read.schema(schema).csv(f"{data_dir}/csv/{name}").createOrReplaceTempView(name)
    for name, query in SQL.items():
        spark.sql(query).write.mode("overwrite").parquet(f"{out_dir}/{name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="directory holding csv/events and csv/users")
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
