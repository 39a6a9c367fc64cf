"""A run's session: the one it makes (``build_session``), and on one it did not make the settings it
changes, noted before and put back after (``SessionSettings``), so that the session's next pipeline
does not inherit them."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("sparkpipe")


class SessionSettings:
    """How the settings a run changes were on its session before (None: unset)."""

    def __init__(self) -> None:
        self.before: dict[str, str | None] = {}

    def remember(self, spark: SparkSession, keys: Iterable[str]) -> None:
        """Note how ``keys`` are set on ``spark`` before the run changes them (the first note of a key wins)."""
        for key in keys:
            if key not in self.before:
                try:
                    self.before[key] = spark.conf.get(key, None)
                except Exception:  # not readable: not a setting the run can change either
                    continue

    def apply(self, spark: SparkSession, settings: Mapping[str, str]) -> None:
        """Set ``settings`` on a running session (noted first); static ones, which cannot change there, are
        left as they are with a warning."""
        self.remember(spark, settings)
        for key, value in settings.items():
            try:
                spark.conf.set(key, value)
            except Exception:  # static confs cannot change on a running session
                log.warning("sparkpipe: %s cannot be changed on an existing session; ignored", key)

    def restore(self, spark: SparkSession) -> None:
        """Put back each noted setting as it was, unset where it was unset (a dynamic
        ``partitionOverwriteMode`` left behind would make the next pipeline's whole-target overwrite a
        partial one). Static settings the run could not change are left as they are."""
        before, self.before = self.before, {}
        for key, value in before.items():
            try:
                if spark.conf.get(key, None) == value:
                    continue
                if value is None:
                    spark.conf.unset(key)
                else:
                    spark.conf.set(key, value)
            except Exception as exc:
                log.warning("sparkpipe: %s could not be put back as it was on the session: %s", key, exc)


def build_session(
    app_name: str,
    settings: Mapping[str, str],
    *,
    master: str | None = None,
    remote: str | None = None,
    console_level: str | None = None,
) -> SparkSession:
    """The session of a run that makes its own: on Spark Connect at ``remote`` (or ``$SPARK_REMOTE``) with
    ``settings``, else on ``master`` (default: spark-submit's); with ``console_level``, a JVM this process
    starts logs at that level through sparkpipe's log4j settings (``spark_job.engine.session``)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if remote:
        builder = builder.remote(remote)
    elif master:
        builder = builder.master(master)
    if console_level and not (remote or os.environ.get("SPARK_REMOTE")):
        from spark_job.engine.session import can_start_console_session, start_console_session

        if can_start_console_session():
            return start_console_session(app_name, master, settings, console_level)
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
