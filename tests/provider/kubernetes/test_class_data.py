"""The Kubernetes image's class-data archive: the Dockerfile makes it (its command is run here with the
installed Spark in place of the image's), the SparkApplication names it in the driver's and executors'
``javaOptions``, and JVMs started with the pods' class paths map it."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from airflow_provider_sparkpipe.hooks.kubernetes_manifest import render_application
from airflow_provider_sparkpipe.runtimes import runtime_from_dict
from airflow_provider_sparkpipe.runtimes.kubernetes import CLASS_DATA_ARCHIVE, CLASS_DATA_CLASS_PATH, SparkKubernetes
from spark_job.engine import class_data
from tests.provider.kubernetes.conftest import runtime, schema_problems, submission
from tests.support import REPO, spark_home

CDS_NOTICE = re.compile(r"archive|class paths? mismatch", re.IGNORECASE)
"""What the JVM says about a class-data archive it cannot use."""

IMAGE_SPARK_HOME = "/opt/spark"
USE = f"-XX:SharedArchiveFile={CLASS_DATA_ARCHIVE}"


def dockerfile_command() -> list[str]:
    """The Dockerfile's ``RUN`` that makes the archive, as words."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("RUN ") and " class-data " in line]
    return shlex.split(line[len("RUN ") :])


def test_the_dockerfile_makes_the_archive_the_application_names() -> None:
    words = dockerfile_command()
    assert words[:4] == ["python3", "-m", "spark_job", "class-data"]
    assert words[words.index("--out") + 1] == CLASS_DATA_ARCHIVE
    assert words[words.index("--spark-home") + 1] == IMAGE_SPARK_HOME
    assert words[words.index("--conf") + 1] == f"spark.driver.extraClassPath={CLASS_DATA_CLASS_PATH}"
    assert f"{IMAGE_SPARK_HOME}/jars/*" == CLASS_DATA_CLASS_PATH
    # Made as root once the bundle is importable, before the image drops to the spark user.
    lines = (REPO / "Dockerfile").read_text().splitlines()
    made = next(i for i, line in enumerate(lines) if " class-data " in line)
    assert lines.index("ENV PYTHONPATH=/opt/sparkpipe/sparkpipe.zip") < made < lines.index("USER spark")


def test_the_application_names_the_archive_for_the_driver_and_the_executors(
    crd_validator: jsonschema.Draft7Validator,
) -> None:
    manifest = render_application(runtime(driver={"javaOptions": "-XX:+UseG1GC"}), submission(), "app-1", None)
    assert schema_problems(crd_validator, manifest) == []
    spec = manifest["spec"]
    quiet = " ".join(class_data.QUIET)
    assert spec["driver"]["javaOptions"] == f"{quiet} {USE} -XX:+UseG1GC"  # the user's options last: they win
    assert spec["executor"]["javaOptions"] == f"{quiet} {USE}"
    assert spec["sparkConf"]["spark.driver.extraClassPath"] == CLASS_DATA_CLASS_PATH
    # Spark's jars stay first when the user adds jars of their own.
    own = render_application(runtime(conf={"spark.driver.extraClassPath": "/jars/x.jar"}), submission(), "a", None)
    assert own["spec"]["sparkConf"]["spark.driver.extraClassPath"] == f"{CLASS_DATA_CLASS_PATH}:/jars/x.jar"


def test_options_that_choose_class_data_sharing_and_class_data_false_are_left_alone(
    crd_validator: jsonschema.Draft7Validator,
) -> None:
    chosen = runtime(driver={"javaOptions": "-Xshare:off"}, conf={"spark.executor.extraJavaOptions": "-Xshare:off"})
    spec = render_application(chosen, submission(), "app-1", None)["spec"]
    assert spec["driver"]["javaOptions"] == "-Xshare:off" and "javaOptions" not in spec["executor"]
    assert "spark.driver.extraClassPath" not in spec["sparkConf"]
    off = runtime_from_dict({"runtime": "kubernetes", "namespace": "n", "image": "i", "class_data": "false"})
    assert isinstance(off, SparkKubernetes) and off.class_data is False
    manifest = render_application(off, submission(), "app-1", None)
    assert schema_problems(crd_validator, manifest) == []
    assert "javaOptions" not in manifest["spec"]["driver"] and "javaOptions" not in manifest["spec"]["executor"]
    assert "spark.driver.extraClassPath" not in manifest["spec"]["sparkConf"]


