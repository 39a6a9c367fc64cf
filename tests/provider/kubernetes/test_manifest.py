"""SparkKubernetes rendering: SparkApplications the CRD accepts, names Kubernetes accepts, secrets as references."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import jsonschema
import pytest

from airflow_provider_sparkpipe.exceptions import SparkRuntimeError
from airflow_provider_sparkpipe.hooks.base import hook_class_of
from airflow_provider_sparkpipe.hooks.kubernetes_manifest import (
    application_name,
    config_digest,
    credentials_secret_name,
    render_application,
    render_config_map,
    render_credentials_secret,
)
from airflow_provider_sparkpipe.runtimes import runtime_from_dict
from airflow_provider_sparkpipe.runtimes.kubernetes import SparkKubernetes
from tests.provider.kubernetes.conftest import runtime, schema_problems, submission
from tests.support import REPO

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

RUNTIMES = {
    "defaults": runtime(),
    "everything": runtime(
        service_account="spark",
        driver={"cores": "2", "memory": "2g", "nodeSelector": {"pool": "spark"}, "coreLimit": "2000m"},
        executor={"instances": 4, "cores": 2, "memory": "4g", "tolerations": [{"key": "spot", "operator": "Exists"}]},
        conf={"spark.eventLog.enabled": True, "spark.sql.shuffle.partitions": 64},
        env={"TZ": "UTC"},
        secret_env={"PG_PASSWORD": "pg-credentials/password"},
        env_from_secrets=["s3-credentials"],
        staging_uri="s3://bucket/sparkpipe",
        image_pull_policy="Always",
        image_pull_secrets=["registry"],
        labels={"team": "data"},
        time_to_live_s=3600,
    ),
}


CREDENTIALS = {"SPARKPIPE_CONN_SHOP_DB_USER": "loader-9Xq", "SPARKPIPE_CONN_SHOP_DB_PASSWORD": "pw-4kT9!x"}


@pytest.mark.parametrize("credentials", [False, True], ids=["", "with-credentials"])
@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_rendered_applications_validate_against_the_crd(
    name: str, credentials: bool, crd_validator: jsonschema.Draft7Validator
) -> None:
    sub = submission(environment=CREDENTIALS if credentials else None)
    app_name = application_name(sub.task_key)
    manifest = render_application(RUNTIMES[name], sub, app_name, "s3://bucket/sparkpipe/m.json")
    assert schema_problems(crd_validator, manifest) == []
    assert ("envFrom" in manifest["spec"]["driver"]) == (credentials or bool(RUNTIMES[name].env_from_secrets))


def test_the_strict_schema_catches_a_misspelt_field(crd_validator: jsonschema.Draft7Validator) -> None:
    manifest = render_application(runtime(driver={"memroy": "1g"}), submission(), "app-1", None)
    assert schema_problems(crd_validator, manifest) == [
        "spec.driver: Additional properties are not allowed ('memroy' was unexpected)"
    ]


def test_the_application_runs_the_image_driver_on_the_mounted_config() -> None:
    manifest = render_application(RUNTIMES["everything"], submission(), "app-1", "s3://bucket/m.json")
    spec = manifest["spec"]
    assert (spec["type"], spec["mode"], spec["mainApplicationFile"]) == (
        "Python",
        "cluster",
        "local:///opt/sparkpipe/sparkpipe_main.py",
    )
    assert spec["deps"] == {"pyFiles": ["local:///opt/sparkpipe/sparkpipe.zip"]}
    assert spec["arguments"] == ["run", "--config", "/etc/sparkpipe/config.json", "--metrics-out", "s3://bucket/m.json"]
    assert spec["volumes"] == [{"name": "sparkpipe-config", "configMap": {"name": "app-1-config"}}]
    assert {"name": "sparkpipe-config", "mountPath": "/etc/sparkpipe", "readOnly": True} in spec["driver"][
        "volumeMounts"
    ]
    assert spec["restartPolicy"] == {"type": "Never"}
    # The runtime's Spark properties, then the config's own spark_conf over them (and the class path the
    # image's class-data archive was made for).
    assert spec["sparkConf"] == {
        "spark.eventLog.enabled": "true",
        "spark.sql.shuffle.partitions": "4",
        "spark.driver.extraClassPath": "/opt/spark/jars/*",
    }
    assert (spec["driver"]["cores"], spec["executor"]["instances"], spec["executor"]["memory"]) == (2, 4, "4g")


def test_labels_identify_the_task_and_are_valid_label_values() -> None:
    manifest = render_application(runtime(labels={"team": "data"}), submission(try_number=3), "app-1", None)
    labels = manifest["metadata"]["labels"]
    assert labels == {
        "team": "data",
        "dag_id": "sparkpipe_kubernetes",
        "task_id": "shop_summary",
        "run_id": "manual__2024-01-15T00_00_00_00_00",
        "try_number": "3",
        "app.kubernetes.io/managed-by": "sparkpipe",
    }
    assert manifest["spec"]["driver"]["labels"] == labels == manifest["spec"]["executor"]["labels"]
    assert manifest["metadata"]["annotations"]["sparkpipe/run-id"] == "manual__2024-01-15T00:00:00+00:00"


def test_secrets_stay_references_and_come_from_kubernetes_secrets() -> None:
    rt = RUNTIMES["everything"]
    config_map = render_config_map(rt, submission(), "app-1", owner_uid="uid-1")
    config = json.loads(config_map["data"]["config.json"])
    assert config["sequences"][1]["target"]["password"] == "${env:PG_PASSWORD}"
    assert config_map["metadata"]["ownerReferences"] == [
        {"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication", "name": "app-1", "uid": "uid-1"}
    ]
    env = render_application(rt, submission(), "app-1", None)["spec"]["driver"]["env"]
    assert {"name": "PG_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "pg-credentials", "key": "password"}}} in env


def test_credentials_reach_only_the_driver_by_a_secret_reference() -> None:
    rt = RUNTIMES["everything"]
    plain = render_application(rt, submission(), "app-1", None)
    manifest = render_application(rt, submission(environment=CREDENTIALS), "app-1", None)
    # Added after the runtime's own Secrets (the last envFrom source wins a name both hold).
    assert manifest["spec"]["driver"]["envFrom"] == [
        {"secretRef": {"name": "s3-credentials"}},
        {"secretRef": {"name": "app-1-credentials"}},
    ]
    assert manifest["spec"]["executor"] == plain["spec"]["executor"]
    assert {k: v for k, v in manifest["spec"]["driver"].items() if k != "envFrom"} == {
        k: v for k, v in plain["spec"]["driver"].items() if k != "envFrom"
    }
    # The digest covers the config, whose references stay references: the values change nothing.
    assert manifest["metadata"] == plain["metadata"]
    assert manifest["metadata"]["annotations"]["sparkpipe/config-digest"] == config_digest(submission().document)
    config_map = render_config_map(rt, submission(environment=CREDENTIALS), "app-1", "uid-1")
    for rendered in (manifest, config_map):
        text = json.dumps(rendered)
        assert not [v for v in CREDENTIALS.values() if v in text]


def test_the_credentials_secret_holds_base64_data_and_belongs_to_the_application() -> None:
    rt = runtime(labels={"team": "data"})
    sub = submission(environment={"A_USER": "", "A_PASSWORD": "pä$$"})
    secret = render_credentials_secret(rt, sub, "app-1", "uid-1")
    config_map = render_config_map(rt, sub, "app-1", "uid-1")
    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {**config_map["metadata"], "name": "app-1-credentials"},
        "type": "Opaque",
        "data": {"A_USER": "", "A_PASSWORD": "cMOkJCQ="},
    }
    assert secret["metadata"]["ownerReferences"] == [
        {"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication", "name": "app-1", "uid": "uid-1"}
    ]
    assert secret["metadata"]["labels"]["team"] == "data"


def test_environment_names_that_are_no_variable_names_are_refused() -> None:
    with pytest.raises(SparkRuntimeError, match="cannot hand '1_PW', 'MY-PW' to the driver"):
        render_credentials_secret(runtime(), submission(environment={"MY-PW": "x", "1_PW": "y", "OK": "z"}), "a", None)


def test_application_names_are_deterministic_short_dns_labels() -> None:
    key = submission().task_key
    assert application_name(key) == application_name(key) == "sparkpipe-kubernetes-shop-summary-manual-87712b3b"
    long_key = "A_very_long_dag_id_" * 10 + "__task__scheduled__2024-01-15T00_00_00_00_00__-1"
    for task_key in (key, long_key, "9_starts_with_a_digit__t__r__-1", long_key + "x"):
        name = application_name(task_key)
        assert DNS_LABEL.match(name) and len(name) <= 49 and len(f"{name}-driver") <= 63, name
        assert DNS_LABEL.match(credentials_secret_name(name)) and len(credentials_secret_name(name)) <= 63, name
    assert application_name(long_key) != application_name(long_key + "x")


def test_runtime_from_connection_extras_and_its_round_trip() -> None:
    extras = {
        "runtime": "kubernetes",
        "namespace": "spark-jobs",
        "image": "img:1",
        "executor": '{"instances": 3, "memory": "2g"}',
        "secret_env": '{"PG_PASSWORD": "pg/password"}',
        "image_pull_secrets": "registry",
        "delete_on_success": "true",
        "time_to_live_s": "600",
    }
    built = runtime_from_dict(extras)
    assert isinstance(built, SparkKubernetes)
    assert built.executor == {"instances": 3, "cores": 1, "memory": "2g"}
    assert (built.image_pull_secrets, built.delete_on_success, built.time_to_live_s) == (("registry",), True, 600)
    assert runtime_from_dict(built.to_dict()) == built
    assert hook_class_of(built).supports_deferral and hook_class_of(built).passes_environment


@pytest.mark.parametrize(
    ("extras", "message"),
    [
        ({"image": "i"}, "missing 1 required positional argument: 'namespace'"),
        ({"namespace": "n", "image": "i", "executor": {"memory": "lots"}}, "executor.memory must be a size"),
        ({"namespace": "n", "image": "i", "driver": {"cores": 0}}, "driver.cores must be at least 1"),
        ({"namespace": "n", "image": "i", "secret_env": {"PW": "no-key"}}, "must map an environment variable"),
        ({"namespace": "n", "image": "i", "imagee": "x"}, "did you mean 'image'?"),
    ],
)
def test_invalid_settings_name_the_setting(extras: dict, message: str) -> None:
    with pytest.raises(SparkRuntimeError, match=re.escape(message)):
        runtime_from_dict({"runtime": "kubernetes", **extras})


def test_the_dockerfile_copies_files_that_exist() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    sources = [
        word
        for line in dockerfile.splitlines()
        if line.startswith("COPY") and "--from=" not in line
        for word in line.split()[1:-1]
        if not word.startswith("--")
    ]
    assert sources == ["spark_job"]
    assert all((REPO / s).exists() for s in sources)
    assert "python -m spark_job bundle --out /bundle" in dockerfile
    # The manifest's entry file and zip are where the image puts them.
    assert "/opt/sparkpipe/sparkpipe_main.py" in dockerfile and "/opt/sparkpipe/sparkpipe.zip" in dockerfile


def test_the_example_dag_parses_without_the_kubernetes_client() -> None:
    code = (
        "import sys, runpy\n"
        f"runpy.run_path({str(REPO / 'dags_examples' / 'example_sparkpipe_kubernetes.py')!r})\n"
        "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'kubernetes_asyncio')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "LOADED []" in done.stdout
