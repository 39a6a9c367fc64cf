"""Benchmark a merge of a 1 % change set into a partitioned Delta table: sparkpipe against the same MERGE
written by hand (issue 27), and the bytes of target the MERGE reads with and without partition pruning.

The target holds ``--rows`` orders over ``--days`` day partitions. The change set is 1 % of that: updates of
orders of the last two days (80 %) and new orders of the last day (20 %), landed as a parquet file. Timed
alternately on one local[2] session, each run starting from the same table version (``RESTORE``):

- sparkpipe: a pipeline whose sequence reads the change set and writes the table with ``mode: merge``,
  ``merge_keys: [day, order_id]`` (the partition column among the keys: sparkpipe adds the touched days to
  the MERGE's condition);
- by hand: ``MERGE INTO delta.`path` t USING changes s ON t.day = s.day AND t.order_id = s.order_id WHEN
  MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *``, as the keys alone say it;
- by hand with the touched days listed in the condition, for the bytes read with pruning.

Bytes read are the input bytes of the stages each run started, from Spark's REST API. Both tables must be
equal after each pair.

    python benchmarks/merge.py                                   # 10,000,000 rows, 5 pairs
    python benchmarks/merge.py --rows 1000000 --pairs 3          # what a busy 2-core machine can do

Needs a pyspark with a Delta release (Spark 3.5 or 4.0: the matrix cells' Pythons) and the jars that
``scripts/connectors.sh`` caches.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from spark_job.config.connectors import connector  # noqa: E402
from spark_job.config.lakehouse import DELTA_CATALOG, DELTA_EXTENSION  # noqa: E402


def session(work: Path) -> Any:
    from pyspark.sql import SparkSession

    spark_version = version("pyspark")
    found = connector("delta", spark_version)
    if found is None:
        raise SystemExit(f"no Delta release for Spark {spark_version}: run with a matrix cell's Python")
    cache = HERE.parent / ".cache" / "jars" / f"spark-{spark_version}"
    jars = ",".join(str(cache / a.file_name) for a in found.artifacts)
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("merge-bench")
        .config("spark.jars", jars)
        .config("spark.sql.extensions", DELTA_EXTENSION)
        .config("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.port", "4071")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "3g")
        .config("spark.sql.warehouse.dir", str(work / "warehouse"))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def stage_input_bytes(spark: Any) -> dict[int, int]:
    """Stage id -> input bytes, of every stage the application ran so far (Spark's REST API)."""
    ui = spark.sparkContext.uiWebUrl
    app = spark.sparkContext.applicationId
    with urllib.request.urlopen(f"{ui}/api/v1/applications/{app}/stages?status=complete") as answer:
        stages = json.load(answer)
    return {int(s["stageId"]) * 1000 + int(s["attemptId"]): int(s.get("inputBytes", 0)) for s in stages}


def measured(spark: Any, action: Any) -> tuple[float, int]:
    """Seconds and input bytes of ``action``'s stages."""
    before = stage_input_bytes(spark)
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    time.sleep(0.5)  # the listener bus posts the last stage's figures
    after = stage_input_bytes(spark)
    return seconds, sum(v for k, v in after.items() if k not in before)


def build(spark: Any, table: Path, changes: Path, rows: int, days: int) -> None:
    spark.sql(
        f"SELECT id AS order_id, date_add(DATE'2024-01-01', CAST(id % {days} AS INT)) AS day, "
        "CAST(id % 7 AS STRING) AS status, rand(1) * 100 AS amount FROM range(0, {rows})".replace("{rows}", str(rows))
    ).write.format("delta").partitionBy("day").save(str(table))
    changed = rows // 100
    updates = int(changed * 0.8)
    last = f"date_add(DATE'2024-01-01', {days - 1})"
    spark.sql(
        # orders of the last two days, updated; new orders on the last day
        f"SELECT order_id, day, 'changed' AS status, amount + 1 AS amount FROM delta.`{table}` "
        f"WHERE day >= date_add({last}, -1) LIMIT {updates}"
    ).unionByName(
        spark.sql(
            f"SELECT id AS order_id, {last} AS day, 'new' AS status, 1.0D AS amount "
            f"FROM range({rows}, {rows + changed - updates})"
        )
    ).repartition(2).write.parquet(str(changes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()

    from spark_job.config import load_config
    from spark_job.runner import PipelineRunner

    work = Path(tempfile.mkdtemp(prefix="sparkpipe-merge-bench-"))
    try:
        spark = session(work)
        table, changes = work / "orders", work / "changes"
        started = time.perf_counter()
        build(spark, table, changes, args.rows, args.days)
        print(
            f"table: {args.rows:,} rows in {args.days} days, change set {args.rows // 100:,} rows "
            f"({time.perf_counter() - started:.0f} s to build)"
        )
        spark.read.parquet(str(changes)).createOrReplaceTempView("changes")
        days = sorted(str(r[0]) for r in spark.sql("SELECT DISTINCT day FROM changes").collect())
        keyed = "t.day = s.day AND t.order_id = s.order_id"
        by_hand = (
            f"MERGE INTO delta.`{table}` t USING changes s ON {keyed} "
            "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
        )
        listed = ", ".join(f"DATE'{d}'" for d in days)
        pruned = by_hand.replace(keyed, f"{keyed} AND t.day IN ({listed})")
        config = load_config(
            {
                "app_name": "merge_bench",
                "sources": {"changes": {"type": "file", "path": str(changes)}},
                "sequences": [
                    {
                        "name": "orders",
                        "query": "SELECT * FROM changes",
                        "target": {
                            "type": "delta",
                            "path": str(table),
                            "mode": "merge",
                            "merge_keys": ["day", "order_id"],
                        },
                    }
                ],
            }
        )

        def restore() -> None:
            spark.sql(f"RESTORE TABLE delta.`{table}` TO VERSION AS OF 0")

        def sparkpipe() -> None:
            metrics = PipelineRunner(config, spark=spark).run()
            assert metrics["status"] == "succeeded", metrics

        def handwritten() -> None:
            spark.sql(by_hand).collect()

        def checksum() -> Any:
            return spark.sql(f"SELECT count(*), sum(hash(*)) FROM delta.`{table}`").collect()[0]

        results: dict[str, list[tuple[float, int]]] = {"sparkpipe": [], "handwritten": [], "pruned by hand": []}
        sides = [("sparkpipe", sparkpipe), ("handwritten", handwritten)]
        for pair in range(args.pairs):
            sums = []
            for name, action in sides if pair % 2 == 0 else sides[::-1]:
                restore()
                results[name].append(measured(spark, action))
                sums.append(checksum())
            assert sums[0] == sums[1], f"the two tables differ after pair {pair}: {sums}"
            print(f"pair {pair + 1}: " + ", ".join(f"{n} {results[n][-1][0]:.2f} s" for n, _ in sides), flush=True)
        restore()
        results["pruned by hand"].append(measured(spark, lambda: spark.sql(pruned).collect()))
        median = {n: statistics.median(s for s, _ in r) for n, r in results.items() if r}
        read = {n: statistics.median(b for _, b in r) for n, r in results.items() if r}
        ratios = [results["sparkpipe"][i][0] / results["handwritten"][i][0] for i in range(args.pairs)]
        print(
            f"median wall: sparkpipe {median['sparkpipe']:.2f} s, handwritten {median['handwritten']:.2f} s, "
            f"ratio of medians {median['sparkpipe'] / median['handwritten']:.3f}"
        )
        print(
            f"median ratio sparkpipe/handwritten: {statistics.median(ratios):.3f} "
            f"(spread {min(ratios):.3f}-{max(ratios):.3f}; pairs: {', '.join(f'{r:.3f}' for r in ratios)})"
        )
        total = spark.sql(f"DESCRIBE DETAIL delta.`{table}`").collect()[0]["sizeInBytes"]
        print(
            f"target size {total:,} bytes; input bytes read: sparkpipe {read['sparkpipe']:,.0f} "
            f"(pruned to {len(days)} of {args.days} days), handwritten {read['handwritten']:,.0f} (no pruning), "
            f"handwritten with the days listed {read['pruned by hand']:,.0f}"
        )
        spark.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
