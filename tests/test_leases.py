"""Leases on path targets: who holds one, when it is stale, that a lost lease stops the commit, and that
the claims protocol lets at most one of many simultaneous takers hold a target, on the local disk, on
Hadoop's local filesystem and on an S3 API (the real boto3 client against moto's server on loopback:
put, get, list and delete only, no create-if-absent and no rename)."""

from __future__ import annotations

import itertools
import json
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spark_job.io.filesystems import Files, HadoopFiles, LocalFiles
from spark_job.io.leases import ClaimMarker, Lease, PathLease, TargetBusy


def lease(target: Path, run: str, monkeypatch: pytest.MonkeyPatch) -> PathLease:
    monkeypatch.setenv("SPARKPIPE_RUN_KEY", run)
    return PathLease(LocalFiles(), f"file:{target}", spark=None)


def claims(target: Path) -> list[dict[str, Any]]:
    """The claim files beside the target, read back."""
    return [json.loads(p.read_text()) for p in sorted(target.parent.glob(f".{target.name}.sparkpipe-lease.*.claim"))]


def holder_of(target: Path) -> str:
    [held] = [c for c in claims(target) if c["holds"]]
    return str(held["run_id"])


def write_claim(target: Path, holds: bool = True, **fields: object) -> Path:
    holder = {
        "token": "other",
        "run_id": "elsewhere-7",
        "app_id": "app-1",
        "host": "another-host.example",
        "pid": 1,
        "started_at": "2026-01-01T00:00:00+00:00",
        "expires_at": time.time() + 600,
        "holds": holds,
        **fields,
    }
    path = target.with_name(f".{target.name}.sparkpipe-lease.{holder['token']}.1.claim")
    path.write_text(json.dumps(holder))
    return path


def test_the_second_taker_fails_naming_the_holder_until_it_releases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "t"
    first = lease(target, "run-a", monkeypatch)
    first.acquire()
    [held] = claims(target)
    assert held["run_id"] == "run-a" and held["host"] == socket.gethostname() and held["expires_at"] > time.time()
    assert held["holds"] is True
    second = lease(target, "run-b", monkeypatch)
    with pytest.raises(TargetBusy, match=r"being written by run 'run-a' .*pid \d+"):
        second.acquire()
    assert [c["run_id"] for c in claims(target)] == ["run-a"]  # the loser withdrew its claim
    first.release()
    assert claims(target) == []
    second.acquire()
    second.verify()
    second.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_refresh_puts_a_new_claim_before_deleting_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim is never rewritten in place (Hadoop's local filesystem and HDFS show a file being
    rewritten empty or half written): a reader always finds one whole claim of the holder."""
    target = tmp_path / "t"
    held = lease(target, "run-a", monkeypatch)
    held.acquire()
    seen: list[list[str]] = []
    files = held.marker.files
    real_delete = files.delete

    def delete(uri: str) -> None:  # what a reader sees at the moment the previous claim goes
        seen.append(sorted(p.name for p in tmp_path.glob(".t.sparkpipe-lease.*.claim")))
        real_delete(uri)

    files.delete = delete  # type: ignore[method-assign]
    before = claims(target)
    held.marker.replace(held._text())
    after = claims(target)
    assert len(seen[0]) == 2 and len(after) == 1 and after[0]["expires_at"] >= before[0]["expires_at"]
    held.verify()
    held.release()
    assert claims(target) == []


def test_a_live_lease_of_another_host_blocks_and_an_expired_one_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "t"
    write_claim(target)
    with pytest.raises(TargetBusy, match=r"run 'elsewhere-7'.*another-host.example"):
        lease(target, "run-b", monkeypatch).acquire()
    write_claim(target, expires_at=time.time() - 1)
    taker = lease(target, "run-b", monkeypatch)
    taker.acquire()
    assert holder_of(target) == "run-b" and len(claims(target)) == 1  # the stale claim was deleted
    taker.release()


def test_a_marker_file_of_an_earlier_version_still_holds_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of the previous release (one ``.<name>.sparkpipe-lease`` file) may still be writing during
    an upgrade: it blocks while live and is deleted once stale."""
    target = tmp_path / "t"
    old = target.with_name(".t.sparkpipe-lease")
    old.write_text(json.dumps({**json.loads(write_claim(target).read_text()), "run_id": "old-release"}))
    for claim in tmp_path.glob("*.claim"):
        claim.unlink()
    with pytest.raises(TargetBusy, match=r"run 'old-release'"):
        lease(target, "run-b", monkeypatch).acquire()
    assert claims(target) == []
    old.write_text(json.dumps({**json.loads(old.read_text()), "expires_at": time.time() - 1}))
    taker = lease(target, "run-b", monkeypatch)
    taker.acquire()
    assert not old.exists() and holder_of(target) == "run-b"
    taker.release()


