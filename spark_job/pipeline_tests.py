"""``sparkpipe test``: a pipeline's SQL run on fixture rows in one local session, compared with expected rows.

A test file names a config and lists tests; each test gives rows (or a small file) for sources and
expects rows (or a row count) of sequences. The sequences an expectation needs run in graph order on
those fixtures as temporary views; nothing is written anywhere.

A test may also give a target's current rows (``given: {this: {<sequence>: rows}}``) and expect the
target's rows after the run (``expect: {<sequence>: {this: rows}}``): the target's mode is applied to
them as the run's write would (``spark_job.testing.targets``), and a watermarked sequence reads only the
source rows beyond the highest value those rows hold, as a run on that target would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spark_job.config.document import child_path, read_document
from spark_job.config.fields import describe_value
from spark_job.config.incremental import Watermark
from spark_job.config.merge import MergeSpec
from spark_job.config.validation import PipelineConfig, SequenceSpec, load_config
from spark_job.engine.capabilities import NotComputedOnce, capabilities_of
from spark_job.engine.incremental import beyond, incremental_query, quote_sql
from spark_job.errors import ConfigError, Problem
from spark_job.quality import SequenceRules
from spark_job.testing.expected import Expected, compare
from spark_job.testing.fixtures import FIXTURE_FORMATS, MAX_FIXTURE_ROWS, Fixture, fixture_error, fixture_frame, reason
from spark_job.testing.sessions import local_session, sql_settings, static_settings
from spark_job.testing.targets import rows_after, typed_like

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

TEST_FILE_KEYS = ("config", "vars", "tests", "description")
TEST_KEYS = ("name", "vars", "given", "expect", "description")
EXPECT_KEYS = ("rows", "ordered", "columns", "expect_failed", "this")
THIS = "this"
"""The key of ``given`` holding targets' current rows, and of an expectation holding a target's rows after."""


@dataclass(frozen=True)
class PipelineTest:
    """One test of a test file."""

    name: str
    file: str
    config: PipelineConfig
    given: tuple[Fixture, ...]
    expect: tuple[Expected, ...]
    this: tuple[Fixture, ...] = ()
    """The targets' current rows: one fixture per sequence (``source_id`` is the sequence's name)."""
    expect_this: tuple[Expected, ...] = ()
    """The targets' rows expected after the run."""


@dataclass
class TestResult:
    """The outcome of one test: ``passed``, the differences found, or an ``error`` (a fixture or SQL problem)."""

    test: PipelineTest
    passed: bool
    differences: list[str] = field(default_factory=list)
    error: str | None = None
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    """Settings of the config the session could not take (static ones on a session made before)."""

    @property
    def label(self) -> str:
        return f"{self.test.file}::{self.test.name}"


