"""What differs between the sessions the driver runs on, in one object per session.

A classic session (Spark's JVM in this process) and a Spark Connect session (a client of a server),
on Spark 3.5 and on 4.x, tag and cancel jobs, observe metrics and reach filesystems differently.
``capabilities_of(spark)`` picks the implementation once per session; the runner and the writers ask
it instead of testing what kind of session they were given.

- a sequence's jobs: on classic sessions a job group, a FAIR pool and the SparkContext's job tag
  (``addJobTag``, ``cancelJobsWithTag``): ``SparkSession.addTag`` exists only on Spark Connect in
  3.5, and on classic 4.x its tag does not reach the jobs of PySpark's threads (``interruptTag``
  finds none); on Spark Connect the session's tag (``addTag``, ``interruptTag``);
- the write's ``observe()``: an ``Observation`` filled by the JVM (classic) or from the write's
  response (Connect 4.x); a Connect 3.5 client receives no observed values at all, and a Connect
  4.0 server sends none for a DataFrame analysed before its write while its plan cache is on, and
  drops them when its listener bus is slow;
- Hadoop's filesystems and JDBC drivers: through the JVM of a classic session; a Connect client has none.
"""

from __future__ import annotations

import contextlib
import re
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

SUPPORTED_SPARK = "Spark 3.5.x and 4.x"
"""The Spark versions the driver runs on, as messages name them."""


class UnsupportedSpark(RuntimeError):
    """The session's Spark is outside the versions the driver runs on."""


class NotComputedOnce(RuntimeError):
    """A result the session cannot compute once for several jobs (``computed_once``)."""


def is_connect(spark: Any) -> bool:
    """Whether ``spark`` is a Spark Connect client session (no JVM in this process).

    By the session's class alone: importing the connect modules (and pandas, pyarrow) is not needed.
    """
    return type(spark).__module__.startswith("pyspark.sql.connect")


def pyspark_version() -> tuple[int, int]:
    """``(major, minor)`` of the installed pyspark: the Python API the driver calls."""
    import pyspark

    found = re.match(r"(\d+)\.(\d+)", pyspark.__version__)
    if found is None:  # pragma: no cover - every release is numbered
        raise UnsupportedSpark(f"cannot read pyspark's version {pyspark.__version__!r}")
    return int(found.group(1)), int(found.group(2))


class SessionCapabilities(ABC):
    """How the driver does on ``spark`` what differs between kinds of sessions and Spark versions.

    Args:
        spark: the session (classic or Spark Connect).
        version: pyspark's ``(major, minor)`` version.

    Attributes:
        kind: ``classic`` or ``connect``.
        counts_writes: whether the values a write's ``observe()`` collects reach the driver (row
            counts, data-quality counts); False on Spark Connect 3.5, whose client drops them.
    """

    kind: ClassVar[str]
    counts_writes: ClassVar[bool] = True

    @property
    def counts_may_be_lost(self) -> bool:
        """Whether a write's observed values may fail to arrive although the write ran (a Spark Connect
        4.0 server drops them when its listener bus is slow, SPARK-54279): empty values then say
        nothing, and ``observed`` gives None for them."""
        return False

    def __init__(self, spark: Any, version: tuple[int, int]) -> None:
        self.spark = spark
        self.version = version

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.describe()}>"

    def describe(self) -> str:
        """E.g. ``classic session, pyspark 3.5``."""
        return f"{self.kind} session, pyspark {self.version[0]}.{self.version[1]}"

    @property
    def connect(self) -> bool:
        return self.kind == "connect"

    def prepare_run(self) -> None:
        """Settings a pipeline run needs on the session, made once before its first sequence (none by default)."""
        return None

    @property
    def run_settings(self) -> tuple[str, ...]:
        """The settings ``prepare_run`` may change (a run on a session it did not make puts them back)."""
        return ()

    # -- the session's own API modules ----------------------------------------------------------
    @property
    @abstractmethod
    def functions(self) -> Any:
        """``pyspark.sql.functions`` of the session's kind. The generic module picks Spark Connect from
        the process environment, not from the session at hand (a process may hold both kinds)."""

    @abstractmethod
    def new_observation(self, name: str) -> Any:
        """What ``DataFrame.observe`` takes to collect metrics named ``name`` during a write."""

    @abstractmethod
    def observed(self, observation: Any, tag: str) -> dict[str, Any] | None:
        """The values ``observation`` collected in the jobs of ``tag``: empty when those jobs executed
        nothing (mode ``ignore`` on an existing target), None when they cannot reach the driver."""

    def ddl_schema(self, ddl: str) -> Any:
        """The ``StructType`` of a DDL string (``a INT, b STRING``), parsed by the session's own Spark.

        ``StructType.fromDDL`` exists from pyspark 4.0 on and parses with whichever session is active;
        an empty DataFrame of the schema does it on every version with this session, running no job."""
        return self.spark.createDataFrame([], ddl).schema

    def computed_once(self, df: Any) -> Any:
        """``df``, computed by the first job that reads it and kept for the jobs after it, which read
        the same rows instead of running its plan again (``localCheckpoint``: a lost block fails the
        job that needs it rather than computing other rows). Nothing runs here but the shuffles the
        plan needs, which the first job would run anyway."""
        return df.localCheckpoint(eager=False)

    # -- a sequence's jobs ----------------------------------------------------------------------
    @abstractmethod
    @contextlib.contextmanager
    def jobs_of(self, tag: str, description: str, pool: str | None) -> Iterator[None]:
        """Mark the Spark jobs this thread starts meanwhile as ``tag``'s (and put them in FAIR ``pool``)."""
        yield  # pragma: no cover

    @abstractmethod
    def cancel(self, tag: str) -> None:
        """Cancel the running jobs of ``tag`` (those of every thread)."""

    # -- the application ------------------------------------------------------------------------
    @abstractmethod
    def application_id(self) -> str | None:
        """The Spark application's id (on Spark Connect, the server's); None once the session is gone."""

    def ui_url(self) -> str | None:
        """The live UI of the application, when this process runs it."""
        return None

    def jvm(self) -> Any | None:
        """The py4j view of this process's JVM; None when the driver has none (Spark Connect)."""
        return None

    @property
    def reaches_hadoop(self) -> bool:
        """Whether this process reaches Hadoop's FileSystem (``hdfs://``, ``gs://``, ``s3a://`` ...)."""
        return self.jvm() is not None

    def hadoop_configuration(self) -> Any:
        """The session's Hadoop ``Configuration`` (only where ``reaches_hadoop``)."""
        raise NotImplementedError(f"a {self.describe()} has no Hadoop configuration in this process")

    def spark_conf(self, key: str, default: str | None = None) -> str | None:
        """A setting of the application (static ones too)."""
        try:
            value = self.spark.conf.get(key, default)
        except Exception:
            return default
        return None if value is None else str(value)


