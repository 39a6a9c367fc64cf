"""Staging, one layout for every runtime (``staging.py``), on the local file system's store: the bundle
once per driver version, a run's private config (and its archive), metrics read back or refused, and
what a finished run leaves. The S3 and GCS stores are followed by the EMR and Dataproc tests."""

from __future__ import annotations

import io
import json
import logging
import zipfile
from pathlib import Path

import pytest

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
