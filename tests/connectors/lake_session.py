"""A Spark session with the Delta and Iceberg jars, in a child process of its own: the test process's JVM
(the shared ``spark`` fixture) cannot load SQL extensions once it runs. The tests hand it pipeline
configs, run with the real ``PipelineRunner`` on that session, and SQL, and get back metrics and rows.

Python 3.9, the standard library and pyspark only: the matrix cells run it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import traceback
from typing import Any

from spark_job.config.lakehouse import DELTA_CATALOG, DELTA_EXTENSION, ICEBERG_CATALOG, ICEBERG_EXTENSION


def serve(conn: Any, jars: str, warehouse: str) -> None:
    """The child's loop: ``("run", config)``, ``("sql", text)`` or ``("rows", text)`` in, ``(ok, value)`` out."""
    from pyspark.sql import SparkSession

    from spark_job.config import load_config
    from spark_job.runner import PipelineRunner

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("sparkpipe-lakehouse-tests")
        .config("spark.jars", jars)
        .config("spark.sql.extensions", f"{DELTA_EXTENSION},{ICEBERG_EXTENSION}")
        .config("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
        .config("spark.sql.catalog.lake", ICEBERG_CATALOG)
        .config("spark.sql.catalog.lake.type", "hadoop")
        .config("spark.sql.catalog.lake.warehouse", f"{warehouse}/iceberg")
        .config("spark.sql.warehouse.dir", f"{warehouse}/spark")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.databricks.delta.snapshotPartitions", "2")  # Delta's 50 cost seconds per commit here
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse}")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    while True:
        try:
            kind, payload = conn.recv()
        except EOFError:
            break
        try:
            if kind == "stop":
                break
            if kind == "run":
                config = load_config(payload)
                value: Any = PipelineRunner(config, spark=spark).run()
            elif kind == "sql":
                spark.sql(payload).collect()
                value = None
            else:
                value = [r.asDict(recursive=True) for r in spark.sql(payload).collect()]
            conn.send((True, value))
        except BaseException as exc:  # sent back whole: the test shows it
            conn.send((False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    spark.stop()


class LakeSession:
    """The test side of :func:`serve`."""

    def __init__(self, jars: str, warehouse: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child, jars, warehouse), daemon=True)
        self.process.start()

    def _ask(self, kind: str, payload: Any) -> Any:
        self.conn.send((kind, payload))
        ok, value = self.conn.recv()
        if not ok:
            raise RuntimeError(value)
        return value

    def run(self, config: dict[str, Any]) -> dict[str, Any]:
        """Run a pipeline config on the session; its metrics document."""
        return dict(self._ask("run", config))

    def sql(self, text: str) -> None:
        self._ask("sql", text)

    def rows(self, text: str) -> list[dict[str, Any]]:
        return list(self._ask("rows", text))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(("stop", None))
        self.process.join(120)
        if self.process.is_alive():
            self.process.kill()
