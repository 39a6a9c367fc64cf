"""A real Airflow deployment for the tests: api-server, scheduler, dag-processor and triggerer as separate
processes on 127.0.0.1 (LocalExecutor, metadata database on the test PostgreSQL server), driven over REST."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.provider.kubernetes.conftest import kubernetes_connection
from tests.provider.kubernetes.fake_apiserver import FakeKubernetes, serve
from tests.provider.support import EXAMPLES, QUIET_SPARK, HistoryServer, history_server
from tests.support import Postgres, free_port

DEPLOYMENT_DAGS = Path(__file__).resolve().parent / "deployment_dags"
AIRFLOW = Path(sys.executable).parent / "airflow"
DATABASE = "airflow_deploy"
USER = "admin"  # a user of the Simple auth manager, who logs in with a password
K8S_CONN_ID = "sparkpipe_deployment_k8s"
BUNDLES = {"examples": EXAMPLES, "deployment-dags": DEPLOYMENT_DAGS}
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
START_TIMEOUT_S = 240.0
RUN_TIMEOUT_S = 300.0
LOG_TAIL_LINES = 40

T = TypeVar("T")


class DeploymentError(AssertionError):
    """The deployment did not do something in time, or one of its processes died; carries the logs' tails."""


class ApiUnreachable(DeploymentError):
    """The api-server did not answer (not started yet, or too busy): a wait tries again until its deadline."""


@dataclass
class HeldFakeKubernetes(FakeKubernetes):
    """The fake API server, whose applications of the task ids in ``held`` stay RUNNING until released.

    The test can then see the task deferred for as long as it needs, however slow the machine is.
    """

    held: set[str] = field(default_factory=set)

    def _advance(self, app: dict[str, Any]) -> None:
        uid = app["metadata"]["uid"]
        # Step 1 of every script is RUNNING: a held application repeats it instead of moving on.
        if app["metadata"]["labels"].get("task_id") in self.held and self._steps[uid] > 1:
            self._steps[uid] = 1
        super()._advance(app)

    def application(self, dag_id: str) -> dict[str, Any] | None:
        """The SparkApplication a task of this DAG created (None if there is none, or it was deleted)."""
        with self._lock:
            found = [a for a in self.apps.values() if a["metadata"]["labels"].get("dag_id") == dag_id]
        assert len(found) <= 1, f"{len(found)} applications of {dag_id}"
        return found[0] if found else None


