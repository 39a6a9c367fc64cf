"""Running a validated pipeline on a SparkSession: sources as views, then sequences on threads.

Row counts come from ``DataFrame.observe`` on the written DataFrame: collected by the write itself,
never by a second Spark action. Sequences that do not read each other run at once (see
``spark_job.engine.scheduler``), each in its own job group, job tag and FAIR pool, each as a
``SequenceRun`` (``spark_job.engine.sequence_run``).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from spark_job.config.masking import MaskedRecords
from spark_job.config.validation import PipelineConfig, SequenceSpec, load_config
from spark_job.engine.capabilities import SessionCapabilities, capabilities_of
from spark_job.engine.commit_log import CommitLog
from spark_job.engine.metrics import RunMetrics, SequenceMetrics, prepare_usage, publish_metrics, runtime_from_env
from spark_job.engine.pools import ALLOCATION_FILE_CONF, RunJobs
from spark_job.engine.results import SharedResults
from spark_job.engine.resume import ResumedRun
from spark_job.engine.scheduler import (
    DEFAULT_MAX_PARALLEL,
    SchedulerCallbacks,
    SequenceScheduler,
    default_max_parallel,
    session_cores,
)
from spark_job.engine.sequence_run import SequenceRun
from spark_job.engine.sessions import SessionSettings, build_session
from spark_job.engine.source_cache import SharedSources
from spark_job.errors import PipelineFailed, short_error
from spark_job.io.lake_tables import require_formats
from spark_job.markers import APPLICATION_MARKER, marker_line
from spark_job.outcomes import SequenceState, run_summary

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("sparkpipe")

CURRENT_SEQUENCE: ContextVar[str | None] = ContextVar("sparkpipe_sequence", default=None)
"""The sequence the current thread works for: log lines are attributed to it (``SequenceLogFilter``)."""


class SequenceLogFilter(logging.Filter):
    """Adds ``sequence_prefix`` (``[name] `` or empty) to records, so interleaved lines say whose they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = CURRENT_SEQUENCE.get()
        # the runner's own lines about a sequence name it already
        named = name is None or f"sequence {name} " in record.getMessage()
        record.sequence_prefix = "" if named else f"[{name}] "
        return True


