"""The ``sparkpipe`` command: run, validate, plan, test, schema, bundle, class-data.

Exit codes: 0 ok, 1 pipeline failed, 2 config, 128 + the signal's number when terminated (143: SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

from spark_job.engine.session import LOG_LEVELS, STDERR_LOCK
from spark_job.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from spark_job.config.validation import PipelineConfig
    from spark_job.engine.runner import BasePipeline
    from spark_job.engine.shutdown import Termination

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def parse_vars(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    bad = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            bad.append(pair)
        else:
            out[name.strip()] = value
    if bad:
        from spark_job.errors import Problem

        raise ConfigError(Problem("--var", f"{b!r} is not NAME=VALUE") for b in bad)
    return out


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (tests and notebooks swap it)."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        with STDERR_LOCK:  # the JVM's lines are forwarded to the same stream from another thread
            super().emit(record)


def configure_logging() -> None:
    """Progress lines of the ``sparkpipe`` logger on stderr; stdout carries only the metrics line.

    Lines logged for a sequence (sequences run at once) start with ``[name]``.
    """
    from spark_job.engine.runner import SequenceLogFilter

    logger = logging.getLogger("sparkpipe")
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        from spark_job.markers import LEVELLED_LOG_ENV

        handler = StderrHandler()
        levelled = "%(levelname)s " if os.environ.get(LEVELLED_LOG_ENV) else ""
        handler.setFormatter(logging.Formatter(f"{levelled}%(sequence_prefix)s%(message)s"))
        handler.addFilter(SequenceLogFilter())
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def positive_int(text: str) -> int:
    from spark_job.config.fields import parse_int

    value = parse_int(text.strip())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (digits 0-9)")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1 (1 runs the sequences one after the other)")
    return value


def quiet_python_warnings() -> None:
    """pyspark imports ``pyspark.testing`` while converting arguments, which warns about the pandas
    version on every run; that warning says nothing about the pipeline."""
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)


def quiet_query_context_logs() -> None:
    """pyspark 4 logs every analysis error it raises, with the JVM's stack, as a JSON line on stderr
    (``SQLQueryContextLogger``): ``plan`` and ``test`` report each error on a line of their own."""
    try:
        from pyspark.logger import PySparkLogger
    except ImportError:  # pyspark 3.5 has no such logger
        return
    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)


@contextmanager
def terminate_on_signals(runner: BasePipeline, termination: Termination | None = None) -> Iterator[list[int]]:
    """SIGTERM (what YARN, Kubernetes and Airflow send first) and SIGINT stop the run cleanly: running
    Spark jobs cancelled, metrics still written, within a bounded time (``spark_job.engine.shutdown``).
    A second signal exits at once."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received  # signal handlers can only be set from the main thread
        return
    from spark_job.engine.shutdown import Termination

    termination = termination or Termination(runner)

    def handle(signum: int, frame: FrameType | None) -> None:
        if received:
            raise SystemExit(128 + signum)
        received.append(signum)
        termination.on_signal(signal.Signals(signum).name, 128 + signum)

    previous = {sig: signal.signal(sig, handle) for sig in TERMINATING_SIGNALS}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def build_parser() -> argparse.ArgumentParser:
    from spark_job.plan import FORMATS

    parser = argparse.ArgumentParser(prog="sparkpipe", description="Declarative Spark SQL pipelines.")
    sub = parser.add_subparsers(dest="command", required=True)

    def config_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", required=True, help="pipeline config file (YAML or JSON)")
        p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="override a variable")

    run = sub.add_parser("run", help="validate and run a pipeline")
    config_args(run)
    run.add_argument("--metrics-out", help="also write the metrics JSON here (any Hadoop FS URI)")
    run.add_argument("--master", help="Spark master when not started by spark-submit (e.g. local[2])")
    run.add_argument(
        "--remote", help="run on a Spark Connect server, e.g. sc://host:15002 (default: the SPARK_REMOTE variable)"
    )
    run.add_argument(
        "--max-parallel", type=positive_int, help="most sequences running at once (default: the config's, else 4)"
    )
    run.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=None,
        help="level of Spark's own log lines (default WARN)",
    )
    run.add_argument(
        "--run-key",
        help="the run this is a try of (the operator passes one per task run): a retry with the same key "
        "skips the sequences an earlier try committed",
    )
    run.add_argument("--state-dir", help="where the run key's commit log is kept (default: the --metrics-out folder)")
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="incremental sequences read all their source and replace their targets (as full_refresh: true)",
    )
    run.add_argument("--verbose", "-v", action="store_true", help="Spark's INFO lines too (--log-level INFO)")
    run.add_argument(
        "--no-class-data",
        action="store_true",
        help="start the JVM without its class-data archive and make none (as SPARKPIPE_CLASS_DATA=off)",
    )
    run.add_argument(
        "--no-jit-tuning",
        action="store_true",
        help="start the JVM with the JIT compiler's own thresholds (as SPARKPIPE_JIT_TUNING=off)",
    )
    validate = sub.add_parser("validate", help="check a config without starting Spark")
    config_args(validate)
    plan = sub.add_parser("plan", help="show the sequence graph (stages, reads, targets) without running it")
    config_args(plan)
    plan.add_argument("--format", choices=FORMATS, default="text", help="output format")
    plan.add_argument(
        "--schemas", action="store_true", help="start Spark and resolve each sequence's output schema (no query runs)"
    )
    plan.add_argument("--master", help="Spark master for --schemas (default local[1])")
    tests = sub.add_parser("test", help="run a pipeline's tests (given fixture rows, expected results) locally")
    tests.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", help="test files (*_test.yaml) or folders")
    sub.add_parser("schema", help="print the config's JSON Schema")
    bundle = sub.add_parser("bundle", help="build the spark-submit entry file and --py-files zip")
    bundle.add_argument("--out", required=True, help="output folder")
    archive = sub.add_parser(
        "class-data",
        help="make a class-data archive for driver JVMs started by this Spark's spark-submit (images, cluster init)",
    )
    archive.add_argument("--out", required=True, help="the archive file to write")
    archive.add_argument("--spark-home", help="the Spark installation (default: $SPARK_HOME, else pyspark's)")
    archive.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="a Spark property of the drivers (repeatable)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    if args.command == "schema":
        from spark_job.config.schema import config_schema

        print(json.dumps(config_schema(), indent=2))
        return EXIT_OK
    if args.command == "bundle":
        from spark_job.bundle import build_bundle

        bundle = build_bundle(args.out)
        print(
            json.dumps({"main_file": str(bundle.main_file), "py_files": str(bundle.py_files), "digest": bundle.digest})
        )
        return EXIT_OK

    if args.command == "test":
        from spark_job.pipeline_tests import main as run_test_files

        return run_test_files(args.paths)
    if args.command == "class-data":
        return make_class_data(args.out, args.spark_home, args.conf)

    from spark_job.config.validation import load_config

    try:
        # A plan without schemas reads no data: secret references stay unresolved.
        resolve_env = not (args.command == "plan" and not args.schemas)
        config = load_config(args.config, parse_vars(args.var), resolve_env=resolve_env, vars_from="--var")
    except ConfigError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        count = len(exc.problems)
        print(f"sparkpipe: {count} problem{'s' if count != 1 else ''} in the config; nothing was run", file=sys.stderr)
        return EXIT_CONFIG
    if getattr(args, "full_refresh", False):
        config = config.refreshed()
    if args.command == "plan":
        return show_plan(config, args.format, args.schemas, args.master)
    if args.command == "validate":
        order = ", ".join(s.name for s in config.sequences)
        print(f"{args.config}: valid ({len(config.sources)} sources; sequences in order: {order})")
        return EXIT_OK

    from spark_job.engine.runner import PipelineRunner

    if args.run_key is not None and not (args.run_key.strip() and (args.metrics_out or args.state_dir)):
        why = "is empty" if not args.run_key.strip() else "needs --metrics-out or --state-dir for its commit log"
        print(f"sparkpipe: --run-key {why}; nothing was run", file=sys.stderr)
        return EXIT_CONFIG
    outputs = {"--metrics-out": args.metrics_out, "--state-dir": args.state_dir}
    if misplaced := outputs_inside_targets(config, outputs):
        print(f"sparkpipe: {misplaced}; nothing was run", file=sys.stderr)
        return EXIT_CONFIG
    from spark_job.engine.run_outputs import absolute, unwritable_outputs

    args.metrics_out, args.state_dir = absolute(args.metrics_out), absolute(args.state_dir)
    if unwritable := unwritable_outputs(args.run_key, args.state_dir, args.metrics_out):
        print(f"sparkpipe: {unwritable}; nothing was run", file=sys.stderr)
        return EXIT_CONFIG
    if args.no_class_data:
        from spark_job.engine.class_data import SWITCH_ENV

        os.environ[SWITCH_ENV] = "off"  # read where the JVM is started
    if args.no_jit_tuning:
        from spark_job.engine import jit

        os.environ[jit.SWITCH_ENV] = "off"
    if args.run_key:
        from spark_job.engine.commit_log import RUN_KEY_ENV

        os.environ[RUN_KEY_ENV] = args.run_key  # the writers' leases name the run with it
    quiet_python_warnings()
    if args.log_level != "DEBUG":
        # The runner reports each sequence's error itself: PySpark's JSON copy (with the JVM's stack) is noise.
        quiet_query_context_logs()
    runner = PipelineRunner(
        config,
        metrics_out=args.metrics_out,
        master=args.master,
        remote=args.remote,
        max_parallel=args.max_parallel,
        log_level=args.log_level or ("INFO" if args.verbose else "WARN"),
        console=True,
        run_key=args.run_key,
        state_dir=args.state_dir,
    )
    from spark_job.engine.shutdown import (
        CLOSE_WAIT_S,
        SessionCreationInterrupted,
        Termination,
        connect_run,
        exit_now,
        run_bounded,
    )

    termination = Termination(runner)
    with terminate_on_signals(runner, termination) as received:
        try:
            metrics = runner.run()
        except SessionCreationInterrupted:
            metrics = termination.report()
        finally:
            termination.ended.set()
            if connect_run(runner):  # stopping a Connect session asks a server that may not answer
                run_bounded(runner.close, CLOSE_WAIT_S, "sparkpipe-close")
            else:
                runner.close()
    if runner.resumed is not None and runner.resumed.refused:
        code = EXIT_CONFIG  # the run key's folder cannot be written: refused before anything ran
    elif received:
        code = 128 + received[0]
    else:
        code = EXIT_OK if metrics["status"] == "succeeded" else EXIT_FAILED
    if connect_run(runner):
        # The Connect client's atexit cleanup retries an unanswered server for minutes: the metrics are
        # written and the session closed (or given up on), so end here.
        exit_now(code)
    return code


