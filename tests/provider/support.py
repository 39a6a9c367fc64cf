"""What the provider tests import: where the examples and test DAGs are, reading what a pipeline wrote,
``sparkpipe`` connections, running DAGs with ``dag.test()`` in a child process, and Spark's own servers
(a history server, the standalone cluster's processes) started from the installed pyspark.

Nothing here imports Airflow: ``conftest.py`` sets Airflow's environment before any test does.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.support import REPO, free_port, spark_home

EXAMPLES = REPO / "dags_examples"
TEST_DAGS = Path(__file__).resolve().parent / "dags"
RUNNER = Path(__file__).resolve().parent / "dag_runner.py"
PYTHON = sys.executable

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


@dataclass(frozen=True)
class SparkCluster:
    master_url: str
    webui_url: str


def start_spark(args: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """``spark-class <args>`` of the installed pyspark, in a process group of its own, output to ``log``."""
    return subprocess.Popen(
        [str(spark_home() / "bin" / "spark-class"), *args],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=dict(env),
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process started by :func:`start_spark` and its group."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


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
    process = start_spark(["org.apache.spark.deploy.history.HistoryServer"], log, env)
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
        stop(process)


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