def load_test_file(path: str | os.PathLike[str]) -> list[PipelineTest]:
    """Read a test file and the config it names; raise ``ConfigError`` naming every problem (file, line, path)."""
    document = read_document(path)
    problems: list[Problem] = []
    file = document.file

    def report(where: str, message: str) -> None:
        problems.append(Problem(where, message, file, _line(document.lines, where)))

    data = document.data
    if not isinstance(data, Mapping):
        raise ConfigError(
            [Problem("", f"a test file is a mapping with config and tests, got {describe_value(data)}", file)]
        )
    for key in data:
        if key not in TEST_FILE_KEYS:
            report(str(key), f"unknown key for a test file (valid keys: {', '.join(TEST_FILE_KEYS)})")
    base = Path(path).parent
    config_ref = data.get("config")
    if not isinstance(config_ref, str) or not config_ref:
        report("config", "must name the pipeline config, relative to this file")
    tests = data.get("tests")
    if not isinstance(tests, list) or not tests:
        report("tests", f"must be a non-empty list of tests, got {describe_value(tests)}")
    file_vars = data.get("vars") or {}
    if not isinstance(file_vars, Mapping):
        report("vars", f"must be a mapping of names to values, got {describe_value(file_vars)}")
        file_vars = {}
    if problems:
        raise ConfigError(problems)
    assert isinstance(config_ref, str) and isinstance(tests, list)
    config_path = base / config_ref
    loaded: list[PipelineTest] = []
    names: set[str] = set()
    for i, raw in enumerate(tests):
        where = f"tests[{i}]"
        if not isinstance(raw, Mapping):
            report(where, f"a test is a mapping with name, given and expect, got {describe_value(raw)}")
            continue
        for key in raw:
            if key not in TEST_KEYS:
                report(child_path(where, key), f"unknown key for a test (valid keys: {', '.join(TEST_KEYS)})")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            report(child_path(where, "name"), "every test needs a name")
            continue
        if name in names:
            report(child_path(where, "name"), f"test name {name!r} is used twice in this file")
        names.add(name)
        test_vars = raw.get("vars") or {}
        if not isinstance(test_vars, Mapping):
            report(child_path(where, "vars"), f"must be a mapping, got {describe_value(test_vars)}")
            continue
        try:
            # Fixtures stand in for the sources and nothing is written: no secret needs resolving.
            # The test file's vars are the author's, as the config's own are: not checked as values passed in.
            config = load_config(config_path, {**file_vars, **test_vars}, resolve_env=False, vars_from=None)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        given_raw = raw.get("given")
        this_raw = None
        # ``this`` under given is the targets' rows, unless the config has a source of that name
        if isinstance(given_raw, Mapping) and THIS in given_raw and THIS not in {s.id for s in config.sources}:
            given_raw = {k: v for k, v in given_raw.items() if k != THIS}
            this_raw = raw["given"][THIS]
        given = _fixtures(given_raw, child_path(where, "given"), config, base, report)
        this = _target_fixtures(this_raw, child_path(child_path(where, "given"), THIS), config, base, report)
        expect, expect_this = _expectations(raw.get("expect"), child_path(where, "expect"), config, report)
        loaded.append(
            PipelineTest(name, str(file), config, tuple(given), tuple(expect), tuple(this), tuple(expect_this))
        )
    if problems:
        raise ConfigError(problems)
    return loaded


def _fixtures(raw: Any, where: str, config: PipelineConfig, base: Path, report: Any) -> list[Fixture]:
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        report(where, f"must map source ids to rows or {{file: PATH}}, got {describe_value(raw)}")
        return []
    ids = [s.id for s in config.sources]
    return _mapped_fixtures(raw, where, ids, "source", ", ".join(ids) or "none", config, base, report)


def _target_fixtures(raw: Any, where: str, config: PipelineConfig, base: Path, report: Any) -> list[Fixture]:
    """``given: {this: {<sequence>: rows or {file: PATH}}}``: the current rows of sequences' targets."""
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        report(where, f"must map sequences to their target's current rows, got {describe_value(raw)}")
        return []
    names = [s.name for s in config.sequences]
    return _mapped_fixtures(raw, where, names, "sequence", ", ".join(sorted(names)), config, base, report)


def _mapped_fixtures(
    raw: Mapping[Any, Any],
    where: str,
    known: list[str],
    kind: str,
    listed: str,
    config: PipelineConfig,
    base: Path,
    report: Any,
) -> list[Fixture]:
    """One fixture per entry of ``raw`` whose key is one of the ``known`` names of a ``kind``."""
    fixtures = []
    for name, value in raw.items():
        path = child_path(where, name)
        if name not in known:
            report(path, f"{name!r} is not a {kind} of {config.file} ({kind}s: {listed})")
            continue
        fixture = _fixture(str(name), value, path, base, report)
        if fixture is not None:
            fixtures.append(fixture)
    return fixtures


def _fixture(name: str, value: Any, path: str, base: Path, report: Any) -> Fixture | None:
    """The fixture of rows ``value`` (a list of rows, or ``{file: PATH}``), or None after reporting why not."""
    if isinstance(value, list):
        bad = next((j for j, row in enumerate(value) if not isinstance(row, Mapping)), None)
        if bad is not None:
            report(f"{path}[{bad}]", f"a row is a mapping of column to value, got {describe_value(value[bad])}")
        elif len(value) > MAX_FIXTURE_ROWS:
            report(path, f"{len(value):,} rows: a fixture holds at most {MAX_FIXTURE_ROWS:,}")
        else:
            return Fixture(name, path, rows=[dict(r) for r in value])
        return None
    if isinstance(value, Mapping) and isinstance(value.get("file"), str):
        file = base / value["file"]
        fmt = value.get("format") or FIXTURE_FORMATS.get(file.suffix.lower())
        if fmt not in FIXTURE_FORMATS.values():
            report(child_path(path, "file"), f"{file.name}: give format csv, json or parquet")
        elif not file.exists():
            report(child_path(path, "file"), f"fixture file not found: {file}")
        else:
            return Fixture(name, path, file=file, format=str(fmt))
        return None
    report(path, f"must be a list of rows or {{file: PATH}}, got {describe_value(value)}")
    return None


