"""Sequences in parallel on one local session: overlap, order, fail_fast cancellation, skips, unpersist."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from spark_job.config.validation import SequenceSpec, load_config
from spark_job.engine.metrics import SequenceMetrics
from spark_job.engine.runner import PipelineRunner

from .support import ENDLESS

# A few seconds of CPU on local[2]; the cancelled one would take hours.
BUSY = "SELECT count(*) AS n FROM range(12000) a CROSS JOIN range(12000) b WHERE (a.id + b.id) % 7 = {k}"
DEADLINE_S = 120


def seq(name: str, query: str, out: Path, **extra: Any) -> dict[str, Any]:
    return {"name": name, "query": query, "target": {"type": "parquet", "path": str(out / name)}, **extra}


def run_bounded(runner: PipelineRunner, spark: Any) -> dict[str, Any]:
    """``runner.run()`` on a thread; past the deadline, cancel every job and fail instead of hanging."""
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(runner.run()), daemon=True)
    worker.start()
    worker.join(DEADLINE_S)
    if worker.is_alive():
        spark.sparkContext.cancelAllJobs()
        worker.join(60)
        pytest.fail(f"the run did not end within {DEADLINE_S} s")
    return result


def test_independent_sequences_overlap_each_in_its_own_job_group(spark: Any, tmp_path: Path) -> None:
    config = load_config(
        {
            "app_name": "wide",
            "max_parallel": 3,
            "sequences": [seq(f"s{k}", BUSY.format(k=k), tmp_path) for k in range(3)],
        }
    )
    runner = PipelineRunner(config, spark=spark)
    metrics = run_bounded(runner, spark)
    seqs = metrics["sequences"]
    assert metrics["status"] == "succeeded", metrics
    assert metrics["max_parallel"] == 3 and metrics["max_concurrency"] == 3
    # every pair of sequences ran at the same time: each started before the other ended
    for a in seqs.values():
        for b in seqs.values():
            assert a["started_at"] < b["ended_at"]
    tracker = spark.sparkContext.statusTracker()
    groups = [set(tracker.getJobIdsForGroup(runner.job_tag(f"s{k}"))) for k in range(3)]
    assert all(groups) and not (groups[0] & groups[1]) and not (groups[1] & groups[2])
    for k in range(3):
        expected = spark.sql(BUSY.format(k=k)).first().n
        assert spark.read.parquet(str(tmp_path / f"s{k}")).first().n == expected
        assert seqs[f"s{k}"]["rows_written"] == 1


def test_max_parallel_one_keeps_the_config_order(spark: Any, tmp_path: Path) -> None:
    names = ["c", "a", "d", "b"]
    sequences = [seq(n, f"SELECT '{n}' AS name", tmp_path) for n in names]
    sequences.append(seq("e", "SELECT * FROM a UNION ALL SELECT * FROM b", tmp_path))
    metrics = PipelineRunner(
        load_config({"app_name": "serial", "max_parallel": 1, "sequences": sequences}), spark=spark
    ).run()
    seqs = metrics["sequences"]
    assert metrics["max_concurrency"] == 1
    order = sorted(seqs, key=lambda n: seqs[n]["started_at"])
    assert order == [*names, "e"]
    for before, after in zip(order, order[1:]):
        assert seqs[before]["ended_at"] <= seqs[after]["started_at"]
    assert sorted(r.name for r in spark.read.parquet(str(tmp_path / "e")).collect()) == ["a", "b"]


def test_fail_fast_cancels_a_running_sequence_through_its_job_group(spark: Any, tmp_path: Path) -> None:
    old = tmp_path / "endless"
    spark.range(5).write.parquet(str(old))
    config = load_config(
        {
            "app_name": "ff",
            "fail_fast": True,
            "max_parallel": 2,
            "sequences": [
                seq("endless", ENDLESS, tmp_path),
                # fails on the driver (the test session is FIFO: a job would queue behind 'endless'), maybe
                # before 'endless' submitted its job: the cancellation is repeated until it ends
                seq("broken", "SELECT CAST('boom' AS INT) AS x FROM range(10) WHERE nope > 0", tmp_path),
                seq("later", "SELECT 1 AS x", tmp_path),
            ],
        }
    )
    runner = PipelineRunner(config, spark=spark)
    metrics = run_bounded(runner, spark)
    seqs = metrics["sequences"]
    assert metrics["status"] == "failed"
    assert seqs["broken"]["status"] == "failed" and "nope" in seqs["broken"]["error"]
    assert seqs["endless"]["status"] == "cancelled", seqs["endless"]
    assert "broken failed and fail_fast is set" in seqs["endless"]["error"]
    assert seqs["later"]["status"] == "skipped" and "fail_fast" in seqs["later"]["error"]
    assert not (tmp_path / "later").exists()
    # the cancelled write left the target as it was
    assert sorted(r.id for r in spark.read.parquet(str(old)).collect()) == [0, 1, 2, 3, 4]
    tracker = spark.sparkContext.statusTracker()
    jobs = [tracker.getJobInfo(j) for j in tracker.getJobIdsForGroup(runner.job_tag("endless"))]
    assert jobs and all(j is not None and j.status == "FAILED" for j in jobs)


def test_a_failure_skips_its_readers_while_independent_ones_run(spark: Any, tmp_path: Path) -> None:
    config = load_config(
        {
            "app_name": "skips",
            "max_parallel": 4,
            "sequences": [
                seq("bad", "SELECT CAST(raise_error('bad one') AS STRING) AS x", tmp_path),
                seq("worse", "SELECT CAST(raise_error('worse one') AS STRING) AS x", tmp_path),
                seq("reads_bad", "SELECT * FROM bad", tmp_path),
                seq("reads_reads_bad", "SELECT * FROM reads_bad", tmp_path),
                seq("fine", BUSY.format(k=1), tmp_path),
                seq("reads_fine", "SELECT * FROM fine", tmp_path),
            ],
        }
    )
    seqs = PipelineRunner(config, spark=spark).run()["sequences"]
    # each error stays with the sequence that raised it, though both failed at once
    assert "bad one" in seqs["bad"]["error"] and "worse" not in seqs["bad"]["error"]
    assert "worse one" in seqs["worse"]["error"]
    assert seqs["reads_bad"]["status"] == "skipped"
    assert seqs["reads_bad"]["error"] == "not run: it reads bad, which failed"
    assert seqs["reads_reads_bad"]["error"] == "not run: it reads reads_bad, which was skipped"
    assert seqs["fine"]["status"] == seqs["reads_fine"]["status"] == "succeeded"


class RecordingRunner(PipelineRunner):
    """Records, at each hook, whether the shared result ``a`` is still persisted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[str, str, bool]] = []

    def cached(self) -> bool:
        assert self.spark is not None
        return bool(self.spark.catalog.isCached("a"))

    def before_sequence(self, sequence: SequenceSpec) -> None:
        self.seen.append(("before", sequence.name, self.cached() if sequence.name != "a" else True))

    def after_sequence(self, sequence: SequenceSpec, metrics: SequenceMetrics) -> None:
        self.seen.append(("after", sequence.name, self.cached()))