def test_a_lease_whose_process_is_gone_on_this_host_is_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "t"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_claim(target, host=socket.gethostname(), pid=gone.pid)
    taker = lease(target, "run-c", monkeypatch)
    taker.acquire()
    assert holder_of(target) == "run-c"
    taker.release()


def test_a_lease_taken_over_stops_the_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "t"
    mine = lease(target, "run-a", monkeypatch)
    mine.acquire()
    write_claim(target, run_id="intruder")  # e.g. this run stalled past its expiry and another took over
    with pytest.raises(TargetBusy, match=r"now held by run 'intruder'.*the new data was not committed"):
        mine.verify()
    mine.release()
    assert [c["run_id"] for c in claims(target)] == ["intruder"]  # not ours to delete


def test_a_lease_past_its_own_expiry_is_lost_even_if_nobody_took_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that stalled past its expiry cannot know whether another took the target in between."""
    target = tmp_path / "t"
    monkeypatch.setenv("SPARKPIPE_RUN_KEY", "run-a")
    stalled = PathLease(LocalFiles(), f"file:{target}", spark=None, ttl_s=0.2)
    stalled.acquire()
    stalled._stop.set()  # its refresher stops, as when the driver hangs
    time.sleep(0.3)
    with pytest.raises(TargetBusy, match=r"lost the lease .*now held by nobody"):
        stalled.verify()
    stalled.release()
    assert claims(target) == []


def test_a_taker_that_meets_only_bids_tries_again_and_a_taker_that_meets_a_holder_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import random

    pauses: list[float] = []
    uniform = random.uniform

    def pause(a: float, b: float) -> float:  # the bidder withdraws meanwhile, as a loser of a race does
        bid.unlink(missing_ok=True)
        pauses.append(uniform(a, b))
        return pauses[-1]

    monkeypatch.setattr(random, "uniform", pause)
    target = tmp_path / "t"
    bid = write_claim(target, holds=False, run_id="bidder")
    taker = lease(target, "run-a", monkeypatch)
    taker.acquire()
    assert holder_of(target) == "run-a" and len(pauses) >= 1  # it paused and tried again
    taker.release()
    write_claim(target, holds=True, run_id="holder")
    pauses.clear()
    with pytest.raises(TargetBusy, match=r"run 'holder'"):
        lease(target, "run-b", monkeypatch).acquire()
    assert pauses == []  # no pause before giving up: it failed on the first sight of a holder
    assert [c["run_id"] for c in claims(target)] == ["holder"]


def test_a_claim_file_that_never_reads_whole_stops_takers_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A taker killed while writing its claim can leave it half written: it is not taken for nothing
    (it might be a claim being written), so later takers stop and name the file to delete."""
    target = tmp_path / "t"
    torn = write_claim(target)
    torn.write_text(torn.read_text()[:40])
    unreadable = re.escape(f"the lease claim file:{torn} cannot be read: delete it if no run is writing")
    with pytest.raises(TargetBusy, match=unreadable):
        lease(target, "run-a", monkeypatch).acquire()
    assert [p.name for p in tmp_path.iterdir()] == [torn.name]
    torn.unlink()
    taker = lease(target, "run-a", monkeypatch)
    taker.acquire()
    torn.write_text("{")  # appears while this run writes: it cannot tell, so it does not commit
    with pytest.raises(TargetBusy, match=r"cannot be read: .*; the new data was not committed"):
        taker.verify()
    taker.release()
    assert [p.name for p in tmp_path.iterdir()] == [torn.name]