def _expectations(raw: Any, where: str, config: PipelineConfig, report: Any) -> tuple[list[Expected], list[Expected]]:
    """The expected rows of sequences, and of their targets after the run (``this``)."""
    if not isinstance(raw, Mapping) or not raw:
        report(where, "must map at least one sequence to its expected rows or {rows: N}")
        return [], []
    names = {s.name for s in config.sequences}
    expected: list[Expected] = []
    expected_this: list[Expected] = []
    for name, value in raw.items():
        path = child_path(where, name)
        if name not in names:
            report(path, f"{name!r} is not a sequence of {config.file} (sequences: {', '.join(sorted(names))})")
            continue
        if isinstance(value, list):
            value = {"rows": value}
        if not isinstance(value, Mapping):
            report(path, f"must be a list of rows, or {{rows: N}}, got {describe_value(value)}")
            continue
        for key in value:
            if key not in EXPECT_KEYS:
                report(child_path(path, key), f"unknown key (valid keys: {', '.join(EXPECT_KEYS)})")
        failed = _expected_failures(value, path, next(s for s in config.sequences if s.name == name), report)
        if THIS in value:
            this = _expected_rows(value[THIS], child_path(path, THIS), str(name), bool(value.get("ordered")), report)
            if this is not None:
                expected_this.append(this)
        rows = value.get("rows")
        if rows is None and THIS in value:
            if failed is not None:
                expected.append(Expected(str(name), path, failed=failed))
        elif rows is None and failed is not None:
            expected.append(Expected(str(name), path, failed=failed))
        elif isinstance(rows, bool) or not isinstance(rows, (int, list)):
            report(child_path(path, "rows"), f"must be a list of rows or a row count, got {describe_value(rows)}")
        elif isinstance(rows, int):
            expected.append(Expected(str(name), path, count=rows, failed=failed))
        elif not all(isinstance(r, Mapping) for r in rows):
            report(child_path(path, "rows"), "every expected row is a mapping of column to value")
        else:
            ordered = bool(value.get("ordered"))
            expected.append(Expected(str(name), path, rows=[dict(r) for r in rows], ordered=ordered, failed=failed))
    return expected, expected_this


def _expected_rows(value: Any, path: str, name: str, ordered: bool, report: Any) -> Expected | None:
    """A list of rows or a row count, expected of sequence ``name``'s target after the run."""
    if isinstance(value, bool) or not isinstance(value, (int, list)):
        report(
            path,
            f"must be the target's rows after the run (a list of rows) or their count, got {describe_value(value)}",
        )
        return None
    if isinstance(value, int):
        return Expected(name, path, count=value)
    if not all(isinstance(r, Mapping) for r in value):
        report(path, "every expected row is a mapping of column to value")
        return None
    return Expected(name, path, rows=[dict(r) for r in value], ordered=ordered)


def _expected_failures(
    value: Mapping[str, Any], path: str, sequence: SequenceSpec, report: Any
) -> dict[str, int] | None:
    """``expect_failed: {rule: N}``: each a data-quality rule of the sequence and a row count."""
    if "expect_failed" not in value:
        return None
    where = child_path(path, "expect_failed")
    raw = value["expect_failed"]
    if not isinstance(raw, Mapping) or not raw:
        report(where, f"must map rule names to the rows failing them ({{rule: 2}}), got {describe_value(raw)}")
        return None
    rules = {r.name for r in sequence.expectations}
    failed: dict[str, int] = {}
    for rule, count in raw.items():
        if rule not in rules:
            known = ", ".join(sorted(rules)) if rules else "it has none"
            report(child_path(where, rule), f"{rule!r} is not an expectation of sequence {sequence.name} ({known})")
        elif isinstance(count, bool) or not isinstance(count, int) or count < 0:
            report(child_path(where, rule), f"must be a row count (0 or more), got {describe_value(count)}")
        else:
            failed[str(rule)] = count
    return failed


