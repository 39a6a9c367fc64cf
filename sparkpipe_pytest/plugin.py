"""pytest collects sparkpipe test files: each test of a file is one pytest item, run on one local SparkSession.

Registered through the ``pytest11`` entry point. A YAML file named like a test file but without the
``config`` and ``tests`` keys of a sparkpipe test file is left to other plugins.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from spark_job.errors import ConfigError
from spark_job.pipeline_tests import PipelineTest, is_test_file_name, load_test_file, local_session, run_test

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_SESSION_KEY = pytest.StashKey["SparkSession"]()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if is_test_file_name(file_path.name) and _looks_like_a_test_file(file_path):
        return SparkpipeTestFile.from_parent(parent, path=file_path)
    return None


def pytest_unconfigure(config: pytest.Config) -> None:
    spark = config.stash.get(_SESSION_KEY, None)
    if spark is not None:
        spark.stop()


def _looks_like_a_test_file(path: Path) -> bool:
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:65536]
    except OSError:
        return False
    keys = {line.split(":", 1)[0].strip() for line in head.splitlines() if line[:1].isalpha()}
    return {"config", "tests"} <= keys


class SparkpipeTestFile(pytest.File):
    """One sparkpipe test file."""

    def collect(self) -> Iterator[pytest.Item]:
        try:
            tests = load_test_file(self.path)
        except ConfigError as exc:
            raise SparkpipeTestFileError(str(exc)) from None
        for test in tests:
            yield SparkpipeTestItem.from_parent(self, name=test.name, test=test)


class SparkpipeTestFileError(Exception):
    """A test file (or the config it names) with problems; the message lists them with file and line."""


class SparkpipeTestFailed(Exception):
    """A test whose results differ from what it expects."""


class SparkpipeTestItem(pytest.Item):
    """One test of a sparkpipe test file."""

    def __init__(self, *, test: PipelineTest, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.test = test

    def runtest(self) -> None:
        result = run_test(self.test, _session(self.config))
        if not result.passed:
            raise SparkpipeTestFailed(result.error or "\n".join(result.differences))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, SparkpipeTestFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"sparkpipe test: {self.name}"


def _session(config: pytest.Config) -> SparkSession:
    spark = config.stash.get(_SESSION_KEY, None)
    if spark is None:
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        spark = active if active is not None else local_session()
        if active is None:
            config.stash[_SESSION_KEY] = spark
    return spark
