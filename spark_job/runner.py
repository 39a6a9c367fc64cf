"""Running a validated pipeline on a SparkSession: sources as views, sequences in graph order.

Row counts come from ``DataFrame.observe`` on the written DataFrame: collected by the write itself,
never by a second Spark action.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from spark_job import METRICS_MARKER
from spark_job.config import PipelineConfig, SequenceSpec, load_config
from spark_job.errors import PipelineFailed
from spark_job.metrics import RunMetrics, SequenceMetrics, runtime_from_env, write_metrics

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("sparkpipe")

MAX_ERROR_CHARS = 4000


def short_error(exc: BaseException, config: PipelineConfig) -> str:
    """The first lines of an exception (Spark's messages end in long plans), secrets masked."""
    java = getattr(exc, "java_exception", None)
    if java is not None:  # a Py4JJavaError: its own message only says which Java call failed
        messages: list[str] = []
        while java is not None and len(messages) < 5:
            messages.append(str(java.toString()))
            java = java.getCause()
        text = "\n".join(dict.fromkeys(messages))
    else:
        text = str(exc).strip() or type(exc).__name__
    lines = [line for line in text.splitlines() if line.strip()]
    text = "\n".join(lines[:8])
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + "..."
    return config.mask(f"{type(exc).__name__}: {text}" if ":" not in lines[0] else text)


class BasePipeline:
    """The steps of one run; subclass to change how the session is made or to act around sequences.

    Args:
        config: a validated ``PipelineConfig``.
        spark: an existing session to run on (the default creates one from ``spark_conf``).
        metrics_out: URI the metrics JSON is written to through Hadoop's FileSystem, if any.
        master: Spark master for a session this pipeline creates (default: spark-submit's).
    """

    def __init__(
        self,
        config: PipelineConfig,
        spark: SparkSession | None = None,
        metrics_out: str | None = None,
        master: str | None = None,
    ) -> None:
        self.config = config
        self.spark = spark
        self.owns_session = False
        self.metrics_out = metrics_out
        self.master = master
        self.metrics = RunMetrics(
            app_name=config.app_name,
            sequences={s.name: SequenceMetrics(target=s.writer().describe()) for s in config.sequences},
            runtime=runtime_from_env(),
        )

    # -- hooks -----------------------------------------------------------------------------------
    def create_session(self) -> SparkSession:
        from pyspark.sql import SparkSession

        builder = SparkSession.builder.appName(self.config.app_name)
        if self.master:
            builder = builder.master(self.master)
        for key, value in self.config.spark_conf.items():
            builder = builder.config(key, value)
        return builder.getOrCreate()

    def before_sequence(self, sequence: SequenceSpec) -> None:
        """Called before a sequence runs."""

    def after_sequence(self, sequence: SequenceSpec, metrics: SequenceMetrics) -> None:
        """Called after a sequence succeeded, failed or was skipped."""

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run every sequence; return the metrics document (also written to ``metrics_out``)."""
        try:
            if self.spark is None:
                from pyspark.sql import SparkSession

                # A session found running (a notebook's, a test's) is used, and left running by close().
                self.owns_session = SparkSession.getActiveSession() is None
                self.spark = self.create_session()
            else:
                self.apply_runtime_conf(self.spark)
            self.metrics.spark_app_id = self.spark.sparkContext.applicationId
            failed_sources = self.register_sources(self.spark)
            self.run_sequences(self.spark, failed_sources)
            self.metrics.finish()
        except Exception as exc:  # the session or the driver itself failed: still report
            log.error("sparkpipe: run failed: %s", short_error(exc, self.config))
            for seq in self.metrics.sequences.values():
                if seq.status == "pending":
                    seq.status = "skipped"
            self.metrics.finish(error=short_error(exc, self.config))
        document = self.metrics.to_dict()
        self.publish(document)
        return document

    def close(self) -> None:
        """Stop the Spark session this run started; one it was given or found running is left alone."""
        if self.owns_session and self.spark is not None:
            self.spark.stop()
            self.owns_session = False

    def apply_runtime_conf(self, spark: SparkSession) -> None:
        for key, value in self.config.spark_conf.items():
            try:
                spark.conf.set(key, value)
            except Exception:  # static confs cannot change on a running session
                log.warning("sparkpipe: %s cannot be changed on an existing session; ignored", key)

    def register_sources(self, spark: SparkSession) -> dict[str, str]:
        """Register every source as a temp view; return alias (lower-cased) → error for failed ones."""
        failed: dict[str, str] = {}
        for source in self.config.sources:
            try:
                source.reader().read(spark).createOrReplaceTempView(source.alias)
            except Exception as exc:
                error = f"source {source.id!r} ({source.path}): {short_error(exc, self.config)}"
                log.error("sparkpipe: %s", error)
                failed[source.alias.lower()] = error
        return failed

    def run_sequences(self, spark: SparkSession, failed_sources: Mapping[str, str]) -> None:
        graph = self.config.graph()
        readers_left = {s.name: len(graph.dependents(s.name)) for s in self.config.sequences}
        cached: dict[str, DataFrame] = {}
        stop = False
        for seq in self.config.sequences:
            metrics = self.metrics.sequences[seq.name]
            if metrics.status != "pending":
                continue
            if stop:
                metrics.status = "skipped"
                metrics.error = "not run: an earlier sequence failed and fail_fast is set"
                continue
            broken = [failed_sources[a] for a in seq.reads_sources if a in failed_sources]
            self.before_sequence(seq)
            metrics.start()
            if broken:
                metrics.finish("failed", error=broken[0])
            else:
                keep = readers_left[seq.name] > 0 and seq.cache is not False
                try:
                    rows, result = self.run_sequence(spark, seq, keep)
                    metrics.finish("succeeded", rows=rows)
                    if keep:
                        cached[seq.name] = result
                except Exception as exc:
                    metrics.finish("failed", error=short_error(exc, self.config))
            log.info(
                "sparkpipe: sequence %s %s%s in %.1fs%s",
                seq.name,
                metrics.status,
                f", {metrics.rows_written} rows" if metrics.rows_written is not None else "",
                metrics.duration_s or 0.0,
                f": {metrics.error}" if metrics.error else "",
            )
            self.after_sequence(seq, metrics)
            if metrics.status == "failed":
                stop = self.config.fail_fast
                for name in graph.downstream(seq.name):
                    skipped = self.metrics.sequences[name]
                    skipped.status = "skipped"
                    skipped.error = f"not run: it reads {seq.name}, which failed"
                    self.after_sequence(next(s for s in self.config.sequences if s.name == name), skipped)
            for dep in seq.depends_on:
                readers_left[dep] -= 1
                if readers_left[dep] == 0 and dep in cached:
                    cached.pop(dep).unpersist()
        for df in cached.values():
            df.unpersist()

    def run_sequence(self, spark: SparkSession, seq: SequenceSpec, keep: bool) -> tuple[int, DataFrame]:
        """Run one query, register its result as view ``seq.name`` and write it.

        Returns the rows written and the result (persisted when ``keep``: later sequences read it).
        """
        from pyspark.sql import Observation
        from pyspark.sql import functions as F

        result = spark.sql(seq.query)
        if keep:
            # Later sequences read this result: keep it instead of recomputing the query for each.
            result = result.persist()
        result.createOrReplaceTempView(seq.name)
        observation = Observation(f"sparkpipe_{seq.name}")
        observed = result.observe(observation, F.count(F.lit(1)).alias("rows"))
        try:
            seq.writer().write(observed)
        except BaseException:
            if keep:
                result.unpersist()
            raise
        if not observation._jo.future().isCompleted():  # type: ignore[union-attr]
            return 0, result  # nothing executed: mode ignore on an existing target
        return int(observation.get.get("rows") or 0), result

    def publish(self, document: dict[str, Any]) -> None:
        text = json.dumps(document, separators=(",", ":"), default=str)
        if self.metrics_out:
            try:
                write_metrics(self.metrics_out, text, self.spark)
            except Exception as exc:
                log.error("sparkpipe: could not write metrics to %s: %s", self.metrics_out, exc)
        print(METRICS_MARKER + text, flush=True)


class PipelineRunner(BasePipeline):
    """Run a pipeline from a config file or data::

    metrics = PipelineRunner.from_config("pipeline.yaml", vars={"run_date": "2024-01-01"}).run()
    """

    @classmethod
    def from_config(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any],
        vars: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> PipelineRunner:
        return cls(load_config(source, vars), **kwargs)

    def run_or_raise(self) -> dict[str, Any]:
        """Like ``run`` but raise ``PipelineFailed`` when the run failed."""
        document = self.run()
        if document["status"] != "succeeded":
            raise PipelineFailed(document)
        return document