@dataclass
class AirflowDeployment:
    """The running deployment: its REST API, the processes' logs, and the fake Kubernetes API server."""

    url: str
    home: Path
    output_dir: Path
    apiserver: HeldFakeKubernetes
    processes: dict[str, subprocess.Popen[bytes]]
    logs: dict[str, Path]
    password: str
    env: dict[str, str]
    history: HistoryServer | None = None
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=60)

    # The REST API. ----------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Mapping[str, Any] | None = None, **params: Any) -> Any:
        """Call ``/api/v2/<path>``; any answer but 2xx raises with the answer and the logs' tails."""
        try:
            response = self.client.request(method, f"/api/v2/{path}", json=body, params=params or None)
        except httpx.TransportError as exc:
            raise ApiUnreachable(f"{method} /api/v2/{path}: {exc!r}\n{self.log_tails()}") from exc
        if not response.is_success:
            raise DeploymentError(
                f"{method} /api/v2/{path}: {response.status_code} {response.text}\n{self.log_tails()}"
            )
        return response.json()

    def login(self) -> None:
        """Log in to the Simple auth manager as ``USER`` and send its token from now on."""
        response = self.client.post("/auth/token", json={"username": USER, "password": self.password})
        if response.status_code != 201:
            raise DeploymentError(f"GET /auth/token: {response.status_code} {response.text}\n{self.log_tails()}")
        self.client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def trigger(self, dag_id: str) -> str:
        """Unpause the DAG and trigger a run now, without a logical date (as Airflow 3 allows); its run id."""
        self.api("PATCH", f"dags/{dag_id}", {"is_paused": False})
        return str(self.api("POST", f"dags/{dag_id}/dagRuns", {"logical_date": None})["dag_run_id"])

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The task's log as the UI shows it (the worker's and the triggerer's parts), one event per line."""
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        content = self.api("GET", path, full_content=True)["content"]
        return "\n".join(e["event"] if isinstance(e, dict) else str(e) for e in content)

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"))

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        entry = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) else value

    def wait_for_run(self, dag_id: str, run_id: str, timeout_s: float = RUN_TIMEOUT_S) -> str:
        """Wait until the DAG run ends; its state (``success`` or ``failed``)."""

        def ended() -> str | None:
            state = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")["state"]
            return state if state in ("success", "failed") else None

        return self.wait(f"the end of run {dag_id}/{run_id}", ended, timeout_s)

    def wait_for_task_state(
        self, dag_id: str, run_id: str, task_id: str, state: str, timeout_s: float = RUN_TIMEOUT_S
    ) -> dict[str, Any]:
        """Wait until the task instance is in ``state``; raise as soon as it ends in another one."""

        def reached() -> dict[str, Any] | None:
            ti = self.task_instance(dag_id, run_id, task_id)
            if ti["state"] == state:
                return ti
            if ti["state"] in ("success", "failed", "upstream_failed", "skipped", "removed"):
                raise DeploymentError(
                    f"{dag_id}/{run_id}/{task_id} ended {ti['state']} instead of reaching {state}\n{self.log_tails()}"
                )
            return None

        return self.wait(f"{dag_id}/{run_id}/{task_id} in state {state}", reached, timeout_s)

    def wait_for_dags(self, dag_ids: set[str], timeout_s: float = START_TIMEOUT_S) -> None:
        """Wait until the dag-processor has parsed these DAGs (and every file of the DAG folders)."""

        def parsed() -> bool | None:
            dags = self.api("GET", "dags", limit=100)["dags"]
            errors = self.api("GET", "importErrors", limit=100)["import_errors"]
            seen = {(d["bundle_name"], d["relative_fileloc"]) for d in dags}
            seen |= {(e["bundle_name"], e["filename"]) for e in errors}
            files = {(bundle, p.name) for bundle, folder in BUNDLES.items() for p in folder.glob("*.py")}
            return True if files <= seen and dag_ids <= {d["dag_id"] for d in dags} else None

        self.wait(f"the DAGs {sorted(dag_ids)} parsed", parsed, timeout_s, interval_s=1.0)

    # Waiting and diagnosing. ------------------------------------------------------------------------

    def wait(self, what: str, probe: Callable[[], T | None], timeout_s: float, interval_s: float = 0.5) -> T:
        """Call ``probe`` until it returns something; raise with the logs' tails at the deadline or when a
        process of the deployment exits."""
        deadline = time.monotonic() + timeout_s
        unreachable = ""
        while True:
            try:
                result = probe()
            except ApiUnreachable as exc:
                result, unreachable = None, f" (last: {str(exc).splitlines()[0]})"
            if result is not None:
                return result
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise DeploymentError(
                        f"{name} exited with {process.returncode} while waiting for {what}\n{self.log_tails()}"
                    )
            if time.monotonic() > deadline:
                raise DeploymentError(f"no {what} after {timeout_s:.0f} s{unreachable}\n{self.log_tails()}")
            time.sleep(interval_s)

    def log_tails(self) -> str:
        """The last lines of every process's log and of every task log."""
        files = [*self.logs.items(), *((str(p.relative_to(self.home)), p) for p in self._task_logs())]
        parts = []
        for name, path in files:
            lines = path.read_text(errors="replace").splitlines() if path.exists() else ["(no log)"]
            lines = [line for line in lines if "[http.access]" not in line]  # the test's own polling
            parts.append(f"----- {name} (last {LOG_TAIL_LINES} lines) -----\n" + "\n".join(lines[-LOG_TAIL_LINES:]))
        return "\n".join(parts)

    def _task_logs(self) -> list[Path]:
        return sorted((self.home / "logs").glob("dag_id=*/**/*.log"))


