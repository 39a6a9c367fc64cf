"""Staging, one layout for every runtime (``staging.py``), on the local file system's store: the bundle
once per driver version, a run's private config (and its archive), metrics read back or refused, and
what a finished run leaves. The S3 and GCS stores are followed by the EMR and Dataproc tests."""

from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_sparkpipe.exceptions import SparkPipelineConfigError
from airflow_provider_sparkpipe.operators.spark_pipeline import _resume_key, flag_of
from airflow_provider_sparkpipe.runs import PipelineSubmission, resume_key
from airflow_provider_sparkpipe.staging import LocalStore, Staging, config_archive

DOCUMENT = {"app_name": "daily", "sequences": [{"name": "a", "query": "SELECT 1", "target": {"type": "parquet"}}]}


def test_a_run_is_staged_in_the_common_layout(tmp_path: Path) -> None:
    staging = Staging(LocalStore(), str(tmp_path / "work") + "/")
    staged = staging.stage("dag__task__run__-1__try1", DOCUMENT, archive=True)
    run = tmp_path / "work" / "runs" / "dag__task__run__-1__try1"
    assert staged.run_uri == str(run)
    assert (staged.config_uri, staged.metrics_uri) == (str(run / "config.json"), str(run / "metrics.json"))
    assert json.loads((run / "config.json").read_text()) == DOCUMENT
    assert (run / "config.json").stat().st_mode & 0o777 == 0o600  # only its owner reads a config
    with zipfile.ZipFile(io.BytesIO(Path(str(staged.config_archive_uri)).read_bytes())) as archive:
        assert json.loads(archive.read("config.json")) == DOCUMENT
    bundle = Path(staged.bundle.main_uri).parent
    assert bundle == tmp_path / "work" / "bundles" / staged.bundle.digest
    assert Path(staged.bundle.py_files_uri).parent == bundle