class BasePipeline:
    """The steps of one run; subclass to change how the session is made or to act around sequences.

    Args:
        config: a validated ``PipelineConfig``.
        spark: an existing session to run on (the default creates one from ``spark_conf``).
        metrics_out: URI the metrics JSON is written to through Hadoop's FileSystem, if any.
        master: Spark master for a session this pipeline creates (default: spark-submit's).
        max_parallel: the most sequences running at once (default: the config's ``max_parallel``, else one
            per 4 of the session's cores, at least 1 and at most 4: ``scheduler.default_max_parallel``).
        remote: a Spark Connect URL (``sc://host:15002``) for the session this pipeline creates.
        log_level: Spark's log level for a session this pipeline creates (``spark.log.level``).
        console: the run prints to a person's terminal: a JVM this pipeline starts logs at
            ``log_level`` through sparkpipe's log4j settings, without its start-up notices.
        run_key: the run this is a try of: sequences an earlier try of it committed are reused.
        state_dir: where the run key's commit log is kept (default: the folder of ``metrics_out``).
    """

    def __init__(
        self,
        config: PipelineConfig,
        spark: SparkSession | None = None,
        metrics_out: str | None = None,
        master: str | None = None,
        max_parallel: int | None = None,
        remote: str | None = None,
        log_level: str | None = None,
        console: bool = False,
        run_key: str | None = None,
        state_dir: str | None = None,
    ) -> None:
        if run_key and not (state_dir or metrics_out):
            raise ValueError("a run key needs a place for its commit log: give metrics_out or state_dir")
        self.config, self.spark, self.metrics_out, self.master, self.remote = config, spark, metrics_out, master, remote
        self.log_level, self.console, self.run_key, self.state_dir = log_level, console, run_key, state_dir
        self.capabilities: SessionCapabilities | None = None
        """What differs on the run's session (classic or Connect, Spark 3.5 or 4.x), once it exists."""
        self.owns_session = False
        self.settings_before = SessionSettings()
        """The settings this run changed on a session it did not make, as they were: put back after the run."""
        self.resumed: ResumedRun | None = None
        """The run key's earlier tries, when given one."""
        self.max_parallel_given = bool(max_parallel or config.max_parallel)
        self.max_parallel = max(1, max_parallel or config.max_parallel or DEFAULT_MAX_PARALLEL)
        self.run_id = uuid.uuid4().hex[:12]
        self.metrics = RunMetrics(
            app_name=config.app_name,
            sequences={s.name: SequenceMetrics(target=s.writer.describe()) for s in config.sequences},
            runtime=runtime_from_env(),
            max_parallel=self.max_parallel,
        )
        self.by_name = {s.name: s for s in config.sequences}
        self.scheduler: SequenceScheduler | None = None
        self.shared = SharedResults(config.graph(), self.by_name, self.setting)
        self.shared_sources: SharedSources | None = None
        """The sources read once for their readers (``spark_job.engine.source_cache``), once registered."""
        self.terminated: str | None = None
        self.stop_reason = ""
        # Without a scheduler mode of the user's, each sequence gets a FAIR pool so a small one is
        # not queued behind a big one's tasks.
        self.use_pools = "spark.scheduler.mode" not in config.spark_conf
        self.jobs = RunJobs(self.run_id, config.app_name, self.by_name, self.use_pools)

    # -- hooks -----------------------------------------------------------------------------------
    def session_defaults(self) -> dict[str, str]:
        """Settings for a session this run creates, where the config does not set them."""
        # The JVM's causes in Python errors: a failed JDBC connection then says why, not only
        # FAILED_JDBC.CONNECTION (short_error keeps the causes' messages, not the stack).
        defaults = {"spark.ui.showConsoleProgress": "false", "spark.sql.pyspark.jvmStacktrace.enabled": "true"}
        if self.use_pools:
            defaults["spark.scheduler.mode"] = "FAIR"
            if ALLOCATION_FILE_CONF not in self.config.spark_conf:
                defaults[ALLOCATION_FILE_CONF] = self.jobs.allocation_file()
        if self.log_level:
            defaults["spark.log.level"] = self.log_level
        return {k: v for k, v in defaults.items() if k not in self.config.spark_conf}

    def create_session(self) -> SparkSession:
        connect = bool(self.remote or os.environ.get("SPARK_REMOTE"))
        # A connect server's scheduler and console belong to the server: only the config's settings go there.
        settings = self.config.spark_conf if connect else {**self.session_defaults(), **self.config.spark_conf}
        console = (self.log_level or "WARN") if self.console else None
        return build_session(
            self.config.app_name, settings, master=self.master, remote=self.remote, console_level=console
        )

    def before_sequence(self, sequence: SequenceSpec) -> None:
        """Called before a sequence runs, on the sequence's worker thread (sequences run at once)."""

    def after_sequence(self, sequence: SequenceSpec, metrics: SequenceMetrics) -> None:
        """Called after a sequence succeeded, failed, was cancelled or skipped, on its worker thread
        (skips: on the scheduling thread). Several may run at once: guard shared state."""

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run every sequence; return the metrics document (also written to ``metrics_out``).

        A session the run was given or found running is left with the settings it had."""
        masking = MaskedRecords(self.config.mask)  # every line the run logs, whoever wrote it
        log.addFilter(masking)
        try:
            if self.spark is None:
                from pyspark.sql import SparkSession

                # A session found running (a notebook's, a test's) is used, and left running by close();
                # getOrCreate gives it the run's runtime settings, which are put back after the run.
                found = SparkSession.getActiveSession()
                self.owns_session = found is None
                if found is not None:
                    self.settings_before.remember(found, [*self.session_defaults(), *self.config.spark_conf])
                self.spark = self.create_session()
            else:
                self.settings_before.apply(self.spark, self.config.spark_conf)
            # The scheduler read the pools' allocation file when its context started: the file is not needed
            # any more, and a driver killed later (or a session found running) leaves nothing behind.
            self.jobs.close()
            self.capabilities = capabilities_of(self.spark)
            if not self.max_parallel_given:  # from the cores the session has
                self.max_parallel = self.metrics.max_parallel = default_max_parallel(session_cores(self.spark))
            log.debug("sparkpipe: running on a %s", self.capabilities.describe())
            self.settings_before.remember(self.spark, self.capabilities.run_settings)
            self.capabilities.prepare_run()
            require_formats(self.spark, self.config)  # a Delta or Iceberg jar missing: said before any job
            self.metrics.spark_app_id = self.capabilities.application_id()
            # The application's id and live UI address, for whoever follows the driver's output.
            application = {"app_id": self.metrics.spark_app_id, "ui_url": self.capabilities.ui_url()}
            print(marker_line(APPLICATION_MARKER, application), flush=True)
            if self.run_key:
                commits = CommitLog.of_run(self.run_key, self.state_dir, self.metrics_out, self.spark)
                self.resumed = ResumedRun(commits, self.config, self.metrics.sequences, self.setting)
                self.resumed.load()
            failed_sources = {} if self.terminated else self.register_sources(self.spark)
            if self.resumed is not None:
                self.resumed.register_views(self.spark, self.setting)
            if self.owns_session:
                prepare_usage(self.spark)
            self.run_sequences(self.spark, failed_sources)
            if self.owns_session:  # a shared session's figures are not this run's alone
                self.metrics.record_usage(self.spark)
            self.metrics.finish(error=self.terminated)
        except Exception as exc:  # the session or the driver itself failed: still report
            log.error("sparkpipe: run failed: %s", short_error(exc, self.config.mask))
            self.metrics.skip_pending("not run: the driver failed before running it")
            self.metrics.finish(error=self.terminated or short_error(exc, self.config.mask))
        document = self.metrics.to_dict()
        self.log_summary(document)
        self.publish(document)
        if self.spark is not None and not self.owns_session:
            self.settings_before.restore(self.spark)
        log.removeFilter(masking)
        return document

    def terminate(self, signal_name: str) -> None:
        """Stop the run (from a signal handler): cancel running sequences, skip pending ones.

        The metrics document is still written, with ``error`` saying the driver was terminated.
        """
        if self.terminated:
            return
        self.terminated = (
            f"terminated by {signal_name}: running sequences were cancelled, pending ones skipped; "
            "targets not committed were left as they were"
        )
        self.stop_reason = f"the driver was terminated ({signal_name})"
        log.error("sparkpipe: %s received: cancelling the running sequences", signal_name)
        if self.scheduler is not None:
            self.scheduler.stop(cancel_running=True)
        elif self.spark is not None:
            self.jobs.cancel(self.spark, "sources")

    def close(self) -> None:
        """Stop the Spark session this run started; one it was given or found running is left alone."""
        if self.owns_session and self.spark is not None:
            self.spark.stop()
            self.owns_session = False
        self.jobs.close()

    def register_sources(self, spark: SparkSession) -> dict[str, str]:
        """Register every source as a temp view; return alias (lower-cased) → error for failed ones."""
        failed: dict[str, str] = {}
        running = [n for n, m in self.metrics.sequences.items() if not m.status.finished]
        self.shared_sources = shared = SharedSources(self.config, running, self.setting)
        with self.jobs.of(spark, "sources", pool=False):
            for source in self.config.sources:
                if self.terminated:
                    break
                try:
                    shared.read(spark, source).createOrReplaceTempView(source.alias)
                except Exception as exc:
                    error = f"source {source.id!r} ({source.path}): {short_error(exc, self.config.mask)}"
                    log.error("sparkpipe: %s", error)
                    failed[source.alias.lower()] = error
        return failed

    def setting(self, key: str) -> str | None:
        """A Spark setting as this run sees it: the config's, else the session's."""
        if key in self.config.spark_conf:
            return self.config.spark_conf[key]
        return None if self.capabilities is None else self.capabilities.spark_conf(key)

    def job_tag(self, name: str) -> str:
        """The job group and job tag of sequence ``name`` in this run (unique per run)."""
        return self.jobs.tag(name)

    # -- sequences -------------------------------------------------------------------------------
    def run_sequences(self, spark: SparkSession, failed_sources: Mapping[str, str]) -> None:
        def blocked(name: str, dependency: str) -> None:
            metrics = self.metrics.sequences[name]
            why = "was skipped" if self.metrics.sequences[dependency].status is SequenceState.SKIPPED else "failed"
            metrics.status, metrics.error = SequenceState.SKIPPED, f"not run: it reads {dependency}, which {why}"
            log.warning("sparkpipe: sequence %s skipped: it reads %s, which %s", name, dependency, why)
            self.after_sequence(self.by_name[name], metrics)

        def finished(name: str, state: SequenceState) -> None:
            if state.fails_the_run and self.config.fail_fast and not self.stop_reason:
                self.stop_reason = f"{name} failed and fail_fast is set"
                assert self.scheduler is not None
                self.scheduler.stop(cancel_running=True)
            self.shared.finished(name)
            if self.shared_sources is not None:
                self.shared_sources.finished(self.by_name[name])

        callbacks = SchedulerCallbacks(
            execute=lambda name: self.execute_sequence(spark, self.by_name[name], failed_sources),
            blocked=blocked,
            finished=finished,
            cancel=lambda name: self.jobs.cancel(spark, name),
        )
        self.scheduler = SequenceScheduler(self.config.graph(), self.max_parallel, callbacks)
        if self.terminated:
            self.scheduler.stop(cancel_running=False)
        try:
            self.scheduler.run({n: m.status for n, m in self.metrics.sequences.items() if m.status.finished})
        finally:
            self.metrics.max_concurrency = self.scheduler.max_concurrency
            if self.stop_reason:
                self.metrics.skip_pending(f"not run: {self.stop_reason}")
            self.shared.release_all()
            if self.shared_sources is not None:
                self.shared_sources.release_all()

    def execute_sequence(
        self, spark: SparkSession, seq: SequenceSpec, failed_sources: Mapping[str, str]
    ) -> SequenceState:
        """Run one sequence on this (worker) thread; record its metrics; return its final state."""
        metrics = self.metrics.sequences[seq.name]
        token = CURRENT_SEQUENCE.set(seq.name)
        try:
            self.before_sequence(seq)
            metrics.start()
            log.info("sparkpipe: sequence %s started", seq.name)
            broken = [failed_sources[a] for a in seq.reads_sources if a in failed_sources]
            if broken:
                metrics.finish(SequenceState.FAILED, error=broken[0])
            else:
                run = self.sequence_run(spark, seq)
                run.execute(self.jobs.of(spark, seq.name))
                if run.keep and metrics.status is SequenceState.SUCCEEDED:
                    self.shared.keep(seq.name, run.result)
                if self.resumed is not None and metrics.status is SequenceState.SUCCEEDED:
                    with self.jobs.of(spark, seq.name):  # before its readers start: what they read is recorded
                        self.resumed.record(seq)
            level = logging.INFO if metrics.status is SequenceState.SUCCEEDED else logging.ERROR
            log.log(level, "sparkpipe: sequence %s %s", seq.name, metrics.outcome())
            self.after_sequence(seq, metrics)
        except Exception as exc:  # a hook failed: the sequence's outcome is unknown to its readers
            if not metrics.status.finished or metrics.status is SequenceState.SUCCEEDED:
                error = short_error(exc, self.config.mask)
                metrics.finish(SequenceState.FAILED, rows=metrics.rows_written, error=error)
            log.error("sparkpipe: sequence %s %s", seq.name, metrics.outcome())
        finally:
            CURRENT_SEQUENCE.reset(token)
        return metrics.status

    def sequence_run(self, spark: SparkSession, seq: SequenceSpec) -> SequenceRun:
        def cancelled() -> str | None:
            return self.stop_reason if self.scheduler is not None and self.scheduler.is_cancelled(seq.name) else None

        return SequenceRun(
            spark,
            seq,
            self.metrics.sequences[seq.name],
            run_id=self.run_id,
            tag=self.job_tag(seq.name),
            sharing=self.shared.sharing(seq.name),
            setting=self.setting,
            cancelled=cancelled,
            mask=self.config.mask,
        )

    # -- publishing ------------------------------------------------------------------------------
    def log_summary(self, document: Mapping[str, Any]) -> None:
        """The run's outcome and each sequence's, one line each (the error, unless a signal said it)."""
        for level, line in run_summary(document, error=self.terminated is None):
            log.log(level, "%s", line)

    def publish(self, document: dict[str, Any]) -> None:
        publish_metrics(document, self.metrics_out, self.spark, self.config.mask)


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
