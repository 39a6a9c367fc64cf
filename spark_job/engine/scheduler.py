"""Starting sequences on threads as soon as the sequences they read succeeded, up to a cap at once.

The scheduler knows only names and the graph; what a sequence does, and what a skip or a cancel means
for Spark, belongs to the runner through the callbacks.
"""

from __future__ import annotations

import heapq
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from spark_job.config.graph import SequenceGraph
from spark_job.outcomes import SequenceState

DEFAULT_MAX_PARALLEL = 1
"""Sequences running at once when the session's cores are not known (a Spark Connect session that does
not say): one at a time, never slower than one at a time."""

CORES_PER_SEQUENCE = 4
"""The default ``max_parallel`` is one sequence per this many cores of the session (at least 1, at most
``MAX_DEFAULT_PARALLEL``). Measured on 2 cores (docs/benchmarks.md): a sequence's jobs already keep 2 cores
busy, and running 4 at once cost CPU and wall time (memory pressure, GC, FAIR bookkeeping), so a
machine of fewer than 8 cores runs one sequence at a time by default."""

MAX_DEFAULT_PARALLEL = 4
"""The most sequences the default runs at once, however many cores: each running sequence holds its
shuffle buffers and broadcasts in the driver's memory."""


def default_max_parallel(cores: int | None) -> int:
    """The default ``max_parallel`` of a session with ``cores`` cores (None: unknown)."""
    if not cores or cores < 1:
        return DEFAULT_MAX_PARALLEL
    return max(1, min(MAX_DEFAULT_PARALLEL, cores // CORES_PER_SEQUENCE))


RECANCEL_INTERVAL_S = 0.5
"""How often cancellation is repeated while a cancelled sequence still runs (it may have been
between two Spark jobs when it was first cancelled)."""


@dataclass
class SchedulerCallbacks:
    """What the scheduler calls; every callback but ``execute`` runs on the scheduling thread.

    Attributes:
        execute: runs one sequence on a worker thread and returns its final state.
        blocked: a sequence will not run because ``dependency`` (which it reads) did not succeed.
        finished: a sequence reached a final state (after ``execute`` or ``blocked``).
        cancel: cancel a running sequence's Spark jobs (called again until it ends).
    """

    execute: Callable[[str], SequenceState]
    blocked: Callable[[str, str], None]
    finished: Callable[[str, SequenceState], None]
    cancel: Callable[[str], None]


@dataclass
class SequenceScheduler:
    """Runs the sequences of ``graph`` through ``callbacks``, at most ``max_parallel`` at once.

    With ``max_parallel == 1`` sequences run one after the other in ``graph.order()``.

    Attributes:
        graph: the sequences and what each reads.
        max_parallel: the most sequences running at once (at least 1).
        callbacks: what running, skipping, finishing and cancelling do.
        states: every sequence's state: pending, running, or final (given ones are not run).
        max_concurrency: the most sequences that ran at once.
    """

    graph: SequenceGraph
    max_parallel: int
    callbacks: SchedulerCallbacks
    states: dict[str, SequenceState] = field(default_factory=dict)
    max_concurrency: int = 0
    _stopped: threading.Event = field(default_factory=threading.Event)
    _cancelled: set[str] = field(default_factory=set)
    _running: set[str] = field(default_factory=set)
    # Completions from the worker threads, and the wake-up ``stop`` sends. A SimpleQueue because its
    # ``put`` is re-entrant: a signal handler may call ``stop`` while this thread waits in ``get``.
    _done: queue.SimpleQueue[tuple[str, SequenceState] | None] = field(default_factory=queue.SimpleQueue)
    # Re-entrant: ``stop`` may run in a signal handler on the scheduling thread while it holds the lock.
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def stop(self, cancel_running: bool) -> None:
        """Start nothing more; with ``cancel_running``, cancel what runs now. Safe from a signal handler."""
        self._stopped.set()
        if cancel_running:
            with self._lock:
                running = list(self._running)
            for name in running:
                self._cancelled.add(name)
                self.callbacks.cancel(name)
        # Wake the scheduling thread: it may be waiting without a timeout, and a sequence cancelled
        # before its first Spark job started needs the repeated cancel that only a bounded wait does.
        self._done.put(None)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def is_cancelled(self, name: str) -> bool:
        return name in self._cancelled

    def pending(self) -> list[str]:
        return [n for n in self.graph.order() if self.states.get(n, SequenceState.PENDING) is SequenceState.PENDING]

    def run(self, given: Mapping[str, SequenceState] | None = None) -> None:
        """Run until every sequence is final or, once stopped, until what runs has ended.

        Each completion costs the number of its readers: a graph of many sequences is scheduled in
        time linear in its edges, the ready ones taken in ``graph.order()``.
        """
        order = self.graph.order()
        self._index = {name: i for i, name in enumerate(order)}
        self._readers: dict[str, list[str]] = {name: [] for name in order}
        for name in order:
            self.states.setdefault(name, SequenceState.PENDING)
            for dep in self.graph.depends_on[name]:
                self._readers[dep].append(name)
        self.states.update({name: SequenceState(state) for name, state in (given or {}).items()})
        pending = SequenceState.PENDING
        self._waiting = {
            name: sum(1 for d in self.graph.depends_on[name] if self.states[d] is pending) for name in order
        }
        self._ready = [self._index[n] for n in order if self.states[n] is pending and self._waiting[n] == 0]
        heapq.heapify(self._ready)
        self._order = order
        while True:
            if not self.stopped:
                self._start_ready()
            with self._lock:
                running = len(self._running)
            if running == 0:
                return
            try:
                completion = self._done.get(timeout=RECANCEL_INTERVAL_S if self._cancelled else None)
            except queue.Empty:
                completion = None
            if completion is None:  # a timeout, or stop's wake-up
                self._recancel()
                continue
            name, state = completion
            with self._lock:
                self._running.discard(name)
            self._final(name, state)

    def _final(self, name: str, state: SequenceState) -> None:
        self.states[name] = state
        self.callbacks.finished(name, state)
        for reader in self._readers[name]:
            self._waiting[reader] -= 1
            if self._waiting[reader] == 0 and self.states[reader] is SequenceState.PENDING:
                heapq.heappush(self._ready, self._index[reader])

    def _start_ready(self) -> None:
        while self._ready and not self.stopped:
            with self._lock:
                if len(self._running) >= self.max_parallel:
                    return
            name = self._order[heapq.heappop(self._ready)]
            if self.states[name] is not SequenceState.PENDING:
                continue
            unmet = next((d for d in self.graph.depends_on[name] if not self.states[d].usable), None)
            if unmet is not None:
                self.states[name] = SequenceState.SKIPPED
                self.callbacks.blocked(name, unmet)
                self._final(name, SequenceState.SKIPPED)
                continue
            self.states[name] = SequenceState.RUNNING
            with self._lock:
                self._running.add(name)
                self.max_concurrency = max(self.max_concurrency, len(self._running))
            # Daemon threads: a driver killed outright must not wait for a Spark call to return.
            worker = threading.Thread(target=self._work, args=(name,), name=f"sparkpipe-{name}", daemon=True)
            worker.start()

    def _work(self, name: str) -> None:
        try:
            state = SequenceState(self.callbacks.execute(name))
        except BaseException:  # execute records its own errors; this only keeps the scheduler alive
            state = SequenceState.FAILED
        self._done.put((name, state))

    def _recancel(self) -> None:
        with self._lock:
            still = [n for n in self._running if n in self._cancelled]
        for name in still:
            self.callbacks.cancel(name)


def session_cores(spark: Any) -> int | None:
    """The cores a session's jobs run on (``defaultParallelism``: the executors' cores, or the
    ``spark.default.parallelism`` setting); None when the session does not say (Spark Connect without
    that setting)."""
    try:
        return int(spark.sparkContext.defaultParallelism)
    except Exception:  # Spark Connect has no SparkContext
        try:
            value = spark.conf.get("spark.default.parallelism", None)
        except Exception:
            return None
        return int(value) if value and str(value).strip().isdigit() else None
