"""Runs ``sparkpipe`` and kills it (the driver and its JVM, SIGKILL, as a lost machine) at one exact point
of an incremental run, for the exactly-once tests (tests/test_incremental.py).

Usage: ``python tests/incremental_kill.py <point> <n> <sparkpipe arguments...>`` where point is
``before-commit`` (a staged JDBC write is complete, its transaction not yet run) or ``after-batch`` (the
n-th batch of new files committed to its JDBC target, before Spark's checkpoint records it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any

from tests.support import descendants


def die() -> None:
    for pid in descendants(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    point, n, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if point == "before-commit":
        from spark_job.io.swap import JdbcSwap

        def commit(self: Any, *a: Any, **k: Any) -> None:
            die()

        JdbcSwap.commit = commit  # type: ignore[method-assign]
    elif point == "after-batch":
        from spark_job.engine.batch_sinks import JdbcBatches

        write = JdbcBatches.write

        def write_then_die(self: Any, batch: Any, batch_id: int, stream: str) -> Any:
            rows = write(self, batch, batch_id, stream)
            if batch_id == n:
                die()
            return rows

        JdbcBatches.write = write_then_die  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown point {point!r}")
    from spark_job.cli import main as sparkpipe

    return sparkpipe(args)


if __name__ == "__main__":
    sys.exit(main())
