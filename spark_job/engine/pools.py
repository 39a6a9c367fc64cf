"""The FAIR scheduler pools of a run, one per sequence, and the allocation file that declares them.

Spark makes a pool it does not know on first use and warns about it (``FairSchedulableBuilder: A job
was submitted with scheduler pool sparkpipe_x, which has not been configured``), once per sequence of
every run. Declared in ``spark.scheduler.allocation.file`` with the settings Spark would give them
(FIFO inside the pool, weight 1, no minimum share), they behave the same and nothing is said.
Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from xml.sax.saxutils import quoteattr

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
