"""The ``sparkpipe`` command: run, validate, schema, bundle. Exit codes: 0 ok, 1 pipeline failed, 2 config."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from spark_job.errors import ConfigError

if TYPE_CHECKING:
    from spark_job.config import PipelineConfig

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


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


def configure_logging() -> None:
    """Progress lines of the ``sparkpipe`` logger on stderr; stdout carries only the metrics line."""
    logger = logging.getLogger("sparkpipe")
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparkpipe", description="Declarative Spark SQL pipelines.")
    sub = parser.add_subparsers(dest="command", required=True)

    def config_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", required=True, help="pipeline config file (YAML or JSON)")
        p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="override a variable")

    run = sub.add_parser("run", help="validate and run a pipeline")
    config_args(run)
    run.add_argument("--metrics-out", help="also write the metrics JSON here (any Hadoop FS URI)")
    run.add_argument("--master", help="Spark master when not started by spark-submit (e.g. local[2])")
    validate = sub.add_parser("validate", help="check a config without starting Spark")
    config_args(validate)
    plan = sub.add_parser("plan", help="show the sequence graph (stages, reads, targets) without running it")
    config_args(plan)
    plan.add_argument("--format", choices=("text", "mermaid", "dot", "json"), default="text", help="output format")
    plan.add_argument(
        "--schemas", action="store_true", help="start Spark and resolve each sequence's output schema (no query runs)"
    )
    plan.add_argument("--master", help="Spark master for --schemas (default local[1])")
    tests = sub.add_parser("test", help="run a pipeline's tests (given fixture rows, expected results) locally")
    tests.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", help="test files (*_test.yaml) or folders")
    sub.add_parser("schema", help="print the config's JSON Schema")
    bundle = sub.add_parser("bundle", help="build the spark-submit entry file and --py-files zip")
    bundle.add_argument("--out", required=True, help="output folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    if args.command == "schema":
        from spark_job.schema import config_schema

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

    from spark_job.config import load_config

    try:
        # A plan without schemas reads no data: secret references stay unresolved.
        resolve_env = not (args.command == "plan" and not args.schemas)
        config = load_config(args.config, parse_vars(args.var), resolve_env=resolve_env)
    except ConfigError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        count = len(exc.problems)
        print(f"sparkpipe: {count} problem{'s' if count != 1 else ''} in the config; nothing was run", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "plan":
        return show_plan(config, args.format, args.schemas, args.master)
    if args.command == "validate":
        order = ", ".join(s.name for s in config.sequences)
        print(f"{args.config}: valid ({len(config.sources)} sources; sequences in order: {order})")
        return EXIT_OK

    from spark_job.runner import PipelineRunner

    runner = PipelineRunner(config, metrics_out=args.metrics_out, master=args.master)
    try:
        metrics = runner.run()
    finally:
        runner.close()
    return EXIT_OK if metrics["status"] == "succeeded" else EXIT_FAILED


def show_plan(config: PipelineConfig, fmt: str, schemas: bool, master: str | None) -> int:
    """Print the plan; with ``schemas``, resolve output schemas on a Spark session (exit 1 if one fails)."""
    from spark_job.plan import build_plan, render, resolve_schemas

    plan = build_plan(config)
    if schemas:
        from pyspark.sql import SparkSession

        owns = SparkSession.getActiveSession() is None
        builder = SparkSession.builder.appName(f"{config.app_name} (plan)").master(master or "local[1]")
        spark = builder.config("spark.ui.enabled", "false").getOrCreate()
        try:
            plan = resolve_schemas(plan, config, spark)
        finally:
            if owns:
                spark.stop()
    print(render(plan, fmt), end="")
    for seq in plan.failed:
        print(f"sparkpipe: sequence {seq.name}: {seq.error}", file=sys.stderr)
    return EXIT_FAILED if plan.failed else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