class ClassicSession(SessionCapabilities):
    """A session whose JVM runs in this process: job groups, FAIR pools, the SparkContext's job tags,
    Hadoop through py4j; the same on Spark 3.5 and 4.x."""

    kind = "classic"

    def __init__(self, spark: Any, version: tuple[int, int]) -> None:
        super().__init__(spark, version)
        self.sc = spark.sparkContext

    @property
    def functions(self) -> Any:
        from pyspark.sql import functions

        return functions

    def new_observation(self, name: str) -> Any:
        from pyspark.sql.observation import Observation

        # Observation() itself turns into a connect one (pyspark 4) or refuses to work (3.5) once a
        # connect session was created in this process: build the classic object explicitly.
        observation = object.__new__(Observation)
        observation.__init__(name)  # type: ignore[misc]
        return observation

    def observed(self, observation: Any, tag: str) -> dict[str, Any] | None:
        # Observation.get blocks until the observed plan ran: ask first whether the tag's job group
        # (its own) ran any job at all.
        if not self.jobs_ran(tag):
            return {}
        return dict(observation.get or {})

    def jobs_ran(self, tag: str) -> bool:
        """Whether any job of ``tag``'s job group started."""
        return bool(self.sc.statusTracker().getJobIdsForGroup(tag))

    @contextlib.contextmanager
    def jobs_of(self, tag: str, description: str, pool: str | None) -> Iterator[None]:
        # PySpark pins each Python thread to a JVM thread: these local properties are this thread's.
        sc = self.sc
        self.add_tag(tag)
        sc.setJobGroup(tag, description, interruptOnCancel=True)
        if pool:
            sc.setLocalProperty("spark.scheduler.pool", pool)
        try:
            yield
        finally:
            self.remove_tag(tag)
            sc.setLocalProperty("spark.jobGroup.id", None)
            sc.setLocalProperty("spark.scheduler.pool", None)

    def cancel(self, tag: str) -> None:
        self.sc.cancelJobGroup(tag)
        self.cancel_tag(tag)

    def add_tag(self, tag: str) -> None:
        self.sc.addJobTag(tag)

    def remove_tag(self, tag: str) -> None:
        self.sc.removeJobTag(tag)

    def cancel_tag(self, tag: str) -> None:
        """Cancel the jobs carrying the SparkContext job tag ``tag`` (what ``cancel`` does beside the group)."""
        self.sc.cancelJobsWithTag(tag)

    def application_id(self) -> str | None:
        try:
            return str(self.sc.applicationId)
        except Exception:  # the session is going down
            return None

    def ui_url(self) -> str | None:
        url = self.sc.uiWebUrl
        return str(url) if url else None

    def jvm(self) -> Any | None:
        return self.sc._jvm

    def hadoop_configuration(self) -> Any:
        return self.sc._jsc.hadoopConfiguration()


