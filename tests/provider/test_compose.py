"""docker-compose.yaml: valid against the Compose specification, and every file it uses exists.

No Docker engine runs here: the file is checked as data, and its sparkpipe connection is parsed by
the provider's own code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from airflow_provider_sparkpipe.runtimes import LocalSpark, runtime_from_connection, runtime_from_dict
from tests.support import REPO

SCHEMA = REPO / "tests" / "provider" / "schemas" / "compose-spec.schema.json"
COMPOSE = REPO / "docker-compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_follows_the_compose_spec(compose: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(compose)


def test_the_stack_has_airflow_spark_and_postgres(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "airflow-postgres",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "spark-master",
        "spark-worker",
        "spark-history",
        "example-postgres",
    }
    commands = {name: s.get("command") for name, s in services.items()}
    assert commands["airflow-apiserver"] == "api-server"
    assert commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert commands["airflow-triggerer"] == "triggerer"
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert services["airflow-apiserver"]["ports"] == ["8080:8080"]
    for name in ("spark-master", "spark-worker", "spark-history"):
        assert re.fullmatch(
            r"apache/spark:\$\{SPARK_VERSION:-[\d.]+\}-scala2\.13-java17-ubuntu", services[name]["image"]
        )
    assert "spark://spark-master:7077" in services["spark-worker"]["command"]


def test_every_referenced_file_exists(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = REPO / build["context"]
            dockerfile = context / build["dockerfile"]
            assert dockerfile.is_file(), f"{name}: {dockerfile}"
            for line in dockerfile.read_text().splitlines():
                if line.startswith("COPY "):
                    for source in line.split()[1:-1]:
                        if not source.startswith("--"):
                            assert (context / source).exists(), f"{dockerfile}: COPY {source}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: bind mount {source}"
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"


def _mounted(service: dict[str, Any], target: str) -> str:
    """The source of the volume a service mounts at ``target``."""
    (source,) = [v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == target]
    return source


def test_the_sparkpipe_connection_is_created_in_the_metadata_database(compose: dict[str, Any]) -> None:
    """Not an AIRFLOW_CONN_ variable, which the UI does not show: airflow-init imports it."""
    services = compose["services"]
    for name, service in services.items():
        assert not [k for k in service.get("environment") or {} if k.startswith("AIRFLOW_CONN_")], name
    init = services["airflow-init"]
    path = "/opt/airflow/sparkpipe-connections.json"
    assert (REPO / _mounted(init, path)).resolve() == REPO / "docker" / "connections.json"
    command = init["command"][-1]
    # After the database is migrated (the entrypoint runs `airflow version` last), never overwriting.
    assert command.index("/entrypoint airflow version") < command.index(f"airflow connections import {path}")
    assert "--overwrite" not in command
    # The file as Airflow's importer reads it makes the runtime the examples use.
    from airflow.secrets.local_filesystem import load_connections_dict

    connection = load_connections_dict(str(REPO / "docker" / "connections.json"))["sparkpipe_default"]
    runtime = runtime_from_connection(connection)
    assert isinstance(runtime, LocalSpark) and runtime.master == "spark://spark-master:7077"


def _connection() -> dict[str, Any]:
    connections = json.loads((REPO / "docker" / "connections.json").read_text())
    assert list(connections) == ["sparkpipe_default"]
    return dict(connections["sparkpipe_default"])


def test_the_sparkpipe_connection_runs_on_the_cluster_and_sees_the_example_files(compose: dict[str, Any]) -> None:
    env = compose["services"]["airflow-scheduler"]["environment"]
    connection = _connection()
    assert connection["conn_type"] == "sparkpipe"
    runtime = runtime_from_dict(connection["extra"])
    assert isinstance(runtime, LocalSpark)
    assert runtime.master == "spark://spark-master:7077"
    assert runtime.conf["spark.driver.host"] == compose["services"]["airflow-scheduler"]["hostname"]
    # The example DAGs are mounted at /opt/airflow/dags on Airflow and on the Spark worker alike.
    data = env["SPARKPIPE_EXAMPLE_DATA"]
    assert data.startswith("/opt/airflow/dags/")
    assert (REPO / "dags_examples" / data.removeprefix("/opt/airflow/dags/") / "orders.csv").is_file()
    worker_mounts = compose["services"]["spark-worker"]["volumes"]
    assert "./dags_examples:/opt/airflow/dags:ro" in worker_mounts
    assert f"sparkpipe-output:{env['SPARKPIPE_EXAMPLE_OUTPUT']}" in worker_mounts


def test_the_links_open_from_the_browser_and_finished_runs_have_a_history(compose: dict[str, Any]) -> None:
    """The UI addresses in the connection are the host's published ports, not names only the containers
    resolve; the history server reads the event log folder the driver writes, on a volume they share."""
    services = compose["services"]
    runtime = runtime_from_dict(_connection()["extra"])
    assert isinstance(runtime, LocalSpark)
    published = {name: {p.split(":")[0]: p.split(":")[1] for p in s.get("ports", [])} for name, s in services.items()}
    assert runtime.master_ui_url == "http://localhost:8081" and published["spark-master"]["8081"] == "8080"
    assert runtime.history_server_url == "http://localhost:18080" and published["spark-history"]["18080"] == "18080"
    history = services["spark-history"]
    assert "org.apache.spark.deploy.history.HistoryServer" in history["command"]
    options = dict(o.removeprefix("-D").split("=", 1) for o in history["environment"]["SPARK_HISTORY_OPTS"].split())
    assert options["spark.history.fs.logDirectory"] == f"file://{runtime.event_log_dir}"
    volume = _mounted(history, str(runtime.event_log_dir))
    assert _mounted(services["airflow-scheduler"], str(runtime.event_log_dir)) == volume
    assert volume in compose["volumes"]


def test_the_cloud_examples_are_not_loaded(compose: dict[str, Any]) -> None:
    """Unpaused, a cloud example would fail every day: the DAG folder's .airflowignore, as mounted, leaves
    them out of the DagBag Airflow fills (the real one, on a copy of the folder)."""
    import shutil
    import tempfile

    from airflow.dag_processing.dagbag import DagBag

    ignore = _mounted(compose["services"]["airflow-scheduler"], "/opt/airflow/dags/.airflowignore")
    with tempfile.TemporaryDirectory() as folder:
        shutil.copytree(REPO / "dags_examples", folder, dirs_exist_ok=True)
        shutil.copy(REPO / ignore, Path(folder) / ".airflowignore")
        bag = DagBag(dag_folder=folder)
    assert bag.import_errors == {}
    assert sorted(bag.dags) == ["sparkpipe_basic", "sparkpipe_jdbc", "sparkpipe_region_report", "sparkpipe_templated"]


def test_cluster_and_driver_use_the_same_spark_version(compose: dict[str, Any]) -> None:
    dockerfile = (REPO / "docker" / "airflow.Dockerfile").read_text()
    (image_default,) = set(re.findall(r"SPARK_VERSION:-([\d.]+)", COMPOSE.read_text()))
    assert f"ARG SPARK_VERSION={image_default}" in dockerfile
    assert compose["x-airflow-common"]["build"]["args"]["SPARK_VERSION"] == f"${{SPARK_VERSION:-{image_default}}}"


def _seconds(duration: str) -> float:
    """A Compose duration (``1m30s``, ``45s``, ``500ms``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_health_checks_leave_time_for_the_airflow_cli(compose: dict[str, Any]) -> None:
    """`airflow jobs check` took 9-13 s under load: a check must not time out, nor overlap the next one."""
    checks = {name: s["healthcheck"] for name, s in compose["services"].items() if "healthcheck" in s}
    cli = {name for name, check in checks.items() if "airflow " in " ".join(check["test"])}
    assert cli == {"airflow-dag-processor", "airflow-triggerer"}
    airflow = {"airflow-apiserver", "airflow-scheduler", *cli}
    assert airflow <= set(checks)
    for name in airflow:
        check = checks[name]
        timeout, interval = _seconds(check["timeout"]), _seconds(check["interval"])
        assert interval > timeout, name
        assert _seconds(check["start_period"]) >= 60, f"{name}: Airflow takes long to start"
        if name in cli:
            assert timeout >= 2 * 13, f"{name}: a timeout of {timeout} s fails a 13 s check under load"
            assert _seconds(check["start_period"]) >= timeout, name


def test_the_auth_manager_is_installed_and_the_test_button_enabled(compose: dict[str, Any]) -> None:
    env = compose["x-airflow-common"]["environment"]
    assert env["AIRFLOW__CORE__TEST_CONNECTION"] == "Enabled"
    manager = env["AIRFLOW__CORE__AUTH_MANAGER"]
    provider = re.fullmatch(r"airflow\.providers\.(\w+)\..+", manager)
    if provider:  # an auth manager from a provider: the image must install that provider explicitly
        dockerfile = (REPO / "docker" / "airflow.Dockerfile").read_text()
        package = f"apache-airflow-providers-{provider.group(1).replace('_', '-')}"
        pip_install = dockerfile[dockerfile.index("RUN pip install") :]
        assert f'"{package}' in pip_install, f"{manager} needs {package} in docker/airflow.Dockerfile"
    else:  # Airflow's own Simple auth manager: the users must be configured
        assert manager == "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
    # The login the file's header documents is the one airflow-init creates (FAB's user creation).
    init = compose["services"]["airflow-init"]["environment"]
    user, password = init["_AIRFLOW_WWW_USER_USERNAME"], init["_AIRFLOW_WWW_USER_PASSWORD"]
    assert init["_AIRFLOW_WWW_USER_CREATE"] == "true" and provider and provider.group(1) == "fab"
    assert f"log in as user {user},\n#{' ' * 36}password {password}" in COMPOSE.read_text()
