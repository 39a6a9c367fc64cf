"""Fixtures for the provider tests: a temporary AIRFLOW_HOME with a migrated metadata database, a way
to run DAGs with Airflow's own ``dag.test()`` in a fresh process, and a Spark standalone cluster.

Airflow reads its configuration when it is first imported, so the environment is set here, when
pytest loads this file and before any test imports Airflow; child processes inherit it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ..conftest import spark_home

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "dags_examples"
TEST_DAGS = Path(__file__).resolve().parent / "dags"
RUNNER = Path(__file__).resolve().parent / "dag_runner.py"
PYTHON = sys.executable

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="sparkpipe-airflow-home-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLES),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        # dag.test() looks DAGs up in the DAG bundles: the examples, and the DAGs only the tests run.
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
            [
                {
                    "name": name,
                    "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                    "kwargs": {"path": str(path)},
                }
                for name, path in (("examples", EXAMPLES), ("test-dags", TEST_DAGS))
            ]
        ),
    }
)

# Spark settings that keep test runs small and their logs short (the driver's own lines stay).
QUIET_SPARK = {
    "spark.log.level": "WARN",
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "2",
}


SHOP = EXAMPLES / "data" / "shop"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def read_output(directory: Path, suffix: str) -> list[dict[str, Any]]:
    """All rows of the part files Spark wrote under ``directory``."""
    rows: list[dict[str, Any]] = []
    for part in sorted(directory.glob(f"part-*{suffix}")):
        if suffix == ".csv":
            rows += read_csv(part)
        else:
            rows += [json.loads(line) for line in part.read_text().splitlines() if line]
    assert (directory / "_SUCCESS").exists(), f"no _SUCCESS marker in {directory}"
    return rows


def revenue_by_customer(first_day: str = "0000", last_day: str = "9999") -> dict[int, Decimal]:
    totals: dict[int, Decimal] = defaultdict(Decimal)
    for order in read_csv(SHOP / "orders.csv"):
        if first_day <= order["order_date"] <= last_day:
            totals[int(order["customer_id"])] += Decimal(order["amount"])
    return totals


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sparkpipe_connection(**extra: Any) -> str:
    """An ``AIRFLOW_CONN_*`` value for a ``sparkpipe`` connection with these extras."""
    return json.dumps({"conn_type": "sparkpipe", "extra": extra})


@dataclass
class DagRunResult:
    """What ``dag.test()`` did: the run's state, its tasks' states, their XComs and its log."""

    state: str
    tasks: dict[str, str]
    xcoms: dict[str, Any]
    log: str

    def xcom(self, task_id: str, key: str = "return_value") -> Any:
        return self.xcoms[f"{task_id}.{key}"]


def split_logs(output: str) -> dict[str, str]:
    """The runner's combined output, split per run at its ``=== sparkpipe-test-run NAME ===`` lines."""
    logs: dict[str, list[str]] = {}
    current: list[str] = []
    for line in output.splitlines():
        if line.startswith("=== sparkpipe-test-run "):
            current = logs.setdefault(line.split()[2], [])
        current.append(line)
    return {name: "\n".join(lines) for name, lines in logs.items()}


