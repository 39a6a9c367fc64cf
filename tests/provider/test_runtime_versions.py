"""What the runtimes run: the version tables, the refusals of versions the driver does not run on (as
runtime objects and through a ``sparkpipe`` connection), the defaults, and the driver image.

The driver runs on Spark 3.5.x and 4.x with Python 3.9 to 3.13 (``tests/test_versions.py`` shows it);
each runtime names, checks and defaults to versions inside that range.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml
from airflow.sdk import Connection

from airflow_provider_sparkpipe.exceptions import SparkRuntimeError
from airflow_provider_sparkpipe.runtimes import (
    DataprocCluster,
    DataprocServerless,
    EmrCluster,
    EmrOnEks,
    EmrServerless,
    SparkKubernetes,
    runtime_from_connection,
)
from airflow_provider_sparkpipe.runtimes.emr import EMR_PYTHON, driver_interpreter
from airflow_provider_sparkpipe.runtimes.kubernetes import DEFAULT_SPARK_VERSION
from airflow_provider_sparkpipe.runtimes.versions import (
    DATAPROC_IMAGES,
    DATAPROC_SERVERLESS_RUNTIMES,
    DRIVER_PYTHON,
    DRIVER_SPARK,
    EMR_RELEASES,
    SUPPORTED,
    VersionTable,
    check_spark_version,
    python_supported,
)
from tests.support import REPO

TABLES = {"dataproc image": DATAPROC_IMAGES, "serverless runtime": DATAPROC_SERVERLESS_RUNTIMES, "emr": EMR_RELEASES}
ROLE = "arn:aws:iam::123456789012:role/sparkpipe-job"
GCP = {"project_id": "acme", "region": "europe-west1", "staging_uri": "gs://acme-staging/sparkpipe"}

# The apache/spark Python images apache/spark-docker publishes (its versions.json): Spark 3.5 with
# Scala 2.12, Spark 4 with Scala 2.13, Java 17 (and 11 or 21); all built on Ubuntu 22.04, whose python3
# is 3.10.
PUBLISHED_SPARK_IMAGES = {
    "2.12": [f"3.5.{n}" for n in range(9)],
    "2.13": [f"4.0.{n}" for n in range(4)] + [f"4.1.{n}" for n in range(3)],
}
APACHE_SPARK_IMAGE_PYTHON = (3, 10)


def connection(extra: dict[str, Any]) -> Connection:
    return Connection(conn_id="prod_spark", conn_type="sparkpipe", extra=json.dumps(extra))


# The tables. ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", TABLES.values(), ids=TABLES.keys())
def test_each_table_is_ordered_and_says_what_its_versions_run(table: VersionTable) -> None:
    sinces = [line.since for line in table.lines]
    assert sinces == sorted(sinces) and len(set(sinces)) == len(sinces)
    for line in table.lines:
        assert line.python in line.pythons
        assert list(line.pythons) == sorted(line.pythons, key=lambda p: tuple(map(int, p.split("."))))
        # The newest version named for a line reads as a version of that very line.
        assert table.line_of("version", line.newest) == line
        if line.supported:
            assert python_supported(line.python), line  # the default Python is one the driver runs on
    assert table.check("version", table.example).supported
    assert table.lines[-1].supported  # the newest line the service offers runs the driver
    assert table.source


@pytest.mark.parametrize(
    ("table", "version", "spark", "python"),
    [
        (DATAPROC_IMAGES, "2.2", "3.5.3", "3.11"),
        (DATAPROC_IMAGES, "2.3-debian12", "3.5.3", "3.11"),
        (DATAPROC_IMAGES, "2.3.20-ubuntu22", "3.5.3", "3.11"),
        (DATAPROC_IMAGES, "3.0-rocky9", "4.0.0", "3.11"),
        (DATAPROC_SERVERLESS_RUNTIMES, "1.2", "3.5.1", "3.12"),
        (DATAPROC_SERVERLESS_RUNTIMES, "2.2", "3.5.1", "3.12"),
        (DATAPROC_SERVERLESS_RUNTIMES, "2.3", "3.5.3", "3.11"),
        (DATAPROC_SERVERLESS_RUNTIMES, "3.0.0-RC6", "4.0.0", "3.12"),
        (EMR_RELEASES, "emr-7.0.0", "3.5.0", "3.9"),
        (EMR_RELEASES, "emr-7.2.0-latest", "3.5.6", "3.11"),
        (EMR_RELEASES, "emr-7.13.0-20260421", "3.5.6", "3.11"),
        (EMR_RELEASES, "emr-spark-8.0.0", "4.0.2", "3.11"),
        (EMR_RELEASES, "emr-spark-8.0-preview", "4.0.2", "3.11"),
        (EMR_RELEASES, "emr-spark-8.0.0-latest", "4.0.2", "3.11"),
    ],
)
def test_supported_versions_and_what_they_run(table: VersionTable, version: str, spark: str, python: str) -> None:
    line = table.check("version", version)
    assert (line.spark, line.python) == (spark, python)


@pytest.mark.parametrize(
    ("table", "version", "line_since"),
    [
        (DATAPROC_IMAGES, "3.4.1-debian13", (3, 0)),
        (DATAPROC_SERVERLESS_RUNTIMES, "3.1", (3, 0)),
        (DATAPROC_SERVERLESS_RUNTIMES, "2.4", (2, 3)),
        (EMR_RELEASES, "emr-7.20.0", (7, 1)),
        (EMR_RELEASES, "emr-spark-9.0.0-latest", (8, 0)),
    ],
)
def test_a_version_newer_than_the_table_is_taken_for_one_of_the_newest_line(
    table: VersionTable, version: str, line_since: tuple[int, int]
) -> None:
    """The service's next release works without a sparkpipe upgrade: it runs at least what its line does."""
    assert table.check("version", version).since == line_since