def run_tests(tests: Iterable[PipelineTest], spark: SparkSession) -> list[TestResult]:
    return [run_test(test, spark) for test in tests]


def run_test(test: PipelineTest, spark: SparkSession, made_with: Mapping[str, str] | None = None) -> TestResult:
    """Register the fixtures, run the sequences the expectations need (graph order) and compare.

    ``made_with``: the static settings the session was made with (see :func:`run_in_sessions`)."""
    start = time.monotonic()
    created: list[str] = []
    # The pipeline's SQL settings (ANSI mode, time zone, ...) apply to its test, and only to it. Static
    # ones are fixed when the session is made (``main`` makes it with them): here they can only be noted.
    previous: dict[str, str | None] = {}
    notes: list[str] = []
    try:
        for key, value in sql_settings(test.config).items():
            before = spark.conf.get(key, None)
            if before == value or (made_with or {}).get(key) == value:  # set when the session was made
                continue
            try:
                spark.conf.set(key, value)
            except Exception:
                notes.append(
                    f"{key} is fixed when a session is made and this one was made without it: ignored "
                    f"(the session has {before!r})"
                )
                continue
            previous[key] = before
        result = _run(test, spark, created)
    finally:
        for view in created:
            spark.catalog.dropTempView(view)
        for key, before in previous.items():
            if before is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, before)
    result.duration_s = round(time.monotonic() - start, 3)
    result.notes = notes
    return result


def _run(test: PipelineTest, spark: SparkSession, created: list[str]) -> TestResult:
    config = test.config
    needed = _needed_sequences(config, [e.sequence for e in (*test.expect, *test.expect_this)])
    by_id = {f.source_id: f for f in test.given}
    sources = {s.alias.lower(): s for s in config.sources}
    wanted_sources = {a for seq in needed for a in seq.reads_sources}
    missing = sorted(sources[a].id for a in wanted_sources if sources[a].id not in by_id)
    if missing:
        names = ", ".join(missing)
        return TestResult(test, False, error=f"no fixture for source {names}: give rows or {{file: PATH}} under given")
    for alias in sorted(wanted_sources):
        source = sources[alias]
        fixture = by_id[source.id]
        schema = source.spec.get("schema")
        try:
            fixture_frame(spark, fixture, schema).createOrReplaceTempView(source.alias)
        except Exception as exc:
            return TestResult(test, False, error=fixture_error(spark, fixture, schema, exc))
        created.append(source.alias)
    results: dict[str, DataFrame] = {}
    failed_rows: dict[str, dict[str, int]] = {}
    differences: list[str] = []
    asserted = {(e.sequence, rule) for e in test.expect for rule in e.failed or {}}
    targets = _Targets(test, spark, created)
    for seq in needed:
        try:
            df = spark.sql(targets.query(seq))
            rules = SequenceRules(seq, capabilities_of(spark).functions)
            if rules.active:
                # The rules as the run applies them: counted on the result, drop/quarantine rows left out.
                rules.check_types(df)
                # Each condition once per row, and the rows computed once: the counts and the rows the
                # readers see are of the same evaluation, as in a run (where the session can).
                df = rules.evaluated(df)
                with contextlib.suppress(NotComputedOnce):
                    df = capabilities_of(spark).computed_once(df)
                row = df.agg(*rules.observed_columns()).first()
                observed = row.asDict() if row is not None else {}
                outcomes = rules.outcomes(observed)
                failed_rows[seq.name] = {o.rule.name: int(o.failed_rows or 0) for o in outcomes}
                unexpected = [o for o in outcomes if not o.passed and (seq.name, o.rule.name) not in asserted]
                differences += rules.failures(unexpected, observed)
                df = rules.kept(df)
        except Exception as exc:
            hint = ""
            if "UNRESOLVED_COLUMN" in str(exc):
                hint = " (does a fixture lack a column the query needs?)"
            return TestResult(
                test, False, error=f"sequence {seq.name} cannot run on the fixtures{hint}: {_first_line(exc)}"
            )
        df.createOrReplaceTempView(seq.name)
        created.append(seq.name)
        results[seq.name] = df
    for expected in test.expect_this:
        try:
            actual = targets.after(next(s for s in needed if s.name == expected.sequence), results[expected.sequence])
        except Exception as exc:
            return TestResult(test, False, error=f"sequence {expected.sequence}'s write: {_first_line(exc)}")
        differences += compare(dataclasses.replace(expected, sequence=f"{expected.sequence} target"), actual)
    for expected in test.expect:
        for rule, count in (expected.failed or {}).items():
            got = failed_rows.get(expected.sequence, {}).get(rule, 0)
            if got != count:
                differences.append(
                    f"{expected.sequence}: expectation {rule}: expected {count:,} failing rows, got {got:,}"
                )
        if expected.rows is None and expected.count is None:
            continue
        try:
            actual = [row.asDict(recursive=True) for row in results[expected.sequence].collect()]
        except Exception as exc:
            return TestResult(test, False, error=f"sequence {expected.sequence} failed: {_first_line(exc)}")
        differences += compare(expected, actual)
    return TestResult(test, not differences, differences)


