"""Running a validated pipeline on a SparkSession: sources as views, then sequences on threads.

Row counts come from ``DataFrame.observe`` on the written DataFrame: collected by the write itself,
never by a second Spark action. Sequences that do not read each other run at once (see
``spark_job.engine.scheduler``), each in its own job group, job tag and FAIR pool.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from spark_job.config.validation import PipelineConfig, SequenceSpec, load_config
from spark_job.engine.capabilities import SessionCapabilities, capabilities_of
from spark_job.engine.capabilities import is_connect as is_connect
from spark_job.engine.commit_log import CommitLog, log_uri
from spark_job.engine.metrics import RunMetrics, SequenceMetrics, executor_usage, runtime_from_env, write_metrics
from spark_job.engine.pools import ALLOCATION_FILE_CONF, pool_name, write_allocation_file
from spark_job.engine.scheduler import DEFAULT_MAX_PARALLEL, SchedulerCallbacks, SequenceScheduler
from spark_job.errors import PipelineFailed, exception_text
from spark_job.markers import APPLICATION_MARKER, METRICS_MARKER, marker_line
from spark_job.quality import ExpectationFailed, SequenceRules

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("sparkpipe")

MAX_ERROR_CHARS = 4000

READ_BACK_FORMATS = frozenset({"parquet", "orc", "delta", "iceberg"})
"""Target formats a committed result is read back from with its types intact."""

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


class SequenceCancelled(Exception):
    """A sequence's jobs were cancelled; its write was discarded."""


_CAUSED_BY = re.compile(r"^Caused by: (.+)$", re.MULTILINE)
# A failed task's message carries the task's Java stack trace (Spark 3.5 reports a write's failure that
# way): its frames would crowd the causes, which say what went wrong, out of the first lines.
_JAVA_FRAME = re.compile(r"^\s*(at [\w$.<>/]+\(.*\)|\.\.\. \d+ more)\s*$")
_JOB_ABORTED = "Job aborted due to stage failure"


