"""A driver that ends when told to: termination bounded in time on every session kind.

A Spark Connect client retries an unanswered call for about ten minutes (its default retry policy),
when creating the session, cancelling jobs, releasing the session, and in the cleanup it registers
with ``atexit``. A terminated driver, or one whose server stopped answering, must not wait for that:

- a signal received while a Connect session is being created interrupts the creation
  (``SessionCreationInterrupted``, raised from the signal handler into the waiting call), and the
  metrics say the run was terminated;
- the cancelling of running sequences happens on a thread of its own, never in the signal handler;
- a watchdog started by the first signal writes the metrics (if the run did not yet) and ends the
  process ``TERMINATION_GRACE_S`` seconds later if it is still alive;
- the session is closed within ``CLOSE_WAIT_S``, and a Connect driver then ends with ``os._exit``
  (output flushed), skipping the client's ``atexit`` retries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spark_job.engine.runner import BasePipeline

log = logging.getLogger("sparkpipe")

TERMINATION_GRACE_S = 20.0
"""How long a terminated driver may take to cancel, write its metrics and stop its session."""
CLOSE_WAIT_S = 10.0
"""How long stopping the session may take before the driver ends without it."""


class SessionCreationInterrupted(BaseException):
    """A termination signal arrived while the Spark Connect session was being created. A
    ``BaseException``, like ``KeyboardInterrupt``: pyspark 3.5's builder turns every ``Exception`` of a
    setting into a warning and goes on with the next, each waiting for the server again."""


def connect_run(runner: BasePipeline) -> bool:
    """Whether the run uses (or will use) a Spark Connect session."""
    from spark_job.engine.capabilities import is_connect

    if runner.spark is not None:
        return is_connect(runner.spark)
    return bool(runner.remote or os.environ.get("SPARK_REMOTE"))


def run_bounded(target: object, seconds: float, name: str) -> bool:
    """Call ``target`` on a daemon thread; whether it returned within ``seconds``."""
    worker = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
    worker.start()
    worker.join(seconds)
    return not worker.is_alive()


def exit_now(code: int) -> None:
    """End the process at once with ``code``, after flushing what it printed and logged."""
    for flushable in [*logging.getLogger("sparkpipe").handlers, sys.stdout, sys.stderr]:
        with contextlib.suppress(Exception):  # a closed stream: nothing left to flush
            flushable.flush()
    os._exit(code)


class Termination:
    """What a termination signal does to ``runner``: cancel without blocking the signal handler, and a
    watchdog ending the process if the run has not ended ``grace`` seconds later.

    Args:
        runner: the pipeline being run.
        grace: the seconds the run has to end after the first signal.
    """

    def __init__(self, runner: BasePipeline, grace: float = TERMINATION_GRACE_S) -> None:
        self.runner = runner
        self.grace = grace
        self.ended = threading.Event()
        """Set by the main thread once the run returned and its metrics were written."""

    def on_signal(self, signal_name: str, code: int) -> None:
        """The first signal, in the signal handler on the main thread."""
        runner = self.runner
        watchdog = threading.Thread(target=self.watch, args=(code,), name="sparkpipe-termination", daemon=True)
        watchdog.start()
        if not connect_run(runner):
            runner.terminate(signal_name)  # classic: cancelling is a quick call into this process's JVM
            return
        if runner.spark is None:
            runner.terminate(signal_name)  # marks the run terminated; nothing to cancel yet
            raise SessionCreationInterrupted(f"terminated by {signal_name} while connecting to Spark Connect")
        # Cancelling asks the server: off the handler, so the main thread goes on to write the metrics.
        threading.Thread(target=runner.terminate, args=(signal_name,), name="sparkpipe-cancel", daemon=True).start()

    def watch(self, code: int) -> None:
        if self.ended.wait(self.grace):
            return
        log.error("sparkpipe: the run did not end within %.0f s of the signal: ending the driver now", self.grace)
        run_bounded(self.report, CLOSE_WAIT_S, "sparkpipe-metrics")
        exit_now(code)

    def report(self) -> dict[str, Any]:
        """Finish, log and write the metrics of a run that was terminated before it could."""
        from spark_job.outcomes import SequenceState

        runner = self.runner
        for figures in runner.metrics.sequences.values():
            if not figures.status.finished and figures.started_at:  # still running when the driver ends
                figures.status, figures.error = SequenceState.CANCELLED, "cancelled: the driver was terminated"
        runner.metrics.skip_pending("not run: the driver was terminated")
        runner.metrics.finish(error=runner.terminated or "terminated")
        document = runner.metrics.to_dict()
        runner.log_summary(document)
        runner.publish(document)
        return document