# Refusals: the runtime objects (a DAG file's import error) and the connection's extras. -------------


def cluster(**settings: Any) -> dict[str, Any]:
    return {"runtime": "dataproc_cluster", **GCP, "cluster_name": "etl", **settings}


def serverless(**settings: Any) -> dict[str, Any]:
    return {"runtime": "dataproc_serverless", **GCP, **settings}


def emr(kind: str, **settings: Any) -> dict[str, Any]:
    required = {
        "emr_cluster": {"job_flow_id": "j-1"},
        "emr_serverless": {"application_id": "00abc", "execution_role_arn": ROLE},
        "emr_on_eks": {"virtual_cluster_id": "vc1", "execution_role_arn": ROLE},
    }[kind]
    return {"runtime": kind, **required, "staging_uri": "s3://stage", **settings}


def kubernetes(**settings: Any) -> dict[str, Any]:
    return {"runtime": "kubernetes", "namespace": "spark", "image": "i", **settings}


REFUSED: list[tuple[dict[str, Any], str]] = [
    (cluster(image_version="2.1"), "image_version '2.1' runs Spark 3.3, Python 3.10"),
    (cluster(image_version="2.0-debian10"), "image_version '2.0-debian10' runs Spark 3.1, Python 3.8"),
    (cluster(image_version="0.9"), "image_version '0.9' is older than every Dataproc image sparkpipe knows"),
    (cluster(image_version="latest"), "image_version 'latest' is not a Dataproc image version such as '2.3'"),
    (serverless(runtime_version="2.1"), "runtime_version '2.1' runs Spark 3.4, Python 3.11"),
    (serverless(runtime_version="2.0"), "runtime_version '2.0' runs Spark 3.3, Python 3.10"),
    (serverless(runtime_version="1.1.86"), "runtime_version '1.1.86' runs Spark 3.3, Python 3.10"),
    (serverless(runtime_version=2.3), "runtime_version must be a string such as '2.3' (quoted in JSON), not the float"),
    (emr("emr_cluster", release_label="emr-6.15.0"), "release_label 'emr-6.15.0' runs Spark 3.4, Python 3.7"),
    (emr("emr_serverless", release_label="emr-5.36.0"), "release_label 'emr-5.36.0' runs Spark 2.4, Python 3.7"),
    (emr("emr_on_eks", release_label="emr-6.2.0-latest"), "release_label 'emr-6.2.0-latest' runs Spark 3.4"),
    (emr("emr_on_eks", release_label="7.2"), "release_label '7.2' is not an EMR release version such as 'emr-7.13.0'"),
    (
        emr("emr_on_eks", release_label="emr-7.0.0-latest", python="3.11"),
        "python '3.11': release 'emr-7.0.0-latest' installs Python 3.9 only; choose one of them or leave python unset",
    ),
    (emr("emr_serverless", python="3.8"), "python '3.8': the sparkpipe driver needs"),
    (emr("emr_cluster", python=3.11), "python must be a string such as '3.11' (quoted in JSON)"),
    (kubernetes(spark_version="3.4.4"), "spark_version '3.4.4' is older than the sparkpipe driver supports"),
    (kubernetes(spark_version="four"), "spark_version 'four' is not a Spark version such as '4.1.2'"),
]


