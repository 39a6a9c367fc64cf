"""The Kubernetes objects of one pipeline run: the Spark operator's ``SparkApplication``, the ConfigMap
holding ``config.json`` and the Secret holding the driver's credentials.

Pure functions of a runtime and a submission (no client, no API call), kept apart from the hook that
creates, follows and deletes the objects, as the cncf.kubernetes provider keeps its
``custom_object_launcher`` apart from its operator.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from airflow_provider_sparkpipe.exceptions import SparkRuntimeError
from airflow_provider_sparkpipe.runs import PipelineSubmission
from airflow_provider_sparkpipe.runtimes.base import spark_str
from airflow_provider_sparkpipe.runtimes.kubernetes import CLASS_DATA_ARCHIVE, CLASS_DATA_CLASS_PATH, SparkKubernetes
from spark_job.engine import class_data

GROUP = "sparkoperator.k8s.io"
VERSION = "v1beta2"
PLURAL = "sparkapplications"
API_VERSION = f"{GROUP}/{VERSION}"

CONFIG_DIR = "/etc/sparkpipe"
CONFIG_FILE = "config.json"
CONFIG_VOLUME = "sparkpipe-config"
DRIVER_CONTAINER = "spark-kubernetes-driver"
"""The name the Spark operator gives the driver's container."""

ANNOTATION = "sparkpipe/"
MANAGED_BY = {"app.kubernetes.io/managed-by": "sparkpipe"}
_MAX_NAME = 49  # <name>-driver, <name>-config and <name>-credentials: Kubernetes names stop at 63 characters
_MAX_CONFIG_MAP_BYTES = 1_000_000  # a ConfigMap holds at most 1 MiB
_SECRET_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # an environment variable name (also a valid Secret key)


def application_name(task_key: str) -> str:
    """The SparkApplication's name for one task instance: the same for every attempt.

    A DNS-1123 label that starts with a letter, at most 49 characters (so ``<name>-driver``, the
    ConfigMap ``<name>-config`` and the Secret ``<name>-credentials`` stay valid names of at most 63
    characters): a readable slug of the task key and a hash of it.
    """
    digest = hashlib.sha256(task_key.encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9]+", "-", task_key.lower()).strip("-")
    if not slug[:1].isalpha():
        slug = f"sp-{slug}"
    slug = slug[: _MAX_NAME - len(digest) - 1].rstrip("-")
    return f"{slug}-{digest}"


def config_map_name(name: str) -> str:
    return f"{name}-config"


def credentials_secret_name(name: str) -> str:
    """The Secret holding the submission's ``environment`` (connection credentials) for the driver."""
    return f"{name}-credentials"