def _environment(
    home: Path, postgres: Postgres, db_password: str, api_port: int, k8s_url: str, output_dir: Path
) -> dict[str, str]:
    """The processes' environment: the test session's without any Airflow setting, plus the deployment's."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SPARKPIPE_"))}
    api_url = f"http://127.0.0.1:{api_port}"
    # A role of its own: Airflow masks the database password in every log and rendered field.
    database_url = f"postgresql+psycopg://{DATABASE}:{db_password}@{postgres.host}:{postgres.port}/{DATABASE}"
    return {
        **base,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLES),
        "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        # The connection form's Test button (off by default in Airflow).
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
        # Airflow derives an asyncpg URL for its async engine; psycopg 3 serves both.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": database_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": api_url,
        "AIRFLOW__API__WORKERS": "1",
        # The api-server checks the tokens the scheduler gives each task: both must share the secret.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        # Free ports of our own, so that two deployments on one machine never collide.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        # Every file is parsed once at start; parsing again would only load the 2 cores.
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
            [
                {
                    "name": name,
                    "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                    "kwargs": {"path": str(path), "refresh_interval": 3600},
                }
                for name, path in BUNDLES.items()
            ]
        ),
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "3600",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
        f"AIRFLOW_CONN_{K8S_CONN_ID.upper()}": kubernetes_connection(k8s_url),
        "SPARKPIPE_EXAMPLE_OUTPUT": str(output_dir),
        # This machine's name resolves to a loopback address, which Spark rightly warns about.
        "SPARK_LOCAL_IP": "127.0.0.1",
    }


def sparkpipe_default(work_dir: Path, history: HistoryServer) -> dict[str, Any]:
    """The examples' connection, created in the metadata database (as compose's airflow-init does), where
    the UI shows it: local Spark, its runs' event logs read by the history server."""
    extra = {
        "runtime": "local",
        "master": "local[1]",
        "work_dir": str(work_dir),
        "conf": {**QUIET_SPARK, "spark.ui.enabled": "false"},
        "event_log_dir": str(history.log_dir),
        "history_server_url": history.url,
    }
    return {
        "connection_id": "sparkpipe_default",
        "conn_type": "sparkpipe",
        "description": "The examples' runtime: local Spark on the worker, runs shown by the history server.",
        "extra": json.dumps(extra),
    }