def make_class_data(out: str, spark_home: str | None, conf: Sequence[str]) -> int:
    """``sparkpipe class-data``: make the archive at ``out`` now (a Docker build, a cluster's init action)."""
    import importlib.util

    from spark_job.engine.class_data import make_archive

    settings = {}
    for pair in conf:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            print(f"sparkpipe: --conf {pair!r} is not KEY=VALUE; nothing was made", file=sys.stderr)
            return EXIT_CONFIG
        settings[key.strip()] = value
    if spark_home is None:
        spark_home = os.environ.get("SPARK_HOME")
    if spark_home is None:
        spec = importlib.util.find_spec("pyspark")  # found, not imported: the archive needs no Python Spark
        if spec is None or not spec.submodule_search_locations:
            print("sparkpipe: no Spark found: set SPARK_HOME or give --spark-home; nothing was made", file=sys.stderr)
            return EXIT_CONFIG
        spark_home = next(iter(spec.submodule_search_locations))
    if not os.path.isfile(os.path.join(spark_home, "bin", "spark-submit")):
        print(f"sparkpipe: no bin/spark-submit in {spark_home}: check --spark-home; nothing was made", file=sys.stderr)
        return EXIT_CONFIG
    extra_class_path = settings.pop("spark.driver.extraClassPath", "")
    why = make_archive(spark_home, out, os.environ, extra_class_path, settings)
    if why is not None:
        print(f"sparkpipe: no class-data archive: {why}", file=sys.stderr)
        return EXIT_FAILED
    print(out)
    return EXIT_OK