@pytest.mark.parametrize(("extra", "message"), REFUSED, ids=[f"{e['runtime']}-{i}" for i, (e, _) in enumerate(REFUSED)])
def test_a_version_the_driver_does_not_run_on_is_refused_naming_the_setting_and_the_range(
    extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(SparkRuntimeError) as raised:
        runtime_from_connection(connection(extra))
    assert str(raised.value).startswith("connection 'prod_spark': ")
    assert message in str(raised.value)
    if "python" not in extra and extra["runtime"] != "kubernetes":  # a service version: the supported ones named
        assert re.search(r"use a supported [\w ]+, e\.g\. ", str(raised.value))
    assert SUPPORTED in str(raised.value)
    # The same settings as a runtime object in a DAG file: the ValueError is the DAG's import error.
    cls = type(runtime_from_connection(connection({**extra, **_supported_versions(extra)})))
    settings = {k: v for k, v in extra.items() if k != "runtime"}
    with pytest.raises(ValueError, match=re.escape(message)):
        cls(**settings)


def _supported_versions(extra: dict[str, Any]) -> dict[str, Any]:
    """The same runtime with supported versions (to learn its class from the connection)."""
    replaced = {"image_version": "2.3", "runtime_version": "2.3", "spark_version": "4.1.2", "python": "3.11"}
    fixed = {k: v for k, v in replaced.items() if k in extra}
    if "release_label" in extra:
        fixed["release_label"] = "emr-7.13.0-latest"
    return fixed


def test_an_unreadable_version_is_refused_on_every_runtime_that_takes_one() -> None:
    for build in (
        lambda: DataprocCluster(**GCP, cluster_name="etl", image_version="two"),
        lambda: DataprocServerless(**GCP, runtime_version="v2"),
        lambda: EmrCluster(job_flow_id="j-1", staging_uri="s3://stage", release_label="7.13.0"),
        lambda: EmrServerless("00abc", ROLE, "s3://stage", release_label="emr7"),
        lambda: EmrOnEks("vc1", ROLE, "latest", "s3://stage"),
        lambda: SparkKubernetes(namespace="n", image="i", spark_version="latest"),
    ):
        with pytest.raises(ValueError, match=r"is not an? [\w ]+version such as '[\w.-]+'"):
            build()


# Defaults. -----------------------------------------------------------------------------------------


def test_the_defaults_are_versions_the_driver_runs_on() -> None:
    serverless = DataprocServerless(**GCP)
    assert serverless.runtime_version == "2.3"
    assert DATAPROC_SERVERLESS_RUNTIMES.check("runtime_version", serverless.runtime_version).supported
    kubernetes = SparkKubernetes(namespace="n", image="i")
    assert kubernetes.spark_version == DEFAULT_SPARK_VERSION
    assert check_spark_version("spark_version", kubernetes.spark_version) >= DRIVER_SPARK
    # The driver's Python on each supported EMR line, when the runtime names none.
    for line in EMR_RELEASES.lines:
        if line.supported:
            interpreter = driver_interpreter(None, line)
            assert interpreter == EMR_PYTHON.format(version=line.python)
            assert DRIVER_PYTHON[0] <= tuple(map(int, line.python.split("."))) <= DRIVER_PYTHON[1]
    # A runtime that states nothing is valid: what a cluster runs is checked when a run starts.
    assert EmrCluster(job_flow_name="etl", staging_uri="s3://stage").release_label is None
    assert DataprocCluster(**GCP, cluster_name="etl").image_version is None


# The driver image. ---------------------------------------------------------------------------------


def dockerfile_args() -> dict[str, str]:
    """The Dockerfile's ``ARG`` defaults, ``${...}`` resolved."""
    args: dict[str, str] = {}
    for name, value in re.findall(r"^ARG (\w+)=(\S+)$", (REPO / "Dockerfile").read_text(), re.MULTILINE):
        args[name] = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], value)
    return args