def _processes() -> dict[int, tuple[int, str]]:
    """Every live process: pid -> (parent pid, start time), read from /proc."""
    table: dict[int, tuple[int, str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            table[int(stat.parent.name)] = (int(fields[1]), fields[19])
    return table


def _descendants(roots: set[int]) -> dict[int, str]:
    """The live descendants of ``roots``, also those in sessions of their own: pid -> start time."""
    table = _processes()
    found: dict[int, str] = {}
    frontier = set(roots)
    while frontier:
        frontier = {pid for pid, (parent, _) in table.items() if parent in frontier and pid not in found}
        found.update({pid: table[pid][1] for pid in frontier})
    return found


def _signal(pid: int, sig: signal.Signals, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_processes(processes: Mapping[str, subprocess.Popen[bytes]], grace_s: float = 30.0) -> list[int]:
    """SIGTERM each process's group, SIGKILL what is left after ``grace_s``, and then every descendant that
    left the groups (spark-submit runs in a session of its own); the pids that still live after all that."""
    started = [p for p in processes.values() if p.poll() is None]
    descendants = _descendants({p.pid for p in started})
    for process in started:
        _signal(process.pid, signal.SIGTERM, group=True)
    deadline = time.monotonic() + grace_s
    for process in started:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(process.pid, signal.SIGKILL, group=True)
            process.wait(timeout=30)

    def survivors() -> list[int]:
        alive = _processes()  # the same start time: the same process, not a reused pid
        return [pid for pid, started_at in descendants.items() if pid in alive and alive[pid][1] == started_at]

    for pid in survivors():
        _signal(pid, signal.SIGKILL, group=False)
    deadline = time.monotonic() + 10
    while (left := survivors()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture(scope="module")
def airflow_deployment(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowDeployment]:
    """The deployment, started once per module and stopped (every process group) however the module ends."""
    root = tmp_path_factory.mktemp("airflow-deployment")
    home, output_dir, work_dir = root / "home", root / "output", root / "work"
    for folder in (home, output_dir, work_dir):
        folder.mkdir()
    # The manifests are checked against the CRD's schema by the SparkKubernetes tests, which render them
    # through the same hook; here the processes are under test.
    apiserver = HeldFakeKubernetes(validate=lambda manifest: [])
    k8s_server = serve(apiserver)
    apiserver.url = f"http://127.0.0.1:{k8s_server.server_address[1]}"
    db_password, password = secrets.token_hex(16), secrets.token_hex(12)
    with postgres.connect() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"DROP ROLE IF EXISTS {DATABASE}")
        conn.execute(f"CREATE ROLE {DATABASE} LOGIN PASSWORD '{db_password}'")
        conn.execute(f"CREATE DATABASE {DATABASE} OWNER {DATABASE}")
    (home / "passwords.json").write_text(json.dumps({USER: password}))
    api_port = free_port()
    env = _environment(home, postgres, db_password, api_port, apiserver.url, output_dir)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: root / f"{name}.log" for name in ("db-migrate", *COMPONENTS)}
    deployment = AirflowDeployment(
        f"http://127.0.0.1:{api_port}", home, output_dir, apiserver, processes, logs, password, env
    )
    history = contextlib.ExitStack()
    try:
        # Started first: it is ready by the time Airflow is.
        events = history.enter_context(history_server(work_dir / "spark-events", root / "history.log"))
        deployment.history = events
        with logs["db-migrate"].open("wb") as out:
            try:
                migrate = subprocess.run(
                    [str(AIRFLOW), "db", "migrate"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=root,
                    timeout=300,
                )
            except subprocess.TimeoutExpired:
                raise DeploymentError(f"airflow db migrate did not end in 300 s\n{deployment.log_tails()}") from None
        if migrate.returncode != 0:
            raise DeploymentError(f"airflow db migrate failed\n{deployment.log_tails()}")
        for name in COMPONENTS:
            with logs[name].open("wb") as out:
                processes[name] = subprocess.Popen(
                    [str(AIRFLOW), name],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=root,
                    start_new_session=True,
                )
        deployment.wait("a healthy deployment", lambda: _healthy(deployment), START_TIMEOUT_S, interval_s=1.0)
        deployment.login()
        deployment.api("POST", "connections", sparkpipe_default(work_dir, events))
        yield deployment
    finally:
        deployment.client.close()
        left = stop_processes(processes)
        history.close()
        k8s_server.shutdown()
        k8s_server.server_close()
        with postgres.connect() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
            conn.execute(f"DROP ROLE IF EXISTS {DATABASE}")
    assert not left, f"processes of the deployment still running after SIGKILL: {left}"


def _healthy(deployment: AirflowDeployment) -> bool | None:
    """True once the api-server answers and reports the scheduler, triggerer and dag-processor healthy."""
    try:
        health = deployment.api("GET", "monitor/health")
    except ApiUnreachable:
        raise
    except DeploymentError:
        return None  # an api-server still starting may answer an error: its log is in the timeout's message
    components = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return True if all((health.get(c) or {}).get("status") == "healthy" for c in components) else None