class ConnectSession(SessionCapabilities):
    """A Spark Connect client: the server owns the JVM, the scheduler and the filesystems; only
    session tags (per client thread) mark and cancel a sequence's jobs."""

    kind = "connect"

    @property
    def functions(self) -> Any:
        from pyspark.sql.connect import functions

        return functions

    @contextlib.contextmanager
    def jobs_of(self, tag: str, description: str, pool: str | None) -> Iterator[None]:
        self.spark.addTag(tag)
        try:
            yield
        finally:
            self.spark.removeTag(tag)

    def cancel(self, tag: str) -> None:
        self.spark.interruptTag(tag)

    def application_id(self) -> str | None:
        return self.spark_conf("spark.app.id")  # the server's application


class ConnectSpark35(ConnectSession):
    """Spark Connect 3.5: the client has no ``Observation``; ``observe()`` takes a name, and the
    collected values never reach the client (it drops them from a command's response)."""

    counts_writes = False

    def new_observation(self, name: str) -> Any:
        return name

    def computed_once(self, df: Any) -> Any:
        # A 3.5 client has no localCheckpoint: the server keeps the rows (persist) instead. But it
        # analyses the plan again for every job, and an unseeded rand(), uuid() or shuffle() draws a new
        # seed each time: the next job misses the kept rows and computes others. Two analyses of such a
        # plan differ, so they are refused.
        if df.semanticHash() != df.semanticHash():
            raise NotComputedOnce(
                "its query or rules are not deterministic (an unseeded rand(), randn(), uuid(), shuffle() "
                "...), and a Spark Connect 3.5 client cannot compute its rows once for both the target and the "
                "quarantine (each job would draw other values): run on a classic session or on Spark "
                "Connect 4.x, or give the functions a seed (rand(42))"
            )
        return df.persist()

    def observed(self, observation: Any, tag: str) -> dict[str, Any] | None:
        return None


class ConnectSpark4(ConnectSession):
    """Spark Connect 4.x: the client's ``Observation`` is filled from the write's response."""

    PLAN_CACHE = "spark.connect.session.planCache.enabled"

    def __init__(self, spark: Any, version: tuple[int, int]) -> None:
        super().__init__(spark, version)
        self._server_4_0: bool | None = None

    @property
    def server_4_0(self) -> bool:
        """Whether the server runs Spark 4.0.x (asked once)."""
        if self._server_4_0 is None:
            self._server_4_0 = str(self.spark.version).startswith("4.0.")
        return self._server_4_0

    @property
    def counts_may_be_lost(self) -> bool:
        # A 4.0 server waits 100 ms for the listener that collects a write's observed values, then
        # sends the response without them (SPARK-54279, fixed in 4.1).
        return self.server_4_0

    @property
    def run_settings(self) -> tuple[str, ...]:
        return (self.PLAN_CACHE,) if self.server_4_0 else ()

    def prepare_run(self) -> None:
        # A 4.0 server reuses the plan it cached when the observed DataFrame was analysed (the writers
        # ask for its input files) and then sends no observed values with the write.
        if self.server_4_0:
            self.spark.conf.set(self.PLAN_CACHE, "false")

    def new_observation(self, name: str) -> Any:
        from pyspark.sql.connect.observation import Observation

        return Observation(name)

    def observed(self, observation: Any, tag: str) -> dict[str, Any] | None:
        # Filled from the write's response; empty when the write executed nothing, or (on a 4.0
        # server) when the server dropped the values.
        values = dict(observation.get or {})
        return None if not values and self.counts_may_be_lost else values


_CHOSEN: weakref.WeakKeyDictionary[Any, SessionCapabilities] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def choose(spark: Any) -> SessionCapabilities:
    """The capabilities of ``spark`` (a new object; ``capabilities_of`` keeps one per session)."""
    version = pyspark_version()
    if version < (3, 5):
        import pyspark

        raise UnsupportedSpark(
            f"sparkpipe's driver runs on {SUPPORTED_SPARK}; this is pyspark {pyspark.__version__}: "
            "run it with the pyspark of a Spark 3.5 or newer installation (spark-submit's own)"
        )
    if is_connect(spark):
        return ConnectSpark35(spark, version) if version < (4, 0) else ConnectSpark4(spark, version)
    return ClassicSession(spark, version)


def capabilities_of(spark: Any) -> SessionCapabilities:
    """The capabilities of ``spark``, chosen the first time a session is asked about, then kept."""
    with _LOCK:
        found = _CHOSEN.get(spark)
        if found is None:
            found = _CHOSEN[spark] = choose(spark)
        return found
