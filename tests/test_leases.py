"""Leases on path targets: who holds one, when it is stale, and that a lost lease stops the commit."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spark_job.io.filesystems import LocalFiles
from spark_job.io.leases import PathLease, TargetBusy


def lease(target: Path, run: str, monkeypatch: pytest.MonkeyPatch) -> PathLease:
    monkeypatch.setenv("SPARKPIPE_RUN_KEY", run)
    return PathLease(LocalFiles(), f"file:{target}", spark=None)


def marker(target: Path) -> Path:
    return target.with_name(f".{target.name}.sparkpipe-lease")


def write_marker(target: Path, **fields: object) -> None:
    holder = {
        "token": "other",
        "run_id": "elsewhere-7",
        "app_id": "app-1",
        "host": "another-host.example",
        "pid": 1,
        "started_at": "2026-01-01T00:00:00+00:00",
        "expires_at": time.time() + 600,
        **fields,
    }
    marker(target).write_text(json.dumps(holder))


def test_the_second_taker_fails_naming_the_holder_until_it_releases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "t"
    first = lease(target, "run-a", monkeypatch)
    first.acquire()
    held = json.loads(marker(target).read_text())
    assert held["run_id"] == "run-a" and held["host"] == socket.gethostname() and held["expires_at"] > time.time()
    second = lease(target, "run-b", monkeypatch)
    with pytest.raises(TargetBusy, match=r"being written by run 'run-a' .*pid \d+"):
        second.acquire()
    first.release()
    assert not marker(target).exists()
    second.acquire()
    second.verify()
    second.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_live_lease_of_another_host_blocks_and_an_expired_one_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "t"
    write_marker(target)
    with pytest.raises(TargetBusy, match=r"run 'elsewhere-7'.*another-host.example"):
        lease(target, "run-b", monkeypatch).acquire()
    write_marker(target, expires_at=time.time() - 1)
    taker = lease(target, "run-b", monkeypatch)
    taker.acquire()
    assert json.loads(marker(target).read_text())["run_id"] == "run-b"
    taker.release()


def test_a_lease_whose_process_is_gone_on_this_host_is_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "t"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_marker(target, host=socket.gethostname(), pid=gone.pid)
    taker = lease(target, "run-c", monkeypatch)
    taker.acquire()
    assert json.loads(marker(target).read_text())["run_id"] == "run-c"
    taker.release()


def test_a_lease_taken_over_stops_the_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "t"
    mine = lease(target, "run-a", monkeypatch)
    mine.acquire()
    write_marker(target, run_id="intruder")  # e.g. this run stalled past its expiry and another took over
    with pytest.raises(TargetBusy, match=r"now held by run 'intruder'.*the new data was not committed"):
        mine.verify()
    mine.release()
    assert json.loads(marker(target).read_text())["run_id"] == "intruder"  # not ours to delete