def two_takers(files: Files, target: str) -> tuple[ClaimMarker, ClaimMarker, Callable[[ClaimMarker], str]]:
    a, b = (ClaimMarker(files, target, token) for token in ("a" * 32, "b" * 32))

    def text(marker: ClaimMarker) -> str:
        return json.dumps(
            {
                "token": marker.token,
                "run_id": marker.token[0],
                "app_id": "x",
                "host": "h.example",
                "pid": 1,
                "started_at": "2026-01-01T00:00:00+00:00",
                "expires_at": time.time() + 600,
            }
        )

    return a, b, text


def test_in_every_order_of_two_takers_steps_at_most_one_holds(tmp_path: Path) -> None:
    """The protocol's steps are a whole put then a listing: whichever order two takers' steps come
    in, at most one lists no claim but its own; when one taker finished before the other began, the
    first holds."""
    steps = [("a", "put"), ("a", "list"), ("b", "put"), ("b", "list")]
    orders = [o for o in itertools.permutations(steps) if o.index(("a", "put")) < o.index(("a", "list"))]
    orders = [o for o in orders if o.index(("b", "put")) < o.index(("b", "list"))]
    assert len(orders) == 6
    for n, order in enumerate(orders):
        a, b, text = two_takers(LocalFiles(), f"file:{tmp_path}/t{n}")
        markers = {"a": a, "b": b}
        alone: dict[str, bool] = {}
        for who, step in order:
            marker = markers[who]
            if step == "put":
                marker._put(text(marker), holds=False)
            else:
                alone[who] = not [c for c in marker.claims() if c.holder.token != marker.token]
        assert sum(alone.values()) <= 1, order
        if order[1] == ("a", "list"):
            assert alone == {"a": True, "b": False}, order


