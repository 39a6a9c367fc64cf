"""What the tests import: the repository's root, free ports, the installed Spark and its jars, and the
handles of the servers the fixtures of ``conftest.py`` start (PostgreSQL, Spark Connect).

Python 3.9 and the standard library only: the test matrix's cells import it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
POSTGRES_JAR = os.environ.get("SPARKPIPE_POSTGRES_JAR", "/usr/share/java/postgresql.jar")
ENDLESS = (
    "SELECT count(*) AS n FROM range(0, 20000, 1, 200) WHERE length(java_method('java.lang.Thread', 'sleep', 10L)) > 0"
)
"""A query that runs for 100 s on two cores, in one job of 200 one-second tasks (100 rows sleeping 10 ms
each), for the tests that cancel it within seconds: once it is cancelled no task starts, and a running one
ends within a second, interrupted or not. Bounded, because a cancel can miss it: under a heavy load the
shared Spark Connect server (4.3) once answered the fail-fast test that the operation was interrupted and
went on running its job; a query of hours then held the server's two cores, and every later test waited
on it. A count over a cross join of ranges never checked for the cancel at all."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str
    database: str

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"

    def connect(self):
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=self.database,
            autocommit=True,
        )

    def wait_for_killed_clients(self) -> None:
        """Until no session holds an advisory lock (a lease) or runs a statement, as after a killed driver.

        A killed driver's sockets close when its processes end; the server notices a moment later, ends
        its sessions, rolls their transactions back and releases their locks. A rerun started at that
        very moment could still find the lease held, which a rerun by hand or by a task's retry, seconds
        later, would not."""
        deadline = time.monotonic() + 120
        with self.connect() as conn:
            while True:
                (busy,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity a WHERE a.pid <> pg_backend_pid() AND a.backend_type = "
                    "'client backend' AND (a.state <> 'idle' OR EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid"
                    " AND l.locktype = 'advisory'))"
                ).fetchone()
                if not busy:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"{busy} sessions of killed clients still open after two minutes")
                time.sleep(0.05)


@dataclass(frozen=True)
class SparkConnectServer:
    """A Spark Connect server: ``url`` is what ``SparkSession.builder.remote()`` and ``--remote`` take."""

    url: str
    port: int
    log: Path


def spark_home() -> Path:
    """The installed pyspark package, which is a whole Spark distribution (bin/, jars/, sbin/)."""
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    assert spec is not None and spec.submodule_search_locations, "pyspark is not installed"
    return Path(next(iter(spec.submodule_search_locations)))


def spark_version() -> str:
    """The installed pyspark's version (its Spark's)."""
    import pyspark

    return str(pyspark.__version__)


def jars_dir() -> Path:
    """Where the setup script keeps the jars fetched for this Spark version (``.cache/jars/spark-<version>``)."""
    return REPO / ".cache" / "jars" / f"spark-{spark_version()}"


def spark_connect_jars() -> list[str]:
    """The Spark Connect server's jar: in Spark's own jars from 4.0 on; fetched by the setup script for 3.5."""
    if list((spark_home() / "jars").glob("spark-connect_*.jar")):
        return []
    fetched = sorted(str(p) for p in jars_dir().glob("spark-connect_*.jar"))
    if not fetched:
        raise RuntimeError(
            f"pyspark {spark_version()} ships no Spark Connect server: expected "
            f"{jars_dir()}/spark-connect_2.12-{spark_version()}.jar, which scripts/bootstrap.sh fetches"
        )
    return fetched


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def ended(pid: int) -> bool:
    """Whether a process is gone or a zombie (its memory and sockets are released either way)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a driver's process group and every process below it (its JVM runs in a session of its
    own, so that a terminal's Ctrl-C reaches only the driver) at once, as a lost machine would; return
    once all of them have ended."""
    victims = descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 60
    while not all(ended(pid) for pid in victims):
        if time.monotonic() > deadline:
            raise AssertionError(f"processes {victims} still alive a minute after SIGKILL")
        time.sleep(0.02)
