"""Shared fixtures: one local SparkSession per test session, a real PostgreSQL server and a Spark Connect
server. What tests import (the repository's root, free ports, the servers' handles) is in ``support.py``."""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .spark_jvm import LONG_LIVED
from .support import POSTGRES_JAR, Postgres, SparkConnectServer, free_port, spark_connect_jars, spark_home

# grpcio (1.80, the last for Python 3.9, whose subprocess forks) aborts the forked child of a process
# holding a Spark Connect channel unless its fork support is off; the tests fork servers and CLIs
# after opening one. Read when grpc is imported, which no test module does before this.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

# py4j logs its shutdown at INFO after pytest has closed the captured streams.
logging.getLogger("py4j").setLevel(logging.WARNING)


def pytest_configure(config: pytest.Config) -> None:
    """Before any test starts a JVM: options that make the tests' short-lived Spark JVMs start fast."""
    import importlib.util

    from .spark_jvm import configure

    if importlib.util.find_spec("pyspark") is None:
        return  # the test matrix's cell without Spark runs only tests that need none
    configure(spark_home())
    # Spark's Python workers run on this interpreter (python3 on PATH may be another version, which
    # pyspark refuses: the test matrix's cells run other Pythons).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory):
    """A local[2] session shared by every test; the PostgreSQL JDBC driver is on its classpath."""
    from pyspark.sql import SparkSession

    warehouse = tmp_path_factory.mktemp("warehouse")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("sparkpipe-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse} {LONG_LIVED}")
        .config("spark.jars", POSTGRES_JAR)
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        raise RuntimeError(
            "PostgreSQL server binaries not found: run scripts/bootstrap.sh (apt-get install postgresql)"
        )
    return Path(found[-1]).parent


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server of its own on 127.0.0.1, run as the unprivileged ``postgres`` user."""
    bindir = _postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="sparkpipe-pg-"))
    datadir = root / "data"
    user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    # As root, run the server as postgres through setpriv, which execs it directly. Not with preexec_fn:
    # Python code between fork and exec can abort the child while other threads of the test process
    # (the Dataproc fake's gRPC server) hold locks.
    as_postgres = (
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"] if user is not None else []
    )

    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    pwfile = root / "pw"
    pwfile.write_text("sparkpipe\n")
    if user is not None:
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    subprocess.run(
        [
            *as_postgres,
            bindir / "initdb",
            "-D",
            datadir,
            "-U",
            "sparkpipe",
            f"--pwfile={pwfile}",
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
        cwd=root,
    )
    port = free_port()
    log = open(root / "server.log", "w")  # noqa: SIM115 - kept open for the server's lifetime
    server = subprocess.Popen(
        [*as_postgres, bindir / "postgres", "-D", datadir, "-h", "127.0.0.1", "-p", str(port), "-k", str(root), "-F"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    pg = Postgres("127.0.0.1", port, "sparkpipe", "sparkpipe", "postgres")
    deadline = time.monotonic() + 60
    while True:
        try:
            pg.connect().close()
            break
        except Exception:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not start: " + (root / "server.log").read_text()) from None
            time.sleep(0.2)
    try:
        yield pg
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def spark_connect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkConnectServer]:
    """A Spark Connect server (``local[2]``) started from the installed pyspark's jars on 127.0.0.1, once."""
    import signal

    root = tmp_path_factory.mktemp("spark-connect")
    port = free_port()
    command = [
        str(spark_home() / "bin" / "spark-submit"),
        "--class",
        "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--master",
        "local[2]",
        "--name",
        "sparkpipe-tests-connect",
        *("--conf", "spark.connect.grpc.binding.address=127.0.0.1"),
        *("--conf", f"spark.connect.grpc.binding.port={port}"),
        *("--conf", "spark.ui.enabled=false"),
        *("--conf", "spark.sql.shuffle.partitions=2"),
        *("--conf", "spark.log.level=WARN"),
        *("--conf", f"spark.sql.warehouse.dir={root / 'warehouse'}"),
        *("--conf", f"spark.driver.extraJavaOptions=-Dderby.system.home={root} {LONG_LIVED}"),
        *("--conf", f"spark.jars={','.join([POSTGRES_JAR, *spark_connect_jars()])}"),
    ]
    log = root / "server.log"
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_HOME": str(spark_home())}
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Spark Connect server did not start:\n{log.read_text()[-5000:]}") from None
                time.sleep(0.5)
        yield SparkConnectServer(f"sc://127.0.0.1:{port}", port, log)
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture(scope="session")
def spark_connect(spark_connect_server: SparkConnectServer):
    """A Spark Connect client session on the test server, shared by every test that needs one."""
    # The connect builder itself: pyspark.sql.SparkSession.builder refuses a remote session while the
    # classic test session runs in this process.
    from pyspark.sql.connect.session import SparkSession as RemoteSparkSession

    session = RemoteSparkSession.builder.remote(spark_connect_server.url).create()
    yield session
    session.stop()