class S3Files:
    """The operations a lease uses, on an S3 bucket through boto3: an object appears whole when its PUT
    ends; there is no create-if-absent and no rename (``rename`` refuses, to prove it is not used)."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client, self.bucket = client, bucket

    def key(self, uri: str) -> str:
        return uri.removeprefix(f"s3a://{self.bucket}/")

    def exists(self, uri: str) -> bool:
        return bool(self.list_names(uri.rpartition("/")[0]).count(uri.rpartition("/")[2]))

    def delete(self, uri: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(uri))

    def rename(self, src: str, dst: str) -> bool:
        raise AssertionError("S3 has no rename")

    def mkdirs(self, uri: str) -> None:
        pass

    def replace_text(self, uri: str, text: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.key(uri), Body=text.encode())

    def read_text(self, uri: str) -> str | None:
        try:
            return str(self.client.get_object(Bucket=self.bucket, Key=self.key(uri))["Body"].read().decode())
        except self.client.exceptions.NoSuchKey:
            return None

    def list_names(self, uri: str) -> list[str]:
        prefix = self.key(uri).rstrip("/") + "/"
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/")
        return sorted(o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", []))


@pytest.fixture(scope="module")
def s3() -> Iterator[Callable[[], S3Files]]:
    """A new bucket per call on one moto server on loopback, each taker with a boto3 client of its own."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()

    def client() -> Any:
        return boto3.client(
            "s3",
            endpoint_url=f"http://{host}:{port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def files() -> S3Files:
        bucket = f"lake-{uuid.uuid4().hex[:12]}"
        client().create_bucket(Bucket=bucket)
        return S3Files(client(), bucket)

    try:
        yield files
    finally:
        server.stop()


def race(new_lease: Callable[[int], Lease], takers: int, rounds: int) -> list[int]:
    """``takers`` threads start ``rounds`` times at once to take one target; each holder stays a moment.
    Returns how many took it per round (one after another: a loser's retry may come after the holder
    released); fails if two ever held it at the same time."""
    barrier = threading.Barrier(takers)
    holding: list[int] = []
    guard = threading.Lock()
    wins = [0] * rounds
    errors: list[BaseException] = []

    def taker(n: int) -> None:
        try:
            for r in range(rounds):
                mine = new_lease(n)
                barrier.wait()
                try:
                    mine.acquire()
                except TargetBusy:
                    barrier.wait()
                    continue
                with guard:
                    holding.append(n)
                    assert len(holding) == 1, f"round {r}: {holding} hold the target together"
                    wins[r] += 1
                mine.verify()
                time.sleep(0.05)
                with guard:
                    holding.remove(n)
                mine.release()
                barrier.wait()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=taker, args=(n,)) for n in range(takers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    return wins


@pytest.mark.parametrize("where", ["local disk", "Hadoop file:", "S3"])
def test_many_takers_at_once_one_holds_at_a_time(
    where: str, tmp_path: Path, spark: Any, s3: Callable[[], S3Files], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPARKPIPE_RUN_KEY", "racer")
    if where == "S3":
        bucket = s3()
        target = f"s3a://{bucket.bucket}/lake/t"

        def new_lease(n: int) -> Lease:
            return PathLease(S3Files(s3().client, bucket.bucket), target, spark=None)
    else:
        target = f"file:{tmp_path}/t"
        files: Files = LocalFiles() if where == "local disk" else HadoopFiles(spark, target)

        def new_lease(n: int) -> Lease:
            return PathLease(files, target, spark=None)

    wins = race(new_lease, takers=4, rounds=12)
    assert all(w >= 1 for w in wins), wins  # simultaneous bidders back off and one of them wins
    leftovers = (
        bucket.list_names(f"s3a://{bucket.bucket}/lake")
        if where == "S3"
        else [p.name for p in tmp_path.iterdir() if not p.name.endswith(".crc")]
    )
    assert leftovers == []


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
    second.release()  # closes its connection, as the writer does after a failed acquire
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


@pytest.mark.parametrize("lease_kind", ["advisory", "table"])
@pytest.mark.parametrize("target_settings", [{"atomic": False}, {"mode": "error"}], ids=["atomic false", "mode error"])
def test_a_jdbc_write_without_staging_holds_the_lease_too(
    spark: Any, postgres: Any, monkeypatch: pytest.MonkeyPatch, lease_kind: str, target_settings: dict[str, Any]
) -> None:
    """Spark writes the table itself (no staging table), but one run at a time: the lease is held
    from stage to the end of the write, as for a staged write."""
    from spark_job.io import writers

    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS public.direct_t")
        conn.execute("DROP TABLE IF EXISTS public.sparkpipe_leases")
    spec = {
        "type": "jdbc",
        "url": postgres.jdbc_url,
        "table": "public.direct_t",
        "user": postgres.user,
        "password": postgres.password,
        "lease": lease_kind,
        **target_settings,
    }
    writer_class = writers.get("jdbc")
    assert writer_class is not None
    monkeypatch.setenv("SPARKPIPE_RUN_KEY", "run-a")
    first = writer_class(dict(spec)).begin_write(spark.range(3))
    monkeypatch.setenv("SPARKPIPE_RUN_KEY", "run-b")
    with pytest.raises(TargetBusy, match=r"public.direct_t is being written by .*run-a"):
        writer_class(dict(spec)).begin_write(spark.range(5))
    first.commit()
    with postgres.connect() as conn:
        assert conn.execute("SELECT count(*) FROM public.direct_t").fetchone() == (3,)
        if lease_kind == "table":
            assert conn.execute("SELECT count(*) FROM public.sparkpipe_leases").fetchone() == (0,)
        conn.execute("DROP TABLE public.direct_t")
    second = writer_class(dict(spec)).begin_write(spark.range(5))  # free again
    second.commit()
    with postgres.connect() as conn:
        assert conn.execute("SELECT count(*) FROM public.direct_t").fetchone() == (5,)