def test_a_shared_result_is_unpersisted_when_its_last_reader_finished(spark: Any, tmp_path: Path) -> None:
    config = load_config(
        {
            "app_name": "unpersist",
            "max_parallel": 3,
            "sequences": [
                seq("a", "SELECT id, id % 3 AS k FROM range(1000)", tmp_path, cache=True),
                seq("quick", "SELECT count(*) AS n FROM a", tmp_path),
                seq("slow", "SELECT count(*) AS n FROM a CROSS JOIN range(2000000) r WHERE a.id = r.id", tmp_path),
                seq("both", "SELECT quick.n AS q, slow.n AS s FROM quick CROSS JOIN slow", tmp_path),
            ],
        }
    )
    runner = RecordingRunner(config, spark=spark)
    metrics = run_bounded(runner, spark)
    assert metrics["status"] == "succeeded", metrics
    by_event = {(event, name): cached for event, name, cached in runner.seen}
    # both readers find it persisted, the first to finish does not release it, and once both
    # finished (before 'both' starts) it is released
    assert by_event["before", "quick"] and by_event["before", "slow"]
    assert by_event["after", "quick"] and by_event["after", "slow"]
    assert not by_event["before", "both"]
    assert not spark.catalog.isCached("a")
    assert metrics["sequences"]["slow"]["rows_written"] == 1