class _Targets:
    """The targets' current rows a test gives (``given: {this: ...}``): what a watermarked sequence reads
    beyond them, and what the write makes of them."""

    def __init__(self, test: PipelineTest, spark: SparkSession, created: list[str]) -> None:
        self.spark, self.created = spark, created
        self.given = {f.source_id: f for f in test.this}
        self.now = datetime.datetime.now().replace(microsecond=0)

    def current(self, seq: SequenceSpec, result: DataFrame | None) -> DataFrame | None:
        """The target's given rows, typed like the result's columns; None when none are given."""
        fixture = self.given.get(seq.name)
        if fixture is None:
            return None
        merge = MergeSpec.of(seq.target)
        if fixture.file is None and not fixture.rows:  # a target that exists and holds no rows
            if result is None or (merge is not None and merge.mode == "scd2"):
                return None
            return result.limit(0)
        # a column empty in every row has no type to infer: it is added as a string, then typed like the result's
        empty = [
            c
            for c in dict.fromkeys(k for r in fixture.rows or () for k in r)
            if all(r.get(c) is None for r in fixture.rows or ())
        ]
        if empty:
            fixture = dataclasses.replace(
                fixture, rows=[{k: v for k, v in r.items() if k not in empty} for r in fixture.rows or ()]
            )
        rows = fixture_frame(self.spark, fixture, None)
        for column in empty:
            rows = rows.withColumn(column, capabilities_of(self.spark).functions.lit(None).cast("string"))
        return rows if result is None else typed_like(rows, result, merge)

    def query(self, seq: SequenceSpec) -> str:
        """The sequence's query; a watermarked one reads its source beyond the given target's highest value."""
        watermark = seq.incremental
        if not isinstance(watermark, Watermark) or seq.name not in self.given:
            return seq.query
        current = self.current(seq, None)
        if current is None or watermark.target_column.lower() not in {c.lower() for c in current.columns}:
            return seq.query
        F = capabilities_of(self.spark).functions
        before = current.agg(F.max(F.col(quote_sql(watermark.target_column)))).first()
        if before is None or before[0] is None:
            return seq.query
        view = f"sparkpipe_incremental_{seq.name}"
        source = self.spark.table(quote_sql(watermark.source))
        beyond(source, watermark, before[0], seq.writer.mode, F).createOrReplaceTempView(view)
        self.created.append(view)
        return incremental_query(seq.query, watermark.source, view)

    def after(self, seq: SequenceSpec, result: DataFrame) -> list[dict[str, Any]]:
        """The target's rows after the sequence wrote ``result`` onto the given ones."""
        current = self.current(seq, result)
        mode = seq.writer.mode
        if isinstance(seq.incremental, Watermark) and current is None:
            mode = "overwrite"  # a first run of a watermarked sequence reads everything and replaces the target
        return [row.asDict(recursive=True) for row in rows_after(seq, mode, current, result, self.now).collect()]


