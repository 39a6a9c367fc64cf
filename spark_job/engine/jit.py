"""The driver JVM's just-in-time compiler settings: most scheduled pipelines run for seconds, not hours.

HotSpot compiles a method with C1, its quick compiler, once the method ran a few hundred times, and
again with C2, the optimising one, once it ran about 5,000 times. Starting a Spark session and running
a small pipeline crosses the second threshold for thousands of Spark's methods, whose C2 code is then
used for a second or two: on two cores C2's thread takes CPU from the run itself. Measured on the
example pipeline (``sparkpipe run``, ``local[1]``, its class-data archive in use): the driver's
processes used 28 CPU-seconds with the JVM's defaults, 18 with C2's thresholds thirty times higher,
and 16 with C1 alone (whose code stays slow for hours-long jobs, so it is not used).

So the driver JVM a ``sparkpipe run`` or ``LocalSpark`` starts gets C2's thresholds raised thirtyfold
(:data:`OPTIONS`). Code that runs millions of times, the per-row loops of a job over real data, still
reaches C2 within its first seconds; what runs a few thousand times during start-up stays with C1.
Only the driver's JVM: executors of a cluster start as they would.

The user's choice wins: JVM options that already set the compiler (``-XX:TieredStopAtLevel``,
``-XX:-TieredCompilation``, a ``Tier*`` or ``CompileThreshold*`` flag, ``-Xint``, ``-Xcomp``) in
``spark.driver.extraJavaOptions`` or the JVM option variables leave it alone, and
``SPARKPIPE_JIT_TUNING=off`` (``sparkpipe run --no-jit-tuning``) turns it off.

Standard library only: the provider's local runtime imports this module too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from spark_job.engine.class_data import JVM_OPTION_VARIABLES, OFF

SWITCH_ENV = "SPARKPIPE_JIT_TUNING"
"""``off`` (or ``0``, ``false``, ``no``) leaves the JVM's own compiler thresholds."""

OPTIONS = (
    "-XX:Tier4InvocationThreshold=150000",
    "-XX:Tier4MinInvocationThreshold=18000",
    "-XX:Tier4CompileThreshold=450000",
    "-XX:Tier4BackEdgeThreshold=1200000",
)
"""C2's thresholds, thirty times HotSpot's defaults (5000, 600, 15000, 40000); every HotSpot from
Java 8 on has them."""

_CHOSEN = re.compile(r"-XX:[+-]?(Tier|CompileThreshold)|-Xint\b|-Xcomp\b")


def enabled(env: Mapping[str, str]) -> bool:
    return env.get(SWITCH_ENV, "").strip().lower() not in OFF


def chooses_compiler(options: str) -> bool:
    """Whether JVM options already set the JIT compiler's tiers or thresholds."""
    return bool(_CHOSEN.search(options))


def driver_options(env: Mapping[str, str], java_options: str = "") -> list[str]:
    """The options to add to the driver JVM's ``java_options`` (``spark.driver.extraJavaOptions``) when it
    starts under ``env``: :data:`OPTIONS`, or none when turned off or chosen already."""
    if not enabled(env) or chooses_compiler(java_options):
        return []
    if any(chooses_compiler(env.get(name, "")) for name in JVM_OPTION_VARIABLES):
        return []
    return list(OPTIONS)