def test_the_bundle_is_staged_once_per_driver_version(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    staging = Staging(LocalStore(), str(tmp_path), logging.getLogger("sparkpipe.test"))
    first = staging.stage_bundle()
    written = Path(first.py_files_uri).stat().st_mtime_ns
    with caplog.at_level(logging.INFO, "sparkpipe.test"):
        assert staging.stage_bundle() == first
    assert Path(first.py_files_uri).stat().st_mtime_ns == written
    assert "already staged" in caplog.text


def test_a_run_staged_again_never_reads_the_metrics_an_earlier_one_left(tmp_path: Path) -> None:
    staging = Staging(LocalStore(), str(tmp_path))
    staged = staging.stage("run-1", DOCUMENT)
    Path(staged.metrics_uri).write_text('{"status": "succeeded"}')
    assert staging.read_metrics(staged.metrics_uri) == {"status": "succeeded"}
    staging.stage("run-1", DOCUMENT)
    assert staging.read_metrics(staged.metrics_uri) is None


@pytest.mark.parametrize("written", ["{not json", "[1, 2]", '"text"'])
def test_metrics_that_are_not_a_document_are_refused_and_said(
    tmp_path: Path, written: str, caplog: pytest.LogCaptureFixture
) -> None:
    staging = Staging(LocalStore(), str(tmp_path), logging.getLogger("sparkpipe.test"))
    metrics = tmp_path / "metrics.json"
    metrics.write_text(written)
    with caplog.at_level(logging.WARNING, "sparkpipe.test"):
        assert staging.read_metrics(str(metrics)) is None
    assert f"Cannot read {metrics}" in caplog.text


def test_a_finished_runs_config_is_discarded_and_its_metrics_stay(tmp_path: Path) -> None:
    staging = Staging(LocalStore(), f"file://{tmp_path}")
    staged = staging.stage("run-2", DOCUMENT, archive=True)
    Path(staged.metrics_uri.removeprefix("file://")).write_text("{}")
    staging.discard_config(staged.run_uri)
    assert sorted(p.name for p in (tmp_path / "runs" / "run-2").iterdir()) == ["metrics.json"]


def test_the_config_archive_is_the_same_for_the_same_config() -> None:
    config = json.dumps(DOCUMENT).encode()
    assert config_archive(config) == config_archive(config)
    assert config_archive(config) != config_archive(config + b"\n")


# The commit log a retry resumes from (``--run-key`` / ``--state-dir``). ------------------------------

SAFE_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def test_a_tasks_commit_log_is_beside_its_tries_and_outlives_them(tmp_path: Path) -> None:
    staging = Staging(LocalStore(), f"{tmp_path}/")
    state = staging.state_uri("dag__task__run__-1")
    assert state == str(tmp_path / "runs" / "dag__task__run__-1" / "commits")
    record = Path(state) / "sparkpipe-commits-0123" / "1-a.json"
    record.parent.mkdir(parents=True)
    record.write_text("{}")
    # The EMR layout (runs/<task key>/<n>): a try staged, finished, and the next one staged.
    first = staging.stage("dag__task__run__-1/1", DOCUMENT, archive=True)
    staging.discard_config(first.run_uri)
    staging.stage("dag__task__run__-1/2", DOCUMENT, archive=True)
    assert record.read_text() == "{}"
    assert sorted(p.name for p in (tmp_path / "runs" / "dag__task__run__-1").iterdir()) == ["1", "2", "commits"]


def test_run_keys_are_one_per_task_instance_safe_file_names_and_hide_nothing_secret() -> None:
    key = resume_key("orders.daily", "load", "scheduled__2024-01-15T00:00:00+00:00", -1)
    assert key == resume_key("orders.daily", "load", "scheduled__2024-01-15T00:00:00+00:00", -1)
    assert key.startswith("orders.daily.load-") and SAFE_FILE_NAME.match(key), key
    others = {
        resume_key("orders.daily", "load", "scheduled__2024-01-15T00:00:00_00:00", -1),  # ids only their sanitising
        resume_key("orders.daily", "load", "scheduled__2024-01-15T00:00:00+00:00", 0),  # would make alike
        resume_key("orders.daily", "load", "scheduled__2024-01-15T00:00:00+00:00", -1, clear=3),
        resume_key("orders.daily", "load2", "scheduled__2024-01-15T00:00:00+00:00", -1),
        resume_key("orders", "daily.load", "scheduled__2024-01-15T00:00:00+00:00", -1),
    }
    assert key not in others and len(others) == 5
    # Long or odd ids: the readable part is cut and cleaned, never leading with "-" (an option to argparse).
    long_key = resume_key("-" + "d" * 300, "t/../x y", "manual__" + "r" * 300, 7)
    assert SAFE_FILE_NAME.match(long_key) and len(long_key) <= 101, long_key
    assert "rrr" not in long_key and "/" not in long_key
    assert SAFE_FILE_NAME.match(resume_key("---", "...", "r", -1))


def test_the_driver_gets_a_run_key_only_with_a_place_for_its_commit_log() -> None:
    with_key = PipelineSubmission(DOCUMENT, "daily", "dag__task__run__-1", resume_key="dag.task-0123")
    assert with_key.resume_arguments("s3://stage/runs/k/commits") == [
        *("--run-key", "dag.task-0123"),
        *("--state-dir", "s3://stage/runs/k/commits"),
    ]
    assert with_key.resume_arguments(None) == []
    assert PipelineSubmission(DOCUMENT, "daily", "dag__task__run__-1").resume_arguments("/state") == []


def test_the_operators_run_key_is_the_same_for_every_try_and_new_once_the_task_is_cleared() -> None:
    def context(try_number: int, max_tries: int) -> Any:
        task = SimpleNamespace(retries=2)
        ti = SimpleNamespace(
            dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=try_number, max_tries=max_tries, task=task
        )
        return {"ti": ti}

    tries = {_resume_key(context(n, 2)) for n in (1, 2, 3)}
    assert len(tries) == 1
    # Cleared after its third try: Airflow sets max_tries to 3 + retries, and the fourth try starts anew.
    cleared = {_resume_key(context(n, 5)) for n in (4, 5, 6)}
    assert len(cleared) == 1 and cleared != tries


def test_the_operators_resume_is_a_boolean_or_its_text() -> None:
    assert flag_of("False", "resume", "t") is False and flag_of(" yes ", "resume", "t") is True
    assert flag_of(True, "resume", "t") is True
    with pytest.raises(SparkPipelineConfigError, match=r"^t: resume is 'sometimes': give true or false$"):
        flag_of("sometimes", "resume", "t")
