"""Leases on path targets: who holds one, when it is stale, and that a lost lease stops the commit."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


# The lease table, through the JVM's JDBC driver against the PostgreSQL server: any database with a
# primary key behaves the same (nothing here is PostgreSQL's own).


def table_lease(spark: Any, postgres: Any, run: str, monkeypatch: pytest.MonkeyPatch, ttl_s: float = 120) -> Any:
    from spark_job.io.leases import TableLease
    from spark_job.io.swap import JdbcSwap

    monkeypatch.setenv("SPARKPIPE_RUN_KEY", run)
    options = {
        "url": postgres.jdbc_url,
        "dbtable": "public.leased",
        "user": postgres.user,
        "password": postgres.password,
    }
    return TableLease(JdbcSwap(spark, options).connect(), "jdbc:postgresql://db/leased", "public.leased", spark, ttl_s)


def lease_rows(postgres: Any) -> list[tuple[str, dict]]:
    with postgres.connect() as conn:
        return [(key, json.loads(holder)) for key, holder in conn.execute("SELECT * FROM public.sparkpipe_leases")]


def test_a_lease_row_is_taken_once_named_to_the_second_taker_and_gone_after_release(
    spark: Any, postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS public.sparkpipe_leases")
    first = table_lease(spark, postgres, "run-a", monkeypatch)
    first.acquire()  # creates the table
    [(key, held)] = lease_rows(postgres)
    assert len(key) == 40 and held["run_id"] == "run-a" and held["expires_at"] > time.time()
    second = table_lease(spark, postgres, "run-b", monkeypatch)
    with pytest.raises(TargetBusy, match=r"public.leased is being written by run 'run-a' .*pid \d+"):
        second.acquire()
    first.verify()
    first.release()
    assert lease_rows(postgres) == []
    second = table_lease(spark, postgres, "run-b", monkeypatch)
    second.acquire()
    second.verify()
    second.release()
    assert lease_rows(postgres) == []


def test_an_expired_lease_row_is_taken_over_and_its_holder_cannot_commit(
    spark: Any, postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS public.sparkpipe_leases")
    gone = table_lease(spark, postgres, "run-a", monkeypatch, ttl_s=600)
    gone.acquire()
    gone._stop.set()  # its refresher stops, as when the driver hangs
    with postgres.connect() as conn:  # another host's holder, expired a minute ago
        [(_, held)] = lease_rows(postgres)
        held.update(host="another-host.example", expires_at=time.time() - 60)
        conn.execute("UPDATE public.sparkpipe_leases SET holder = %s", (json.dumps(held),))
    taker = table_lease(spark, postgres, "run-b", monkeypatch)
    taker.acquire()
    assert [held["run_id"] for _, held in lease_rows(postgres)] == ["run-b"]
    with pytest.raises(TargetBusy, match=r"lost the lease of public.leased while writing \(now held by run 'run-b'"):
        gone.verify()
    gone.release()  # deletes nothing that is not its own
    assert [held["run_id"] for _, held in lease_rows(postgres)] == ["run-b"]
    taker.release()
    assert lease_rows(postgres) == []


def test_a_lease_table_that_cannot_be_created_says_what_to_do(
    spark: Any, postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spark_job.io.leases import TableLease
    from spark_job.io.swap import JdbcSwap

    monkeypatch.setenv("SPARKPIPE_RUN_KEY", "run-a")
    options = {
        "url": postgres.jdbc_url,
        "dbtable": "nosuchschema.t",
        "user": postgres.user,
        "password": postgres.password,
    }
    lease = TableLease(JdbcSwap(spark, options).connect(), "k", "nosuchschema.t", spark)
    with pytest.raises(
        TargetBusy, match=r"could not create the lease table nosuchschema.sparkpipe_leases \(.*nosuchschema"
    ):
        lease.acquire()
    lease.release()