def test_readers_read_a_columnar_target_back_and_a_text_one_from_memory(spark: Any, tmp_path: Path) -> None:
    config = load_config(
        {
            "app_name": "reuse",
            "sequences": [
                {
                    "name": "a",
                    # the partition column in the middle, of a type partition discovery would not guess
                    "query": "SELECT id, CAST(id % 3 AS STRING) AS k, id * 2 AS v FROM range(30)",
                    "target": {"type": "parquet", "path": str(tmp_path / "a"), "partition_by": ["k"]},
                },
                {
                    "name": "t",
                    "query": "SELECT id FROM range(4)",
                    "target": {"type": "csv", "path": str(tmp_path / "t")},
                },
                {
                    "name": "r",
                    "query": "SELECT a.*, t.id AS tid FROM a JOIN t ON a.id = t.id",
                    "target": {"type": "parquet", "path": str(tmp_path / "r")},
                },
            ],
        }
    )
    runner = ReuseRunner(config, spark=spark)
    metrics = runner.run()
    assert metrics["status"] == "succeeded", metrics
    # 'a' is read back from its parquet files (no memory kept), 't' from memory (csv loses types)
    assert runner.at_r == {"a": False, "t": True}
    assert runner.plan_of_a_reads_files
    rows = spark.read.parquet(str(tmp_path / "r"))
    assert rows.columns == ["id", "k", "v", "tid"]
    assert sorted((r.id, r.k, r.v) for r in rows.collect()) == [(0, "0", 0), (1, "1", 2), (2, "2", 4), (3, "0", 6)]


class ReuseRunner(PipelineRunner):
    at_r: dict[str, bool]
    plan_of_a_reads_files = False

    def before_sequence(self, sequence: SequenceSpec) -> None:
        if sequence.name == "r":
            assert self.spark is not None
            self.at_r = {n: bool(self.spark.catalog.isCached(n)) for n in ("a", "t")}
            files = self.spark.table("a").inputFiles()
            self.plan_of_a_reads_files = bool(files) and all("/a/k=" in f for f in files)


def test_a_stop_from_a_signal_handler_cancels_a_sequence_whose_job_had_not_started_yet() -> None:
    """The signal arrives while the scheduling thread waits for a completion, just after a sequence
    started but before its Spark job did: the first cancel finds nothing to cancel, so the scheduler
    must wake up and cancel again until the sequence ends (here: on the second cancel)."""
    import linecache
    import os
    import signal
    import sys
    import time

    from spark_job.config.graph import SequenceGraph
    from spark_job.engine.scheduler import SchedulerCallbacks, SequenceScheduler

    started, cancels, ended = threading.Event(), [], threading.Event()

    def execute(name: str) -> str:
        started.set()
        # Ends on the second cancel; a bound (not a timing) keeps a broken scheduler from hanging the suite.
        return "cancelled" if ended.wait(DEADLINE_S) else "never cancelled"

    def cancel(name: str) -> None:
        cancels.append(name)
        if len(cancels) >= 2:
            ended.set()

    scheduler = SequenceScheduler(
        graph=SequenceGraph(["only"], {}),
        max_parallel=1,
        callbacks=SchedulerCallbacks(
            execute=execute, blocked=lambda n, d: None, finished=lambda n, s: None, cancel=cancel
        ),
    )

    main = threading.get_ident()

    def waiting_for_a_completion() -> bool:
        frame = sys._current_frames().get(main)
        while frame is not None:
            if frame.f_code.co_name == "run" and "get(" in linecache.getline(frame.f_code.co_filename, frame.f_lineno):
                return True
            frame = frame.f_back
        return False

    def send_signal() -> None:
        started.wait(DEADLINE_S)
        while not waiting_for_a_completion():
            time.sleep(0.01)
        time.sleep(0.05)  # inside the wait, not on its way there
        os.kill(os.getpid(), signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: scheduler.stop(cancel_running=True))
    try:
        threading.Thread(target=send_signal, daemon=True).start()
        scheduler.run()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert scheduler.states == {"only": "cancelled"}
    assert len(cancels) >= 2
