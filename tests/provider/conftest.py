"""Fixtures for the provider tests: a temporary AIRFLOW_HOME with a migrated metadata database, a way
to run DAGs with Airflow's own ``dag.test()`` in a fresh process, and a Spark standalone cluster.

Airflow reads its configuration when it is first imported, so the environment is set here, when
pytest loads this file and before any test imports Airflow; child processes inherit it. What the tests
import (paths, readers of outputs, ``DagRunner``, the history server) is in ``support.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.provider.support import EXAMPLES, PYTHON, TEST_DAGS, DagRunner, SparkCluster, start_spark, stop
from tests.support import free_port, spark_home

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


@pytest.fixture(scope="session")
def dag_runner(airflow_home: Path, tmp_path_factory: pytest.TempPathFactory) -> DagRunner:
    return DagRunner(tmp_path_factory.mktemp("dag-runs"))


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    """A Spark standalone master and one worker (1 core, 1 GiB) on 127.0.0.1, from the installed pyspark."""
    root = tmp_path_factory.mktemp("spark-standalone")
    port, webui, worker_webui = free_port(), free_port(), free_port()
    env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1"}
    master = start_spark(
        [
            "org.apache.spark.deploy.master.Master",
            *("--host", "127.0.0.1", "--port", str(port), "--webui-port", str(webui)),
        ],
        root / "master.log",
        env,
    )
    worker = start_spark(
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
        stop(worker)
        stop(master)
