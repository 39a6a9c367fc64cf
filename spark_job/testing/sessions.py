"""The sessions pipeline tests run on: a small local one, the config's ``spark.sql.*`` settings, and which of
them only a session made with them can take (static ones)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING

from spark_job.config.lakehouse import DELTA_CATALOG, DELTA_EXTENSION, ICEBERG_CATALOG, ICEBERG_EXTENSION

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from spark_job.config.validation import PipelineConfig


def sql_settings(config: PipelineConfig) -> dict[str, str]:
    """The ``spark.sql.*`` settings of a config, the ones its tests run with (``spark.sql.variable.substitute``
    included: the driver keeps it off). Not the Delta and Iceberg extensions and catalogs (the driver adds
    them for a config using those tables): a test reads fixtures and writes nothing, so it needs no table
    format's jar."""
    conf = {k: v for k, v in config.spark_conf.items() if k.startswith("spark.sql.")}
    formats = {DELTA_CATALOG, ICEBERG_CATALOG}
    catalogs = [k for k, v in conf.items() if k.startswith("spark.sql.catalog.") and v in formats]
    conf = {k: v for k, v in conf.items() if not any(k == c or k.startswith(c + ".") for c in catalogs)}
    if "spark.sql.extensions" in conf:
        kept = [
            e for e in conf["spark.sql.extensions"].split(",") if e.strip() not in (DELTA_EXTENSION, ICEBERG_EXTENSION)
        ]
        if kept:
            conf["spark.sql.extensions"] = ",".join(kept)
        else:
            del conf["spark.sql.extensions"]
    return conf


def static_settings(config: PipelineConfig, spark: SparkSession) -> dict[str, str]:
    """The config's ``spark.sql.*`` settings ``spark`` does not have and cannot take once made (static ones,
    such as ``spark.sql.warehouse.dir`` and ``spark.sql.extensions``)."""
    static: dict[str, str] = {}
    for key, value in sql_settings(config).items():
        if spark.conf.isModifiable(key):
            continue
        before = spark.conf.get(key, None)
        if before == value:
            continue
        try:  # not modifiable: either static, or a key Spark does not list (spark.sql.catalog.x), settable
            spark.conf.set(key, value)
        except Exception:
            static[key] = value
            continue
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)
    return static


def local_session(settings: Mapping[str, str] | None = None, console: bool = False) -> SparkSession:
    """A small local session for tests: one core, one shuffle partition, no UI, and ``settings`` (static
    ones of a config). With ``console`` and no JVM running yet, the JVM this starts logs only Spark's
    errors, without stack traces or failed tasks' lines: a test's problem is its own line of the report."""
    from pyspark.sql import SparkSession

    conf = {
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "1",
        "spark.ui.showConsoleProgress": "false",
        **(settings or {}),
    }
    if console:
        from spark_job.engine.session import LOG4J_CONFIG, can_start_console_session, start_console_session

        if can_start_console_session():
            fd, log4j = tempfile.mkstemp(prefix="sparkpipe-test-log4j2-", suffix=".properties")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                quiet = LOG4J_CONFIG.replace("logger.lost_task.level = error", "logger.lost_task.level = off")
                fh.write(quiet.format(level="error", trace_lines="none") + _QUIET_LOGGERS)
            conf["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile=file:{log4j}"
            try:
                return start_console_session("sparkpipe test", "local[1]", conf, "ERROR")
            finally:
                os.unlink(log4j)
    builder = SparkSession.builder.master("local[1]").appName("sparkpipe test")
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


# A failed task's lines (the executor's exception, and the task set's "aborting job" above) repeat the
# error the test's report line gives.
_QUIET_LOGGERS = """\
logger.executor.name = org.apache.spark.executor.Executor
logger.executor.level = off
"""
