"""Where a run's Spark jobs go (``RunJobs``): a job group and tag per sequence, and the FAIR scheduler
pools of a run, one per sequence, with the allocation file that declares them.

Spark makes a pool it does not know on first use and warns about it (``FairSchedulableBuilder: A job
was submitted with scheduler pool sparkpipe_x, which has not been configured``), once per sequence of
every run. Declared in ``spark.scheduler.allocation.file`` with the settings Spark would give them
(FIFO inside the pool, weight 1, no minimum share), they behave the same and nothing is said.
Standard library only (the session's capabilities are imported where jobs are marked or cancelled).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

log = logging.getLogger("sparkpipe")

POOL_PREFIX = "sparkpipe_"

ALLOCATION_FILE_CONF = "spark.scheduler.allocation.file"


def pool_name(sequence: str) -> str:
    """The FAIR pool the jobs of ``sequence`` run in."""
    return f"{POOL_PREFIX}{sequence}"


def allocation_xml(sequences: Iterable[str]) -> str:
    """The allocation file declaring the pool of each sequence."""
    pools = "".join(
        f"  <pool name={quoteattr(pool_name(name))}>"
        "<schedulingMode>FIFO</schedulingMode><weight>1</weight><minShare>0</minShare></pool>\n"
        for name in dict.fromkeys(sequences)
    )
    return f'<?xml version="1.0"?>\n<allocations>\n{pools}</allocations>\n'


def write_allocation_file(sequences: Iterable[str], folder: str | os.PathLike[str]) -> str:
    """Write the allocation file into ``folder`` (a local directory); its ``file:`` URI, for
    ``spark.scheduler.allocation.file`` (Spark reads it through Hadoop's FileSystem, where a path without
    a scheme would be on the cluster's default filesystem)."""
    path = Path(folder) / "fair-pools.xml"
    path.write_text(allocation_xml(sequences), encoding="utf-8")
    return path.resolve().as_uri()


class RunJobs:
    """Where the Spark jobs of one run go: each sequence's (and the sources') job group and job tag
    ``sparkpipe-<run id>-<name>`` and, with ``use_pools``, its FAIR pool, declared in an allocation file
    of the run's own (``allocation_file``; ``close`` removes it).

    Args:
        run_id: the run's id, unique per run.
        app_name: the pipeline's name (the job groups' descriptions).
        sequences: the sequences' names.
        use_pools: put each sequence's jobs in a FAIR pool of its own.
    """

    def __init__(self, run_id: str, app_name: str, sequences: Iterable[str], use_pools: bool) -> None:
        self.run_id = run_id
        self.app_name = app_name
        self.sequences = list(sequences)
        self.use_pools = use_pools
        self._folder: str | None = None

    def tag(self, name: str) -> str:
        """The job group and job tag of ``name`` in this run."""
        return f"sparkpipe-{self.run_id}-{name}"

    @contextlib.contextmanager
    def of(self, spark: Any, name: str, pool: bool = True) -> Iterator[None]:
        """Put the Spark jobs this thread starts in ``name``'s job group, job tag and FAIR pool (where the
        session has them: see ``spark_job.engine.capabilities``)."""
        from spark_job.engine.capabilities import capabilities_of

        description = f"sparkpipe {self.app_name}: {name}"
        fair_pool = pool_name(name) if pool and self.use_pools else None
        with capabilities_of(spark).jobs_of(self.tag(name), description, fair_pool):
            yield

    def cancel(self, spark: Any, name: str) -> None:
        """Cancel the running jobs of ``name`` (a session going down already is let be)."""
        from spark_job.engine.capabilities import capabilities_of

        try:
            capabilities_of(spark).cancel(self.tag(name))
        except Exception as exc:
            log.warning("sparkpipe: could not cancel the jobs of %s: %s", self.tag(name), exc)

    def allocation_file(self) -> str:
        """The allocation file declaring the sequences' pools (Spark warns once per pool it has to make
        up), written once per run into a folder of its own."""
        if self._folder is None:
            self._folder = tempfile.mkdtemp(prefix="sparkpipe-pools-")
        return write_allocation_file(self.sequences, self._folder)

    def close(self) -> None:
        """Remove the allocation file (read once, when the session's context starts)."""
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