def short_error(exc: BaseException, config: PipelineConfig) -> str:
    """The first lines of an exception (Spark's messages end in long plans), secrets masked."""
    text = exception_text(exc)
    # With spark.sql.pyspark.jvmStacktrace.enabled the message ends in the JVM's stack trace: its
    # "Caused by:" lines say why (the database's "password authentication failed", "Connection refused").
    text, _, trace = text.partition("\n\nJVM stacktrace:\n")
    causes = [c.strip() for c in _CAUSED_BY.findall(trace) if c.strip() and c.strip() not in text]
    if causes:
        text += "\ncaused by: " + "\ncaused by: ".join(list(dict.fromkeys(causes))[-2:])
    lines = [line for line in text.splitlines() if line.strip() and not _JAVA_FRAME.match(line)]
    lines = [line for line in lines if line.strip() != "Driver stacktrace:"]
    if len(lines) > 1 and _JOB_ABORTED in lines[0]:
        # Spark 3.5 reports a failed task as its job's abort, the task's own exception last (Spark 4
        # raises that one): lead with it, so the first line says why.
        lines.insert(0, lines.pop())
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
        max_parallel: the most sequences running at once (default: the config's ``max_parallel``).
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
        self.config = config
        self.spark = spark
        self.capabilities: SessionCapabilities | None = None
        """What differs on the run's session (classic or Connect, Spark 3.5 or 4.x), once it exists."""
        self.owns_session = False
        self.metrics_out = metrics_out
        self.master = master
        self.remote = remote
        self.log_level = log_level
        self.console = console
        self.run_key = run_key
        self.state_dir = state_dir
        if run_key and not (state_dir or metrics_out):
            raise ValueError("a run key needs a place for its commit log: give metrics_out or state_dir")
        self.commit_log: CommitLog | None = None
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
        self.terminated: str | None = None
        self.stop_reason = ""
        self.kept: dict[str, DataFrame] = {}
        self.has_readers: set[str] = set()
        self._kept_lock = threading.Lock()
        # Without a scheduler mode of the user's, each sequence gets a FAIR pool so a small one is
        # not queued behind a big one's tasks.
        self.use_pools = "spark.scheduler.mode" not in config.spark_conf
        self._pools_dir: str | None = None

    # -- hooks -----------------------------------------------------------------------------------
    def session_defaults(self) -> dict[str, str]:
        """Settings for a session this run creates, where the config does not set them."""
        # The JVM's causes in Python errors: a failed JDBC connection then says why, not only
        # FAILED_JDBC.CONNECTION (short_error keeps the causes' messages, not the stack).
        defaults = {"spark.ui.showConsoleProgress": "false", "spark.sql.pyspark.jvmStacktrace.enabled": "true"}
        if self.use_pools:
            defaults["spark.scheduler.mode"] = "FAIR"
            if ALLOCATION_FILE_CONF not in self.config.spark_conf:
                defaults[ALLOCATION_FILE_CONF] = self.pools_file()
        if self.log_level:
            defaults["spark.log.level"] = self.log_level
        return {k: v for k, v in defaults.items() if k not in self.config.spark_conf}

    def pools_file(self) -> str:
        """The allocation file declaring the sequences' FAIR pools (Spark warns once per pool it has to make
        up), written once per run into a folder of its own that ``close`` removes."""
        if self._pools_dir is None:
            self._pools_dir = tempfile.mkdtemp(prefix="sparkpipe-pools-")
        return write_allocation_file([s.name for s in self.config.sequences], self._pools_dir)

    def create_session(self) -> SparkSession:
        from pyspark.sql import SparkSession

        builder = SparkSession.builder.appName(self.config.app_name)
        if self.remote:
            builder = builder.remote(self.remote)
        elif self.master:
            builder = builder.master(self.master)
        connect = bool(self.remote or os.environ.get("SPARK_REMOTE"))
        # A connect server's scheduler and console belong to the server: only the config's settings go there.
        settings = self.config.spark_conf if connect else {**self.session_defaults(), **self.config.spark_conf}
        if self.console and not connect:
            from spark_job.engine.session import can_start_console_session, start_console_session

            if can_start_console_session():
                return start_console_session(self.config.app_name, self.master, settings, self.log_level or "WARN")
        for key, value in settings.items():
            builder = builder.config(key, value)
        return builder.getOrCreate()

    def before_sequence(self, sequence: SequenceSpec) -> None:
        """Called before a sequence runs, on the sequence's worker thread (sequences run at once)."""

    def after_sequence(self, sequence: SequenceSpec, metrics: SequenceMetrics) -> None:
        """Called after a sequence succeeded, failed, was cancelled or skipped, on its worker thread
        (skips: on the scheduling thread). Several may run at once: guard shared state."""

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
            self.capabilities = capabilities_of(self.spark)
            log.debug("sparkpipe: running on a %s", self.capabilities.describe())
            self.capabilities.prepare_run()
            self.metrics.spark_app_id = self.application_id(self.spark)
            self.announce_application(self.spark)
            self.load_commit_log(self.spark)
            failed_sources = {} if self.terminated else self.register_sources(self.spark)
            self.register_reused(self.spark)
            self.run_sequences(self.spark, failed_sources)
            self.record_usage(self.spark)
            self.metrics.finish(error=self.terminated)
        except Exception as exc:  # the session or the driver itself failed: still report
            log.error("sparkpipe: run failed: %s", short_error(exc, self.config))
            self.mark_pending_skipped("not run: the driver failed before running it")
            self.metrics.finish(error=self.terminated or short_error(exc, self.config))
        self.log_summary()
        document = self.metrics.to_dict()
        self.publish(document)
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
            self.cancel_jobs(self.job_tag("sources"))

    def close(self) -> None:
        """Stop the Spark session this run started; one it was given or found running is left alone."""
        if self.owns_session and self.spark is not None:
            self.spark.stop()
            self.owns_session = False
        if self._pools_dir is not None and (self.spark is None or not self.owns_session):
            shutil.rmtree(self._pools_dir, ignore_errors=True)
            self._pools_dir = None

    @staticmethod
    def application_id(spark: SparkSession) -> str | None:
        return capabilities_of(spark).application_id()

    def announce_application(self, spark: SparkSession) -> None:
        """Print the application's id and live UI address for whoever follows the driver's output."""
        ui_url = capabilities_of(spark).ui_url()
        print(marker_line(APPLICATION_MARKER, {"app_id": self.metrics.spark_app_id, "ui_url": ui_url}), flush=True)

    def record_usage(self, spark: SparkSession) -> None:
        """``runtime.usage`` of the metrics: what the run's tasks consumed (best effort, never fails the run)."""
        if not self.owns_session:
            return  # a shared session's figures are not this run's alone
        try:
            usage = executor_usage(spark)
        except Exception as exc:
            log.debug("sparkpipe: no usage figures: %s", exc)
            return
        if usage is not None:
            self.metrics.runtime["usage"] = usage

    def apply_runtime_conf(self, spark: SparkSession) -> None:
        for key, value in self.config.spark_conf.items():
            try:
                spark.conf.set(key, value)
            except Exception:  # static confs cannot change on a running session
                log.warning("sparkpipe: %s cannot be changed on an existing session; ignored", key)

    def register_sources(self, spark: SparkSession) -> dict[str, str]:
        """Register every source as a temp view; return alias (lower-cased) → error for failed ones."""
        failed: dict[str, str] = {}
        with self.spark_jobs(spark, "sources", pool=False):
            for source in self.config.sources:
                if self.terminated:
                    break
                try:
                    source.reader.read(spark).createOrReplaceTempView(source.alias)
                except Exception as exc:
                    error = f"source {source.id!r} ({source.path}): {short_error(exc, self.config)}"
                    log.error("sparkpipe: %s", error)
                    failed[source.alias.lower()] = error
        return failed

    # -- retries of one run key -----------------------------------------------------------------
    def load_commit_log(self, spark: SparkSession) -> None:
        """Mark ``reused`` the sequences an earlier try of this run key committed (same query and target)."""
        if not self.run_key:
            return
        folder = self.state_dir or (self.metrics_out or "").rsplit("/", 1)[0] or "."
        self.commit_log = CommitLog(log_uri(folder, self.run_key), self.run_key, spark)
        self.commit_log.load()
        for seq in self.config.sequences:
            earlier = self.commit_log.committed(seq)
            if earlier is None:
                continue
            metrics = self.metrics.sequences[seq.name]
            metrics.status, metrics.error = "reused", None
            metrics.rows_written = earlier.get("rows_written")
            metrics.duration_s = earlier.get("duration_s")
            metrics.started_at, metrics.ended_at = earlier.get("started_at"), earlier.get("ended_at")
            metrics.schema = earlier.get("schema")
        reused = [n for n, m in self.metrics.sequences.items() if m.status == "reused"]
        if reused:
            names = ", ".join(reused)
            log.info("sparkpipe: committed by an earlier try of run %s, not run again: %s", self.run_key, names)

    def register_reused(self, spark: SparkSession) -> None:
        """Views for the reused sequences, in graph order (one recomputed may read another)."""
        for seq in self.config.sequences:
            if self.metrics.sequences[seq.name].status != "reused":
                continue
            try:
                self.committed_result(spark, seq).createOrReplaceTempView(seq.name)
            except Exception as exc:  # its readers then fail on the missing view, each with its own error
                log.error(
                    "sparkpipe: sequence %s: cannot read its committed result: %s",
                    seq.name,
                    short_error(exc, self.config),
                )

    def committed_result(self, spark: SparkSession, seq: SequenceSpec) -> DataFrame:
        """What a committed sequence wrote: read back from a columnar target it replaced, else its query
        again (an appended target holds earlier rows too; text formats would change the types)."""
        plan = seq.writer.plan()
        query = SequenceRules(seq, capabilities_of(spark).functions).kept(spark.sql(seq.query))
        if not self.can_read_back(spark, seq):
            return query
        if plan.table is not None and plan.method in ("saveAsTable", "insertInto"):
            return spark.read.table(plan.table).select(*query.columns)
        if plan.path is not None and (plan.format or "").lower() in READ_BACK_FORMATS:
            # The query's own schema: partition columns keep their type and place.
            reader = spark.read.format(str(plan.format)).schema(query.schema)
            return reader.load(plan.path).select(*query.columns)
        return query

    def record_commit(self, name: str) -> None:
        if self.commit_log is None:
            return
        try:
            self.commit_log.record(self.by_name[name], self.metrics.sequences[name].to_dict())
        except Exception as exc:  # the data is committed; only a retry would write it again
            log.warning(
                "sparkpipe: could not record %s in the commit log %s: %s",
                name,
                self.commit_log.uri,
                short_error(exc, self.config),
            )

    # -- jobs of a sequence ----------------------------------------------------------------------
    def job_tag(self, name: str) -> str:
        """The job group and job tag of sequence ``name`` in this run (unique per run)."""
        return f"sparkpipe-{self.run_id}-{name}"

    @contextlib.contextmanager
    def spark_jobs(self, spark: SparkSession, name: str, pool: bool = True) -> Iterator[None]:
        """Put the Spark jobs this thread starts in ``name``'s job group, job tag and FAIR pool (where the
        session has them: see ``spark_job.engine.capabilities``)."""
        description = f"sparkpipe {self.config.app_name}: {name}"
        fair_pool = pool_name(name) if pool and self.use_pools else None
        with capabilities_of(spark).jobs_of(self.job_tag(name), description, fair_pool):
            yield

    def cancel_jobs(self, tag: str) -> None:
        spark = self.spark
        if spark is None:
            return
        try:
            capabilities_of(spark).cancel(tag)
        except Exception as exc:  # the session may be going down already
            log.warning("sparkpipe: could not cancel the jobs of %s: %s", tag, exc)

    # -- sequences -------------------------------------------------------------------------------
    def run_sequences(self, spark: SparkSession, failed_sources: Mapping[str, str]) -> None:
        graph = self.config.graph()
        readers_left = {s.name: 0 for s in self.config.sequences}
        for s in self.config.sequences:
            for dep in graph.depends_on[s.name]:
                readers_left[dep] += 1
        self.has_readers = {name for name, count in readers_left.items() if count}
        fail_fast = self.config.fail_fast

        def execute(name: str) -> str:
            return self.execute_sequence(spark, self.by_name[name], failed_sources, readers_left[name] > 0)

        def blocked(name: str, dependency: str) -> None:
            metrics = self.metrics.sequences[name]
            why = "failed" if self.metrics.sequences[dependency].status != "skipped" else "was skipped"
            metrics.status = "skipped"
            metrics.error = f"not run: it reads {dependency}, which {why}"
            log.warning("sparkpipe: sequence %s skipped: it reads %s, which %s", name, dependency, why)
            self.after_sequence(self.by_name[name], metrics)

        def finished(name: str, state: str) -> None:
            if state == "succeeded":
                self.record_commit(name)
            if state in ("failed", "cancelled") and fail_fast and not self.stop_reason:
                self.stop_reason = f"{name} failed and fail_fast is set"
                assert self.scheduler is not None
                self.scheduler.stop(cancel_running=True)
            for dep in graph.depends_on[name]:
                readers_left[dep] -= 1
                if readers_left[dep] == 0:
                    self.release(dep)

        def cancel(name: str) -> None:
            self.cancel_jobs(self.job_tag(name))

        self.scheduler = SequenceScheduler(
            graph, self.max_parallel, SchedulerCallbacks(execute, blocked, finished, cancel)
        )
        if self.terminated:
            self.scheduler.stop(cancel_running=False)
        try:
            self.scheduler.run({n: m.status for n, m in self.metrics.sequences.items() if m.status != "pending"})
        finally:
            self.metrics.max_concurrency = self.scheduler.max_concurrency
            if self.stop_reason:
                self.mark_pending_skipped(f"not run: {self.stop_reason}")
            for name in list(self.kept):
                self.release(name)

    def release(self, name: str) -> None:
        """Unpersist a kept result: its last reader finished."""
        with self._kept_lock:
            result = self.kept.pop(name, None)
        if result is not None:
            result.unpersist()

    def mark_pending_skipped(self, reason: str) -> None:
        for name, seq in self.metrics.sequences.items():
            if seq.status in ("pending", "running"):
                seq.status, seq.error = "skipped", reason
                log.warning("sparkpipe: sequence %s skipped: %s", name, reason.removeprefix("not run: "))

    def execute_sequence(
        self, spark: SparkSession, seq: SequenceSpec, failed_sources: Mapping[str, str], has_readers: bool
    ) -> str:
        """Run one sequence on this (worker) thread; record its metrics; return its final status."""
        metrics = self.metrics.sequences[seq.name]
        token = CURRENT_SEQUENCE.set(seq.name)
        try:
            self.before_sequence(seq)
            metrics.start()
            log.info("sparkpipe: sequence %s started", seq.name)
            broken = [failed_sources[a] for a in seq.reads_sources if a in failed_sources]
            if broken:
                metrics.finish("failed", error=broken[0])
            else:
                keep = has_readers and self.reuse_of(spark, seq) == "persist"
                try:
                    with self.spark_jobs(spark, seq.name):
                        rows, result = self.run_sequence(spark, seq, keep)
                    metrics.finish("succeeded", rows=rows)
                    if keep:
                        with self._kept_lock:
                            self.kept[seq.name] = result
                except Exception as exc:
                    if self.scheduler is not None and self.scheduler.is_cancelled(seq.name):
                        metrics.finish("cancelled", error=f"cancelled: {self.stop_reason}")
                    else:
                        log.debug("sparkpipe: sequence %s failed", seq.name, exc_info=True)
                        metrics.finish("failed", error=short_error(exc, self.config))
            level = logging.INFO if metrics.status == "succeeded" else logging.ERROR
            log.log(level, "sparkpipe: sequence %s %s", seq.name, metrics.summary())
            self.after_sequence(seq, metrics)
        except Exception as exc:  # a hook failed: the sequence's outcome is unknown to its readers
            if metrics.status in ("pending", "running", "succeeded"):
                metrics.finish("failed", rows=metrics.rows_written, error=short_error(exc, self.config))
            log.error("sparkpipe: sequence %s %s", seq.name, metrics.summary())
        finally:
            CURRENT_SEQUENCE.reset(token)
        return metrics.status

    def run_sequence(self, spark: SparkSession, seq: SequenceSpec, keep: bool) -> tuple[int | None, DataFrame]:
        """Run one query, register its result as view ``seq.name`` and write it.

        Returns the rows written and the result (persisted when ``keep``: later sequences read it).
        """
        session = capabilities_of(spark)
        F = session.functions
        rules = SequenceRules(seq, F)
        if rules.active and not session.counts_writes:
            uncounted = rules.needing_counts()
            if uncounted:
                raise ExpectationFailed(
                    f"sequence {seq.name}: {', '.join(uncounted)} need the counts of the write's observe(), "
                    f"which a {session.describe()} does not receive (Spark Connect 3.5 drops them): "
                    "run on a classic session (spark-submit) or on Spark Connect 4.x, or remove them"
                )
        result = spark.sql(seq.query)
        if keep:
            # Later sequences read this result: keep it instead of recomputing the query for each.
            result = result.persist()
        observation = session.new_observation(f"sparkpipe_{self.run_id}_{seq.name}")
        try:
            rules.check_types(result)  # Spark's analysis only: no job
            self.metrics.sequences[seq.name].schema = output_schema(rules.kept(result))
            rules.kept(result).createOrReplaceTempView(seq.name)
            if not rules.active:
                self.write(seq, result.observe(observation, F.count(F.lit(1)).alias("rows")))
            else:
                # One observe() counts the rows written and every rule's failures, in the write's own job.
                observed = result.observe(observation, *rules.observed_columns())
                staging = seq.writer.stages(spark)
                written = rules.kept(observed)
                if not staging:  # a fail rule must stop the job itself: nothing else stands between
                    written = rules.abort_on_failure(written)
                elif not session.counts_writes or session.counts_may_be_lost:
                    # The counts to decide on between write and commit may not come: the job decides.
                    written = rules.abort_on_failure(written, f"a {session.describe()} may receive no counts")
                self.write(
                    seq,
                    written,
                    lambda: self.check_rules(spark, seq, rules, observation, result),
                    staging,
                )
        except BaseException as exc:
            if keep:
                result.unpersist()
            if rules.active and self.metrics.sequences[seq.name].expectations is None:
                self.record_aborted_rules(seq, rules, exc)
            raise
        rows = self.observed_rows(spark, seq, observation)
        if not keep and seq.name in self.has_readers and self.reuse_of(spark, seq) == "read_back":
            self.committed_result(spark, seq).createOrReplaceTempView(seq.name)
        return rows, result

    def reuse_of(self, spark: SparkSession, seq: SequenceSpec) -> str:
        """How the sequences reading ``seq`` get its result: ``read_back`` (the committed target),
        ``persist`` (kept by Spark until the last reader finished) or ``recompute`` (the query again).

        ``cache: true`` persists and ``cache: false`` recomputes; by default a target Spark reads back
        with its types intact (columnar files, tables, replaced whole) is read back, which costs a file
        listing for a small result and spares memory and spill for a large one; anything else persists.
        """
        if seq.cache is not None:
            return "persist" if seq.cache else "recompute"
        return "read_back" if self.can_read_back(spark, seq) else "persist"

    def can_read_back(self, spark: SparkSession, seq: SequenceSpec) -> bool:
        """Whether the target holds exactly the sequence's result once written, in a typed format."""
        plan = seq.writer.plan()
        if plan.mode != "overwrite":
            return False  # append keeps earlier rows; error/ignore may leave someone else's data
        if plan.partition_by:
            dynamic = plan.options.get("partitionOverwriteMode") or self.session_conf(
                spark, "spark.sql.sources.partitionOverwriteMode"
            )
            if str(dynamic).lower() == "dynamic":
                return False  # only the partitions written are replaced: the others remain
        if plan.table is not None and plan.method in ("saveAsTable", "insertInto"):
            return True
        return plan.path is not None and (plan.format or "").lower() in READ_BACK_FORMATS

    def session_conf(self, spark: SparkSession, key: str) -> str | None:
        if key in self.config.spark_conf:
            return self.config.spark_conf[key]
        try:
            return spark.conf.get(key, None)
        except Exception:
            return None

    def write(
        self,
        seq: SequenceSpec,
        df: DataFrame,
        check: Callable[[], Callable[[], None] | None] | None = None,
        staging: bool = False,
    ) -> None:
        """Write through the writer's staging when it has one, committing only if not cancelled.

        ``check`` (the data-quality rules) runs once the data is written: between the staged write and
        its commit when ``staging`` (raising discards the staging), else after the write. It returns what
        to commit with the target (the quarantine), if anything.
        """
        writer = seq.writer
        stage = getattr(writer, "stage", None)
        if not callable(stage):
            writer.write(df)
            if check is not None:
                commit_more = check()
                if commit_more is not None:
                    commit_more()
            return
        staged = stage(df)
        if self.scheduler is not None and self.scheduler.is_cancelled(seq.name):
            staged.discard()
            raise SequenceCancelled(f"{seq.name} was cancelled before its write committed")
        if check is None:
            staged.commit()
            return
        if not staging:
            staged.commit()
            commit_more = check()
            if commit_more is not None:
                commit_more()
            return
        try:
            commit_more = check()
            if commit_more is not None:
                commit_more()
        except BaseException:
            staged.discard()  # the target keeps its old data
            raise
        staged.commit()

    def check_rules(
        self, spark: SparkSession, seq: SequenceSpec, rules: SequenceRules, observation: Any, result: DataFrame
    ) -> Callable[[], None] | None:
        """Record each rule's counts; raise ``ExpectationFailed`` for a failed ``fail`` rule or row bound;
        write the quarantined rows (staged) and return their commit."""
        metrics = self.metrics.sequences[seq.name]
        counted = self.observed_values(spark, seq, observation)
        uncounted = rules.needing_counts() if counted is None else []
        if uncounted:  # the write ran, but its counts did not come (a Spark Connect 4.0 server)
            staged_target = seq.writer.stages(spark)
            raise ExpectationFailed(
                f"sequence {seq.name}: the session sent no counts for the write, so {', '.join(uncounted)} "
                "could not be checked ("
                + (
                    "the staged write was discarded: the target keeps its old data"
                    if staged_target
                    else "the target cannot stage its write: the rows were written"
                )
                + "); run it again, or on Spark 4.1 or newer"
            )
        observed = counted or {}
        ran = bool(observed)
        outcomes = rules.outcomes(observed)
        metrics.expectations = {
            o.rule.name: {**o.to_dict(), **({} if ran else {"failed_rows": None, "passed": True})} for o in outcomes
        }
        checked, rows = int(observed.get("rows_checked") or 0), int(observed.get("rows") or 0)
        quarantined = int(observed.get("rows_quarantined") or 0)
        if counted is not None:  # else unknown (Spark Connect 3.5)
            metrics.rows_quarantined = quarantined
            metrics.rows_dropped = checked - rows - quarantined
        failures = rules.failures(outcomes, observed) if ran else []
        for outcome in outcomes:
            if not outcome.passed or not outcome.failed_rows:
                continue
            rule = outcome.rule
            log.warning(
                "sparkpipe: sequence %s: expectation %s (%s): %s of %s rows failed it (%s)",
                seq.name,
                rule.name,
                rule.condition,
                f"{outcome.failed_rows:,}",
                f"{checked:,}",
                {"warn": "written", "drop": "dropped", "quarantine": "quarantined"}.get(rule.on_fail, "tolerated"),
            )
        if failures:
            staged_target = seq.writer.stages(spark)
            after = (
                "the staged write was discarded: the target keeps its old data"
                if staged_target
                else "the target cannot stage its write: the rows were written (see the docs)"
            )
            raise ExpectationFailed("; ".join(failures) + f" ({after})")
        writer = seq.quarantine_writer
        if writer is None:
            return None
        staged = writer.stage(rules.with_failed_rules(result))
        return staged.commit

    def record_aborted_rules(self, seq: SequenceSpec, rules: SequenceRules, exc: BaseException) -> None:
        """The job failed before any count was reported (a ``fail`` rule aborted it, or another error)."""
        text = str(exc)
        self.metrics.sequences[seq.name].expectations = {
            r.name: {
                "failed_rows": None,
                "action": r.on_fail,
                "passed": not (r.on_fail == "fail" and f"expectation {r.name} (" in text),
            }
            for r in rules.rules
        }

    def observed_values(self, spark: SparkSession, seq: SequenceSpec, observation: Any) -> dict[str, Any] | None:
        """What the write's observe() counted: empty when the write executed nothing, None when the
        session does not hand the counts to the driver (Spark Connect 3.5)."""
        return capabilities_of(spark).observed(observation, self.job_tag(seq.name))

    def observed_rows(self, spark: SparkSession, seq: SequenceSpec, observation: Any) -> int | None:
        """The rows the write counted: 0 when the write executed nothing (mode ignore, existing target),
        None when the session does not hand the counts to the driver."""
        observed = self.observed_values(spark, seq, observation)
        return None if observed is None else int(observed.get("rows") or 0)

    def log_summary(self) -> None:
        """The per-sequence outcome, one line each, after the run."""
        seqs = self.metrics.sequences
        width = max((len(n) for n in seqs), default=0)
        log.info(
            "sparkpipe: %s %s in %.1f s (%d sequence%s, at most %d at once)",
            self.config.app_name,
            self.metrics.status,
            self.metrics.duration_s or 0.0,
            len(seqs),
            "" if len(seqs) == 1 else "s",
            self.metrics.max_concurrency,
        )
        for name, seq in seqs.items():
            log.info("  %s  %s", name.ljust(width), seq.summary())
        if self.metrics.error and self.terminated is None:
            log.error("sparkpipe: %s", self.metrics.error)
        skipped = [n for n, s in seqs.items() if s.status == "skipped"]
        if skipped:
            log.warning("sparkpipe: not run: %s", ", ".join(skipped))

    def publish(self, document: dict[str, Any]) -> None:
        text = json.dumps(document, separators=(",", ":"), default=str)
        if self.metrics_out:
            try:
                write_metrics(self.metrics_out, text, self.spark)
            except Exception as exc:
                log.error("sparkpipe: could not write metrics to %s: %s", self.metrics_out, exc)
        print(marker_line(METRICS_MARKER, document), flush=True)


def output_schema(df: DataFrame) -> list[dict[str, Any]]:
    """The columns a sequence writes, as its metrics report them (Spark's analysis only: no job)."""
    return [{"name": f.name, "type": f.dataType.simpleString(), "nullable": f.nullable} for f in df.schema.fields]


def sql_functions(spark: SparkSession) -> Any:
    """``pyspark.sql.functions`` of the session's kind (``SessionCapabilities.functions``)."""
    return capabilities_of(spark).functions


def new_observation(spark: SparkSession, name: str) -> Any:
    """What ``observe()`` takes on this session (``SessionCapabilities.new_observation``)."""
    return capabilities_of(spark).new_observation(name)


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