@pytest.fixture(scope="session", autouse=True)
def _remove_airflow_home() -> Iterator[None]:
    yield
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """The session's AIRFLOW_HOME with a metadata database migrated once (``airflow db migrate``)."""
    done = subprocess.run(
        [str(Path(PYTHON).parent / "airflow"), "db", "migrate"],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return _AIRFLOW_HOME


@dataclass
class DagRunner:
    """Runs DAGs with ``dag.test()`` in a child process (several per process, to pay Airflow's start-up once)."""

    workdir: Path

    def run(self, runs: list[Mapping[str, Any]], env: Mapping[str, str] | None = None) -> dict[str, DagRunResult]:
        spec_path = self.workdir / f"spec-{time.monotonic_ns()}.json"
        out_path = spec_path.with_suffix(".out.json")
        spec_path.write_text(json.dumps({"out": str(out_path), "runs": list(runs)}))
        done = subprocess.run(
            [PYTHON, str(RUNNER), str(spec_path)],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=600,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0 and out_path.exists(), output[-20000:]
        logs = split_logs(done.stdout)
        results = json.loads(out_path.read_text())
        return {
            name: DagRunResult(r["state"], r.get("tasks", {}), r.get("xcoms", {}), logs.get(name, ""))
            for name, r in results.items()
        }


@pytest.fixture(scope="session")
def dag_runner(airflow_home: Path, tmp_path_factory: pytest.TempPathFactory) -> DagRunner:
    return DagRunner(tmp_path_factory.mktemp("dag-runs"))


@dataclass(frozen=True)
class SparkCluster:
    master_url: str
    webui_url: str


def _start_spark(args: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(spark_home() / "bin" / "spark-class"), *args],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=dict(env),
        start_new_session=True,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    """A Spark standalone master and one worker (1 core, 1 GiB) on 127.0.0.1, from the installed pyspark."""
    root = tmp_path_factory.mktemp("spark-standalone")
    port, webui, worker_webui = free_port(), free_port(), free_port()
    env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1"}
    master = _start_spark(
        [
            "org.apache.spark.deploy.master.Master",
            *("--host", "127.0.0.1", "--port", str(port), "--webui-port", str(webui)),
        ],
        root / "master.log",
        env,
    )
    worker = _start_spark(
        [
            "org.apache.spark.deploy.worker.Worker",
            f"spark://127.0.0.1:{port}",
            *("--host", "127.0.0.1", "--webui-port", str(worker_webui)),
            *("--cores", "1", "--memory", "1g", "--work-dir", str(root / "work")),
        ],
        root / "worker.log",
        env,
    )
    cluster = SparkCluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{webui}")
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{cluster.webui_url}/json/", timeout=5) as response:
                    if json.load(response).get("aliveworkers", 0) >= 1:
                        break
            except OSError:
                pass
            if master.poll() is not None or worker.poll() is not None or time.monotonic() > deadline:
                logs = (root / "master.log").read_text() + (root / "worker.log").read_text()
                raise RuntimeError(f"the Spark standalone cluster did not start:\n{logs[-5000:]}")
            time.sleep(0.5)
        yield cluster
    finally:
        _stop(worker)
        _stop(master)


@dataclass(frozen=True)
class HistoryServer:
    """A Spark history server on 127.0.0.1 reading an event log folder."""

    url: str
    log_dir: Path
    process: subprocess.Popen[bytes]

    def page(self, path: str, timeout_s: float = 120) -> str:
        """The page at ``path`` once the server shows it (it scans the folder every second), as text."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
                    return str(response.read().decode("utf-8", "replace"))
            except OSError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{self.url}{path}: {exc}") from exc
            time.sleep(0.5)


@contextlib.contextmanager
def history_server(log_dir: Path, log: Path) -> Iterator[HistoryServer]:
    """The installed pyspark's history server (``spark-class ...HistoryServer``) on a free port of
    127.0.0.1, picking up new event logs every second; stopped afterwards."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "spark.history.fs.logDirectory": log_dir.as_uri(),
        "spark.history.ui.port": str(port),
        "spark.history.fs.update.interval": "1s",
    }
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_DAEMON_MEMORY": "512m",
        "SPARK_HISTORY_OPTS": " ".join(f"-D{k}={v}" for k, v in settings.items()),
    }
    process = _start_spark(["org.apache.spark.deploy.history.HistoryServer"], log, env)
    server = HistoryServer(f"http://127.0.0.1:{port}", log_dir, process)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{server.url}/api/v1/version", timeout=5):
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Spark history server did not start:\n{log.read_text()[-5000:]}")
            time.sleep(0.5)
        yield server
    finally:
        _stop(process)


def live_group_members(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes of a process group, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[2] == str(pgid) and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members