def _needed_sequences(config: PipelineConfig, names: Sequence[str]) -> list[SequenceSpec]:
    by_name = {s.name: s for s in config.sequences}
    wanted: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name not in wanted:
            wanted.add(name)
            stack.extend(by_name[name].depends_on)
    return [s for s in config.sequences if s.name in wanted]  # config.sequences is in graph order


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _line(lines: Mapping[str, int], path: str) -> int | None:
    probe = path
    while probe:
        if probe in lines:
            return lines[probe]
        cut = max(probe.rfind("."), probe.rfind("["))
        probe = probe[: max(cut, 0)]
    return lines.get("")


def find_test_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The test files named, and those under named folders (``*_test.yaml``, ``test_*.yaml``, ``.yml`` too)."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and is_test_file_name(p.name))
        else:
            found.append(path)
    return found


def is_test_file_name(name: str) -> bool:
    stem, _, suffix = name.rpartition(".")
    return suffix in ("yaml", "yml") and (stem.endswith("_test") or stem.startswith("test_"))


def main(paths: Sequence[str], spark: SparkSession | None = None) -> int:
    """Run the test files; print one line per test and the differences; return 0, 1 (a test failed) or 2."""
    import sys

    files = find_test_files(paths)
    if not files:
        print(f"sparkpipe test: no test files (*_test.yaml, test_*.yaml) in {', '.join(paths)}", file=sys.stderr)
        return 2
    tests: list[PipelineTest] = []
    broken = 0
    for file in files:
        try:
            tests += load_test_file(file)
        except ConfigError as exc:
            broken += 1
            for problem in exc.problems:
                print(str(problem), file=sys.stderr)
    if broken:
        print(f"sparkpipe test: {broken} test file(s) with problems; no test was run", file=sys.stderr)
        return 2
    owns = spark is None
    if spark is None:
        from spark_job.cli import quiet_python_warnings, quiet_query_context_logs

        quiet_python_warnings()
        quiet_query_context_logs()
        spark = local_session(console=True)
    try:
        results, spark = run_in_sessions(tests, spark, owns)
    finally:
        if owns:
            spark.stop()
    for result in results:
        status = "PASS " if result.passed else "ERROR" if result.error else "FAIL "
        print(f"{status} {result.label} ({result.duration_s:.1f} s)")
        if result.error:
            print(f"      {result.error}")
        for line in result.differences:
            print(f"      {line}")
        for note in result.notes:
            print(f"      note: {note}")
    passed = sum(r.passed for r in results)
    errors = sum(r.error is not None for r in results)
    failed = len(results) - passed - errors
    print(f"sparkpipe test: {passed} passed, {failed} failed, {errors} error{'s' if errors != 1 else ''}")
    return 2 if errors else 1 if failed else 0


def run_in_sessions(
    tests: Sequence[PipelineTest], spark: SparkSession, owns: bool
) -> tuple[list[TestResult], SparkSession]:
    """Run the tests; with a session of its own (``owns``), the tests whose configs set static ``spark.sql.*``
    settings (``spark.sql.warehouse.dir``, ``spark.sql.extensions`` ...) run on a session made with them,
    one per distinct set. Returns the results in the tests' order and the session open at the end."""
    if not owns:
        return run_tests(tests, spark), spark
    groups: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for i, test in enumerate(tests):
        groups.setdefault(tuple(sorted(static_settings(test.config, spark).items())), []).append(i)
    results: list[TestResult | None] = [None] * len(tests)
    for static, indexes in sorted(groups.items(), key=lambda group: bool(group[0])):  # the plain session first
        if static:
            spark.stop()
            try:
                spark = local_session(dict(static))
            except Exception as exc:
                keys = ", ".join(key for key, _ in static)
                for i in indexes:
                    why = f"no session could be made with the config's {keys}: {reason(exc)}"
                    results[i] = TestResult(tests[i], False, error=why)
                spark = local_session()
                continue
        for i in indexes:
            results[i] = run_test(tests[i], spark, dict(static))
    return [r for r in results if r is not None], spark