def outputs_inside_targets(config: PipelineConfig, outputs: dict[str, str | None]) -> str | None:
    """Why a file the run writes besides its targets (the metrics, the commit log) cannot be where it
    is: inside a target, which an overwrite replaces (the metrics would be lost, the commit log with
    them, so that a retry would write everything again)."""
    from spark_job.config.overlaps import target_places
    from spark_job.config.paths import PathResolver
    from spark_job.config.urls import strip_credentials

    paths = PathResolver(remember_links=True)
    targets = target_places(config.sequences, paths, config.spark_conf.get("spark.sql.warehouse.dir"))
    for option, value in outputs.items():
        if not value:
            continue
        where = paths.canonical(value)
        for place in targets:
            if place.location.contains(where):
                return (
                    f"{option} {strip_credentials(value)} lies inside the target of {place.sequence} "
                    f"({place.location.uri()}), which its write replaces: write it elsewhere"
                )
    return None


def show_plan(config: PipelineConfig, fmt: str, schemas: bool, master: str | None) -> int:
    """Print the plan; with ``schemas``, resolve output schemas on a Spark session set up as a run sets up
    its own (exit 1 if one fails). What is printed shows no resolved secret."""
    from spark_job.plan import build_plan, masked, render, resolve_schemas

    plan = build_plan(config)
    if schemas:
        quiet_python_warnings()
        quiet_query_context_logs()
        with plan_session(config, master) as spark:
            plan = resolve_schemas(plan, config, spark)
    plan = masked(plan, config.mask)
    print(render(plan, fmt), end="")
    for seq in plan.failed:
        print(f"sparkpipe: sequence {seq.name}: {seq.error}", file=sys.stderr)
    return EXIT_FAILED if plan.failed else EXIT_OK


