"""``LocalSpark``: run the driver with the installed pyspark's ``spark-submit`` (local or standalone master)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_sparkpipe.runtimes.base import SparkRuntime, json_extras, register_runtime, string_map

# The levels spark.log.level accepts (SparkContext.setLogLevel).
SPARK_LOG_LEVELS = ("ALL", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF")


@register_runtime
@dataclass(frozen=True)
class LocalSpark(SparkRuntime):
    """Run the pipeline with ``spark-submit`` on the Airflow worker (client mode).

    The driver runs on the worker's Python (the interpreter running Airflow) and the Spark of
    ``spark_home`` or of the installed pyspark (the ``spark`` extra brings pyspark 4.x); both must be in
    the driver's range, Spark 3.5.x or 4.x and Python 3.9 to 3.13, which the driver checks when it starts.

    Parameters:
        master: the Spark master: ``local[*]``, ``local[2]`` or a standalone cluster
            ``spark://host:7077`` (the driver then runs on the worker, the executors on the cluster).
        conf: Spark properties passed as ``--conf key=value`` (``spark.jars`` for a JDBC driver jar,
            ``spark.driver.host`` when the cluster must reach the worker by a given name, ...).
        spark_home: the Spark installation whose ``bin/spark-submit`` runs the driver; default
            ``$SPARK_HOME``, else the installed pyspark package.
        work_dir: where the driver bundle, each run's ``config.json`` and ``metrics.json`` are written;
            default ``<temp dir>/sparkpipe``. On a standalone cluster the driver runs here, so this
            stays a local directory; output paths must be reachable by the executors (shared storage).
        env: extra environment variables for ``spark-submit`` (``JAVA_HOME``, secrets read by
            ``${env:NAME}`` in the config, ...). Never logged.
        kill_grace_s: seconds between SIGTERM and SIGKILL to the ``spark-submit`` process group when a
            run is cancelled.
        log_level: the lowest level of Spark's own log lines that reach the task log (``WARN``
            by default; ``INFO`` or ``DEBUG`` to see what Spark does). Sets ``spark.log.level``
            unless ``conf`` does; a ``spark.log.level`` in ``conf`` sets both.
        master_ui_url: a standalone master's web UI as the browser reaches it, whose application
            page is the task's *Spark application* link while the run lives; default
            ``http://<master host>:8080`` (under Docker Compose, the published port:
            ``http://localhost:8081``). With a ``local`` master the link is the driver's Spark UI while
            the run lives.
        event_log_dir: where the driver writes Spark's event log (``spark.eventLog.dir``), which a
            Spark history server reads to show a finished run's jobs, stages and SQL; default
            ``<work_dir>/spark-events`` (made when missing). ``spark.eventLog.enabled: "false"`` in
            ``conf`` turns it off.
        history_server_url: a Spark history server reading ``event_log_dir``, as the browser reaches
            it (``http://localhost:18080``): once a run has ended, the task's *Spark application* link
            is the run's page there.
        class_data: start the driver JVM with a class-data archive of Spark's classes (made once per
            JDK, Spark build and class path in the worker user's cache, in the background after the
            first run; see ``spark_job.engine.class_data``): about a second and a half less per start
            on a small machine. ``False`` (or ``SPARKPIPE_CLASS_DATA=off`` in ``env`` or the worker's
            environment) starts it plainly and makes none.

    The driver JVM also starts with the optimising compiler's thresholds raised for a run of seconds
    (``spark_job.engine.jit``) unless its options choose the compiler's settings themselves;
    ``SPARKPIPE_JIT_TUNING=off`` in ``env`` or the worker's environment leaves the JVM's defaults.
    """

    master: str = "local[*]"
    conf: Mapping[str, str] = field(default_factory=dict)
    spark_home: str | None = None
    work_dir: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    kill_grace_s: float = 10.0
    log_level: str = "WARN"
    master_ui_url: str | None = None
    event_log_dir: str | None = None
    history_server_url: str | None = None
    class_data: bool = True

    kind = "local"
    hook_class = "airflow_provider_sparkpipe.hooks.local.LocalSparkHook"

    def __post_init__(self) -> None:
        if not isinstance(self.master, str) or not self.master.strip():
            raise ValueError(f"master must be a Spark master URL such as 'local[*]', not {self.master!r}")
        if not (self.master.startswith(("local", "spark://"))):
            raise ValueError(
                f"master {self.master!r} is not a local or standalone master: use 'local[*]', 'local[N]' or "
                "'spark://host:port' (YARN and Kubernetes have their own runtimes)"
            )
        for name in ("conf", "env"):
            object.__setattr__(self, name, string_map(name, getattr(self, name)))
        if self.kill_grace_s < 0:
            raise ValueError(f"kill_grace_s must be >= 0, not {self.kill_grace_s}")
        level = self.conf.get("spark.log.level", self.log_level)
        if not isinstance(level, str) or level.upper() not in SPARK_LOG_LEVELS:
            raise ValueError(f"log_level {level!r} is not a Spark log level: one of {', '.join(SPARK_LOG_LEVELS)}")
        object.__setattr__(self, "log_level", str(self.log_level).upper())
        if self.master_ui_url is None and self.master.startswith("spark://"):
            first = self.master[len("spark://") :].split(",")[0]
            object.__setattr__(self, "master_ui_url", f"http://{first.rsplit(':', 1)[0]}:8080")
        elif self.master_ui_url is not None and not str(self.master_ui_url).startswith(("http://", "https://")):
            raise ValueError(
                f"master_ui_url must be an http(s) URL such as 'http://spark-master:8080', not {self.master_ui_url!r}"
            )
        if self.history_server_url is not None and not str(self.history_server_url).startswith(("http://", "https://")):
            raise ValueError(
                "history_server_url must be an http(s) URL such as 'http://localhost:18080', "
                f"not {self.history_server_url!r}"
            )

    @property
    def spark_log_level(self) -> str:
        """The level Spark logs at: ``conf``'s ``spark.log.level`` when given, else ``log_level``."""
        return str(self.conf.get("spark.log.level", self.log_level)).upper()

    @classmethod
    def _coerce_extras(cls, extras: dict[str, Any], where: str) -> dict[str, Any]:
        extras = json_extras(extras, ("conf", "env"))
        if isinstance(extras.get("kill_grace_s"), str):
            extras["kill_grace_s"] = float(extras["kill_grace_s"])
        if isinstance(extras.get("class_data"), str):
            extras["class_data"] = extras["class_data"].strip().lower() not in ("false", "0", "no", "off")
        return extras
