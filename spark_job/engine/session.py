"""Starting the local JVM of a ``sparkpipe run`` in a terminal: Spark's log lines at one level, no
per-run JVM notices, Spark's own lines kept apart from sparkpipe's."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from spark_job.engine import class_data, jit

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LOG_LEVELS = ("ERROR", "WARN", "INFO", "DEBUG")

STDERR_LOCK = threading.RLock()
"""Held while a line is written to ``sys.stderr``: Python's text streams are not thread-safe, and the
JVM's forwarded lines and sparkpipe's own come from different threads. Re-entrant: a signal
handler on a thread that holds it may log too."""

# The loggers below print the same notice on every run of a laptop's Spark, whatever the pipeline
# (FairSchedulableBuilder: one per sequence, whose FAIR pool is made on the fly by design). A lost
# task's WARN carries its whole stack trace in the message; the failed sequence's error says it once.
LOG4J_CONFIG = """\
rootLogger.level = {level}
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{{HH:mm:ss}} %p %c{{1}}: %m%n%ex{{{trace_lines}}}
logger.nativecode.name = org.apache.hadoop.util.NativeCodeLoader
logger.nativecode.level = error
logger.fairpools.name = org.apache.spark.scheduler.FairSchedulableBuilder
logger.fairpools.level = error
logger.lost_task.name = org.apache.spark.scheduler.TaskSetManager
logger.lost_task.level = error
logger.jetty.name = org.sparkproject.jetty
logger.jetty.level = warn
logger.parquet.name = org.apache.parquet
logger.parquet.level = error
logger.parquet2.name = parquet
logger.parquet2.level = error
"""

JVM_NOTICES = (b"WARNING: Using incubator modules:",)
"""Lines the JVM itself prints on every start (``--add-modules jdk.incubator.vector`` from Spark's
launcher); no JVM option turns them off, so the CLI drops them from the JVM's stderr."""


def log4j_config_file(level: str) -> str:
    """A log4j2 configuration for the driver JVM at ``level``; stack traces cut to a few lines below DEBUG."""
    trace_lines = "full" if level in ("DEBUG", "INFO") else "8"
    fd, path = tempfile.mkstemp(prefix="sparkpipe-log4j2-", suffix=".properties")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(LOG4J_CONFIG.format(level=level.lower(), trace_lines=trace_lines))
    return path


def forward_stderr(stream: IO[bytes]) -> None:
    """Copy the JVM's stderr to ours line by line, without the JVM's start-up notices.

    Whole lines through the text stream sparkpipe's own log lines use, so the two never split a line.
    """
    for line in iter(stream.readline, b""):
        if not line.startswith(JVM_NOTICES):
            with STDERR_LOCK:
                sys.stderr.write(line.decode("utf-8", errors="replace"))
                sys.stderr.flush()


def start_console_session(app_name: str, master: str | None, settings: Mapping[str, str], level: str) -> SparkSession:
    """A classic session on a JVM this process starts, logging at ``level`` to stderr.

    Used only where no JVM runs yet and none was handed over by spark-submit
    (``PYSPARK_GATEWAY_PORT``): a cluster's own log configuration is never replaced.
    """
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession

    conf = SparkConf(loadDefaults=False)
    conf.setAppName(app_name)
    if master:
        conf.setMaster(master)
    options = dict(settings)
    config_file = log4j_config_file(level)
    flag = f"-Dlog4j2.configurationFile=file:{config_file}"
    java_options = options.get("spark.driver.extraJavaOptions", "")
    if "log4j2.configurationFile" not in java_options:
        java_options = f"{java_options} {flag}".strip()
    archive = class_data.for_driver(
        spark_home(), os.environ, options.get("spark.driver.extraClassPath", ""), java_options
    )
    compiler = jit.driver_options(os.environ, java_options)  # C2's thresholds for a run of seconds
    options["spark.driver.extraJavaOptions"] = " ".join([java_options, *archive.options, *compiler]).strip()
    for key, value in options.items():
        conf.set(key, value)
    # popen_kwargs is pyspark's documented way to capture the JVM's output.
    # A session of its own: a SIGTERM sent to the whole process group (Airflow, a terminal's job
    # control) reaches only this process, which cancels the jobs and stops the JVM itself.
    popen: dict[str, Any] = {"stderr": subprocess.PIPE, "start_new_session": True}
    try:
        gateway = launch_gateway(conf, popen_kwargs=popen)
    except BaseException:
        archive.close()  # the JVM did not start: nobody makes the archive now
        raise
    proc = getattr(gateway, "proc", None)
    # Made once this JVM has exited, by a process of its own (see spark_job.engine.class_data).
    archive.make_in_background(getattr(proc, "pid", None))
    if proc is not None and proc.stderr is not None:
        threading.Thread(target=forward_stderr, args=(proc.stderr,), name="sparkpipe-jvm-stderr", daemon=True).start()
    try:
        SparkContext(conf=conf, gateway=gateway)
    finally:
        os.unlink(config_file)  # read once, when the JVM configured its logging
    return SparkSession.builder.getOrCreate()


def spark_home() -> str:
    """The Spark installation a JVM started here runs: ``$SPARK_HOME``, else the pyspark package's own."""
    if os.environ.get("SPARK_HOME"):
        return os.environ["SPARK_HOME"]
    import pyspark

    return os.path.dirname(os.path.abspath(pyspark.__file__))


def can_start_console_session() -> bool:
    """Whether this process would start the JVM itself (not under spark-submit, none running yet)."""
    if "PYSPARK_GATEWAY_PORT" in os.environ or os.environ.get("SPARK_REMOTE"):
        return False
    from pyspark import SparkContext

    return SparkContext._active_spark_context is None