def test_the_driver_image_is_an_official_apache_spark_image_of_a_supported_spark() -> None:
    args = dockerfile_args()
    match = re.fullmatch(
        r"apache/spark:(?P<spark>\d+\.\d+\.\d+)-scala(?P<scala>2\.1[23])-java(17|21)-python3-ubuntu",
        args["SPARK_IMAGE"],
    )
    assert match, args["SPARK_IMAGE"]
    assert match.group("spark") == args["SPARK_VERSION"]
    assert args["SPARK_VERSION"] in PUBLISHED_SPARK_IMAGES[match.group("scala")], "no such apache/spark image"
    assert check_spark_version("SPARK_VERSION", args["SPARK_VERSION"]) >= DRIVER_SPARK
    # SparkKubernetes' spec.sparkVersion is the image's Spark unless told otherwise.
    assert SparkKubernetes(namespace="n", image="i").spark_version == args["SPARK_VERSION"] == DEFAULT_SPARK_VERSION


def python_check_of_the_image() -> str:
    (code,) = re.findall(r"^RUN python3 -c '(.+)'$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    return code


@pytest.mark.parametrize(
    ("version", "passes"),
    [
        (APACHE_SPARK_IMAGE_PYTHON, True),
        (DRIVER_PYTHON[0], True),
        (DRIVER_PYTHON[1], True),
        ((3, 8), False),
        ((3, 14), False),
    ],
)
def test_the_images_python_check_accepts_exactly_the_drivers_pythons(version: tuple[int, int], passes: bool) -> None:
    """The Dockerfile's own check, run by a Python that says it is ``version``: the base image's Python
    (3.10) passes, as do the driver's bounds; others stop the build with a message."""
    code = f"import sys; sys.version_info = ({version[0]}, {version[1]}, 0, 'final', 0)\n" + python_check_of_the_image()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (done.returncode == 0) is passes, done.stderr
    if not passes:
        assert "the driver runs on Python 3.9 to 3.13" in done.stderr and "choose another SPARK_IMAGE" in done.stderr


def test_the_image_holds_the_spark_it_names() -> None:
    """Built with another SPARK_IMAGE, the image must still hold the Spark that SPARK_VERSION (and the
    SparkApplication's sparkVersion) names: the build checks Spark's own jar."""
    text = (REPO / "Dockerfile").read_text()
    final = text[text.index("FROM ${SPARK_IMAGE}") :]
    assert "ARG SPARK_VERSION\n" in final  # in scope after FROM
    assert 'ls /opt/spark/jars/spark-core_*-"${SPARK_VERSION}".jar' in final


def test_the_compose_cluster_runs_the_drivers_spark_too() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    (version,) = set(re.findall(r"SPARK_VERSION:-([\d.]+)", (REPO / "docker-compose.yaml").read_text()))
    assert version == dockerfile_args()["SPARK_VERSION"]
    assert version in PUBLISHED_SPARK_IMAGES["2.13"]  # the cluster images are apache/spark's Scala 2.13 ones
    for service in ("spark-master", "spark-worker"):
        assert (
            compose["services"][service]["image"]
            == "apache/spark:${SPARK_VERSION:-" + version + "}-scala2.13-java17-ubuntu"
        )