def config_digest(document: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


def render_application(
    runtime: SparkKubernetes,
    submission: PipelineSubmission,
    name: str,
    metrics_uri: str | None = None,
    state_uri: str | None = None,
) -> dict[str, Any]:
    """The ``sparkoperator.k8s.io/v1beta2`` SparkApplication that runs one submission.

    ``state_uri``: the task instance's commit log in the staging area (``--state-dir``), with the
    submission's ``resume_key`` as ``--run-key``; without staging there is no place kept across tries.
    """
    labels = {**runtime.labels, **_labels(submission), **MANAGED_BY}
    annotations = {
        **{f"{ANNOTATION}{k.replace('_', '-')}": str(v) for k, v in submission.labels.items()},
        f"{ANNOTATION}task-key": submission.task_key,
        f"{ANNOTATION}try-number": str(submission.try_number),
        f"{ANNOTATION}config-digest": config_digest(submission.document),
    }
    arguments = ["run", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"]
    if metrics_uri:
        arguments += ["--metrics-out", metrics_uri]
        annotations[f"{ANNOTATION}metrics-uri"] = metrics_uri
    arguments += submission.resume_arguments(state_uri)
    spark_conf = dict(submission.document.get("spark_conf") or {})
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in runtime.env.items()]
    env += [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": ref.split("/", 1)[0], "key": ref.split("/", 1)[1]}}}
        for k, ref in runtime.secret_env.items()
    ]
    env_from = [{"secretRef": {"name": secret}} for secret in runtime.env_from_secrets]
    driver = _pod_spec(runtime.driver, labels, env, env_from)
    if submission.environment:
        # Only the driver: it resolves the config's ${env:...} references when it loads it; executors
        # receive the values inside Spark's JDBC options.
        driver["envFrom"] = [*driver.get("envFrom", []), {"secretRef": {"name": credentials_secret_name(name)}}]
    driver["serviceAccount"] = runtime.service_account
    driver["volumeMounts"] = [
        *driver.get("volumeMounts", []),
        {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
    ]
    spec: dict[str, Any] = {
        "type": "Python",
        "pythonVersion": "3",
        "mode": "cluster",
        "image": runtime.image,
        "mainApplicationFile": runtime.main_application_file,
        "arguments": arguments,
        "sparkVersion": runtime.spark_version,
        "sparkConf": {**runtime.conf, **{str(k): spark_str(v) for k, v in spark_conf.items()}},
        # Airflow owns retries: a failed attempt is replaced by the next one, never rerun by the operator.
        "restartPolicy": {"type": "Never"},
        "volumes": [{"name": CONFIG_VOLUME, "configMap": {"name": config_map_name(name)}}],
        "driver": driver,
        "executor": _pod_spec(runtime.executor, labels, env, env_from),
    }
    if runtime.class_data:
        _use_class_data(spec)
    if runtime.py_files:
        spec["deps"] = {"pyFiles": list(runtime.py_files)}
    if runtime.image_pull_policy:
        spec["imagePullPolicy"] = runtime.image_pull_policy
    if runtime.image_pull_secrets:
        spec["imagePullSecrets"] = list(runtime.image_pull_secrets)
    if runtime.time_to_live_s is not None:
        spec["timeToLiveSeconds"] = runtime.time_to_live_s
    return {
        "apiVersion": API_VERSION,
        "kind": "SparkApplication",
        "metadata": {"name": name, "namespace": runtime.namespace, "labels": labels, "annotations": annotations},
        "spec": spec,
    }


def _use_class_data(spec: dict[str, Any]) -> None:
    """Start the driver and executor JVMs with the image's class-data archive (``runtimes.kubernetes.
    CLASS_DATA_ARCHIVE``), unless their options already choose class-data sharing.

    The archive was made with Spark's jars first on the class path; in the pods the operator mounts
    Spark's configuration folder, which the JVM refuses to share classes past when it comes first: the
    driver's ``spark.driver.extraClassPath`` puts the jars ahead of it (nothing in Spark's jars shadows a
    file of that folder). Executors start from the image's entry point with that folder first: their JVM
    uses the archive when the folder is absent (``spark.kubernetes.executor.disableConfigMap``)."""
    conf = spec["sparkConf"]
    options = " ".join(class_data.use_options(CLASS_DATA_ARCHIVE))
    for role in ("driver", "executor"):
        given = str(spec[role].get("javaOptions") or "")
        if class_data.names_an_archive(f"{given} {conf.get(f'spark.{role}.extraJavaOptions', '')}"):
            continue
        spec[role]["javaOptions"] = f"{options} {given}".strip()
        if role == "driver":
            path = conf.get("spark.driver.extraClassPath")
            conf["spark.driver.extraClassPath"] = f"{CLASS_DATA_CLASS_PATH}:{path}" if path else CLASS_DATA_CLASS_PATH


def render_config_map(
    runtime: SparkKubernetes, submission: PipelineSubmission, name: str, owner_uid: str | None
) -> dict[str, Any]:
    """The ConfigMap holding ``config.json``, owned by the application so that it goes with it."""
    text = json.dumps(submission.document, indent=2) + "\n"
    if len(text.encode()) > _MAX_CONFIG_MAP_BYTES:
        raise SparkRuntimeError(
            f"the pipeline config is {len(text.encode())} bytes once rendered: more than a Kubernetes ConfigMap "
            "holds (1 MiB); move long queries into fewer sequences or smaller query files"
        )
    metadata = _owned_metadata(runtime, submission, config_map_name(name), name, owner_uid)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {CONFIG_FILE: text}}


def render_credentials_secret(
    runtime: SparkKubernetes, submission: PipelineSubmission, name: str, owner_uid: str | None
) -> dict[str, Any]:
    """The Secret holding ``submission.environment`` for the driver's ``envFrom``, owned by the application.

    The values are base64-encoded in ``data``; the variable names are the Secret's keys.
    """
    invalid = sorted(k for k in submission.environment if not _SECRET_KEY.match(k))
    if invalid:
        raise SparkRuntimeError(
            f"cannot hand {', '.join(repr(k) for k in invalid)} to the driver: environment variable names "
            "are letters, digits and _, not starting with a digit"
        )
    data = {k: base64.b64encode(v.encode()).decode("ascii") for k, v in submission.environment.items()}
    metadata = _owned_metadata(runtime, submission, credentials_secret_name(name), name, owner_uid)
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque", "data": data}


def _owned_metadata(
    runtime: SparkKubernetes, submission: PipelineSubmission, object_name: str, name: str, owner_uid: str | None
) -> dict[str, Any]:
    """Metadata of an object that belongs to application ``name``: its labels, owned by it when its uid is known."""
    metadata: dict[str, Any] = {
        "name": object_name,
        "namespace": runtime.namespace,
        "labels": {**runtime.labels, **_labels(submission), **MANAGED_BY},
    }
    if owner_uid:
        metadata["ownerReferences"] = [
            {"apiVersion": API_VERSION, "kind": "SparkApplication", "name": name, "uid": owner_uid}
        ]
    return metadata


def _pod_spec(
    settings: Mapping[str, Any], labels: Mapping[str, str], env: list[dict[str, Any]], env_from: list[dict[str, Any]]
) -> dict[str, Any]:
    spec = dict(settings)
    spec["labels"] = {**dict(spec.get("labels") or {}), **labels}
    if env:
        spec["env"] = [*spec.get("env", []), *env]
    if env_from:
        spec["envFrom"] = [*spec.get("envFrom", []), *env_from]
    return spec


def _labels(submission: PipelineSubmission) -> dict[str, str]:
    labels = {k: _label_value(v) for k, v in submission.labels.items() if _LABEL_KEY.match(k)}
    labels["try_number"] = str(submission.try_number)
    return labels


_LABEL_KEY = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def _label_value(value: str) -> str:
    """A Kubernetes label value: ``[A-Za-z0-9-_.]``, at most 63, starting and ending alphanumeric."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", str(value))[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)