@pytest.fixture(scope="module")
def image_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The Dockerfile's command run with the installed Spark: (the archive, the configuration folder the
    operator mounts at run time, absent at build time as in the image)."""
    folder = tmp_path_factory.mktemp("image")
    home = str(spark_home())
    words = [w.replace(IMAGE_SPARK_HOME, home) for w in dockerfile_command()]
    words[words.index("--out") + 1] = str(folder / "spark.jsa")
    conf_dir = folder / "conf"
    env = {**os.environ, "SPARK_CONF_DIR": str(conf_dir)}
    kept = [o for o in env.get("SPARK_SUBMIT_OPTS", "").split() if not class_data.names_an_archive(o)]
    env["SPARK_SUBMIT_OPTS"] = " ".join(o for o in kept if not o.startswith("-Xlog:"))  # not the harness's
    done = subprocess.run([sys.executable, *words[1:]], cwd=folder, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.strip() == str(folder / "spark.jsa") and class_data.is_archive(folder / "spark.jsa")
    conf_dir.mkdir()
    (conf_dir / "spark.properties").write_text("spark.app.name=sparkpipe\n")  # what the operator mounts
    return folder / "spark.jsa", conf_dir


def shared(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if "shared objects file (top)" in line]


def test_the_pods_driver_maps_the_archive_past_the_mounted_configuration(
    image_archive: tuple[Path, Path], tmp_path: Path
) -> None:
    """The driver's spark-submit with the manifest's options (``-Xshare:on``: a mismatch would stop it)."""
    archive, conf_dir = image_archive
    home = spark_home()
    log = tmp_path / "classes.log"
    options = [*class_data.use_options(archive), "-Xshare:on", f"-Xlog:class+load=info:file={log}"]
    command = [
        str(home / "bin" / "spark-submit"),
        "--conf", f"spark.driver.extraClassPath={CLASS_DATA_CLASS_PATH.replace(IMAGE_SPARK_HOME, str(home))}",
        "--driver-java-options", " ".join(options),
        "--version",
    ]  # fmt: skip
    env = {**os.environ, "SPARK_CONF_DIR": str(conf_dir), "SPARK_SUBMIT_OPTS": ""}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(shared(log)) > 1000
    assert any(re.search(r"org\.apache\.spark\.deploy\.SparkSubmit ", line) for line in shared(log))


def test_an_executor_maps_it_without_the_configuration_folder_and_starts_plainly_with_it(
    image_archive: tuple[Path, Path], tmp_path: Path
) -> None:
    """An executor's class path is the image entry point's: ``$SPARK_CONF_DIR::$SPARK_HOME/jars/*:``."""
    archive, conf_dir = image_archive
    jars = f"{spark_home()}/jars/*"
    main = ["org.apache.spark.deploy.SparkSubmit", "--version"]
    log = tmp_path / "classes.log"
    absent = tmp_path / "conf-absent"  # spark.kubernetes.executor.disableConfigMap: no folder mounted
    strict = [*class_data.use_options(archive), "-Xshare:on", f"-Xlog:class+load=info:file={log}"]
    done = subprocess.run(["java", *strict, "-cp", f"{absent}::{jars}:", *main], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(shared(log)) > 1000
    # With the folder mounted ahead of the jars the JVM cannot use it, and says nothing about it.
    plain = subprocess.run(
        ["java", *class_data.use_options(archive), "-cp", f"{conf_dir}::{jars}:", *main], capture_output=True, text=True
    )
    assert plain.returncode == 0 and "version" in plain.stderr and not CDS_NOTICE.search(plain.stderr)