@contextmanager
def plan_session(config: PipelineConfig, master: str | None) -> Iterator[SparkSession]:
    """The session ``plan --schemas`` resolves schemas on: made as ``run`` makes its own, with the config's
    ``spark_conf`` (jars, catalogs, ANSI, case and time-zone settings, static keys at creation, Spark's own
    ``${...}`` substitution off), Spark's log lines at ERROR and no UI; stopped afterwards. A session already
    running in this process is used as it is given to a run: the config's runtime settings applied for the
    plan and put back after it, static ones said to be ignored."""
    import dataclasses

    from pyspark.sql import SparkSession

    from spark_job.engine.runner import BasePipeline

    active = SparkSession.getActiveSession()
    if active is None:
        conf = {"spark.ui.enabled": "false", **config.spark_conf}
        pipeline = BasePipeline(
            dataclasses.replace(config, spark_conf=conf), master=master or "local[1]", log_level="ERROR", console=True
        )
        spark = pipeline.create_session()
        try:
            yield spark
        finally:
            spark.stop()
        return
    previous: dict[str, str | None] = {}
    try:
        for key, value in config.spark_conf.items():
            before = active.conf.get(key, None)
            if before == value:
                continue
            try:
                active.conf.set(key, value)
            except Exception:  # a static setting: fixed when the session was made
                print(
                    f"sparkpipe: {key} cannot change on the session already running here: ignored for --schemas",
                    file=sys.stderr,
                )
                continue
            previous[key] = before
        yield active
    finally:
        for key, before in previous.items():
            if before is None:
                active.conf.unset(key)
            else:
                active.conf.set(key, before)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
