"""``SparkKubernetes``: run the driver as a spark-operator ``SparkApplication`` on a Kubernetes cluster."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_sparkpipe.runtimes.base import SparkRuntime, register_runtime, spark_str
from airflow_provider_sparkpipe.runtimes.versions import check_spark_version

DEFAULT_SPARK_VERSION = "4.1.2"
"""The Spark version of the project's driver image (``Dockerfile``, on the official
``apache/spark:4.1.2-scala2.13-java17-python3-ubuntu``, Python 3.10); ``spec.sparkVersion`` of the app."""

DRIVER_MAIN_FILE = "local:///opt/sparkpipe/sparkpipe_main.py"
DRIVER_PY_FILES = "local:///opt/sparkpipe/sparkpipe.zip"
CLASS_DATA_ARCHIVE = "/opt/sparkpipe/class-data/spark.jsa"
"""The class-data archive the project's image carries (``Dockerfile``), made for this class path:"""
CLASS_DATA_CLASS_PATH = "/opt/spark/jars/*"
"""Spark's jars, ahead of the configuration folder the operator mounts (``spark.driver.extraClassPath``)."""

_SECRET_REF = re.compile(r"^(?P<secret>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)/(?P<key>[-._a-zA-Z0-9]+)$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?([kmgtpKMGTP]i?|[kmgtp])?$")


@register_runtime
@dataclass(frozen=True)
class SparkKubernetes(SparkRuntime):
    """Run the pipeline as a ``SparkApplication`` of the Kubeflow Spark operator (``sparkoperator.k8s.io``).

    The config travels in a ConfigMap owned by the application and mounted into the driver; the
    credentials of Airflow connections the config names (``connection:``) travel in a Secret owned by
    the application that becomes the driver's environment (``envFrom``), and only the driver's; the
    driver image is the project's (``Dockerfile`` at the repository root); metrics come from the
    driver's ``SPARKPIPE_METRICS`` log line, or from ``staging_uri`` when given.

    Parameters:
        namespace: the namespace the application, its ConfigMap, its credentials Secret and its pods
            live in.
        image: the driver and executor image: the project's image built from its ``Dockerfile``
            (``registry.example.com/sparkpipe-driver:0.1.0``).
        kubernetes_conn_id: the Airflow connection of type ``kubernetes`` (the official
            cncf.kubernetes provider's: in-cluster, a kube config file or its content).
        service_account: the driver's service account; it must be allowed to create executor pods
            (the Spark operator's Helm chart creates one, ``spark-operator-spark`` by default).
        driver: ``cores`` (default 1) and ``memory`` (default ``1g``) of the driver, plus any other
            field of the SparkApplication's ``spec.driver`` (``nodeSelector``, ``tolerations``, ...).
        executor: ``instances`` (default 1), ``cores`` (default 1) and ``memory`` (default ``1g``), plus
            any other field of ``spec.executor``.
        conf: Spark properties of the application (``spec.sparkConf``); the config's own
            ``spark_conf`` is applied over them.
        env: plain environment variables of the driver and executors. Never logged.
        secret_env: environment variables read from Kubernetes Secrets, ``{"PG_PASSWORD":
            "pg-credentials/password"}`` (``<secret>/<key>``): what a config's ``${env:PG_PASSWORD}``
            resolves on the driver. The secret values never pass through Airflow.
        env_from_secrets: names of Secrets whose every key becomes an environment variable.
        staging_uri: a folder URI (``gs://``, ``s3://``, ...) readable by Airflow through an Airflow
            ObjectStoragePath and writable by the driver: the driver writes ``metrics.json`` there
            (``--metrics-out``) and Airflow reads it from there; default: the metrics are read from
            the driver's log.
        staging_conn_id: the Airflow connection used to read ``staging_uri``.
        spark_version: ``spec.sparkVersion``: the image's Spark version, default the project image's
            (``4.1.2``). A Spark older than 3.5 is an error when the DAG is parsed (the driver runs on
            Spark 3.5.x and 4.x); an image of your own must also bring Python 3.9 to 3.13.
        image_pull_policy: ``Always``, ``IfNotPresent`` or ``Never``; default: the cluster's.
        image_pull_secrets: names of Secrets holding registry credentials.
        labels: extra labels on the application and its pods.
        main_application_file: the driver's entry file inside the image.
        py_files: the driver's Python dependencies inside the image (``spec.deps.pyFiles``).
        time_to_live_s: ``spec.timeToLiveSeconds``: the operator deletes the application this long
            after it ends (failed ones included); default: kept until deleted.
        delete_on_success: delete the application (and its ConfigMap, Secret and pods) once the metrics
            of a successful run are read; failed runs are kept for inspection (their credentials Secret
            is deleted when the run ends either way).
        ui_url: a link to the Spark UI of the run, formatted with ``{namespace}`` and ``{name}``
            (``https://spark.example.com/{namespace}/{name}/``); shown as the task's extra link.
        startup_timeout_s: how long a retry waits for a failed application of an earlier attempt to
            be deleted before it submits again.
        class_data: start the driver and executor JVMs with the class-data archive of Spark's classes
            the project's image carries (``/opt/sparkpipe/class-data/spark.jsa``): the driver's
            ``javaOptions`` and ``spark.driver.extraClassPath`` (Spark's jars first, as when the
            archive was made), the executors' ``javaOptions``. A JVM for which the archive does not
            fit (another image, another class path) starts as usual, silently. ``False`` leaves the
            JVMs' options alone.
    """

    namespace: str
    image: str
    kubernetes_conn_id: str = "kubernetes_default"
    service_account: str = "spark-operator-spark"
    driver: Mapping[str, Any] = field(default_factory=dict)
    executor: Mapping[str, Any] = field(default_factory=dict)
    conf: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    secret_env: Mapping[str, str] = field(default_factory=dict)
    env_from_secrets: Sequence[str] = ()
    staging_uri: str | None = None
    staging_conn_id: str | None = None
    spark_version: str = DEFAULT_SPARK_VERSION
    image_pull_policy: str | None = None
    image_pull_secrets: Sequence[str] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    main_application_file: str = DRIVER_MAIN_FILE
    py_files: Sequence[str] = (DRIVER_PY_FILES,)
    time_to_live_s: int | None = None
    delete_on_success: bool = False
    ui_url: str | None = None
    startup_timeout_s: float = 120.0
    class_data: bool = True

    kind = "kubernetes"
    hook_class = "airflow_provider_sparkpipe.hooks.kubernetes.SparkKubernetesHook"

    def __post_init__(self) -> None:
        for name in ("namespace", "image", "kubernetes_conn_id", "service_account", "spark_version"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string, not {value!r}")
        check_spark_version("spark_version", self.spark_version)
        for name in ("driver", "executor", "conf", "env", "secret_env", "labels"):
            if not isinstance(getattr(self, name), Mapping):
                raise ValueError(f"{name} must be a mapping, not {type(getattr(self, name)).__name__}")
        object.__setattr__(self, "driver", _pod_settings("driver", self.driver, {"cores": 1, "memory": "1g"}))
        object.__setattr__(
            self, "executor", _pod_settings("executor", self.executor, {"instances": 1, "cores": 1, "memory": "1g"})
        )
        for name in ("conf", "env", "labels"):
            object.__setattr__(self, name, {str(k): spark_str(v) for k, v in getattr(self, name).items()})
        for name, ref in self.secret_env.items():
            if not _ENV_NAME.match(str(name)) or not isinstance(ref, str) or not _SECRET_REF.match(ref):
                raise ValueError(
                    f"secret_env[{name!r}] must map an environment variable name to '<secret>/<key>', not {ref!r}"
                )
        object.__setattr__(self, "secret_env", dict(self.secret_env))
        for name in ("env_from_secrets", "image_pull_secrets", "py_files"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"{name} must be a list of strings, not {value!r}")
            object.__setattr__(self, name, tuple(value))
        if self.image_pull_policy not in (None, "Always", "IfNotPresent", "Never"):
            raise ValueError(f"image_pull_policy must be Always, IfNotPresent or Never, not {self.image_pull_policy!r}")
        if self.time_to_live_s is not None and self.time_to_live_s < 0:
            raise ValueError(f"time_to_live_s must be >= 0, not {self.time_to_live_s}")
        if self.staging_uri is not None and "://" not in self.staging_uri:
            raise ValueError(f"staging_uri must be a URI such as 's3://bucket/sparkpipe', not {self.staging_uri!r}")

    @classmethod
    def _coerce_extras(cls, extras: dict[str, Any], where: str) -> dict[str, Any]:
        for name in ("driver", "executor", "conf", "env", "secret_env", "labels"):
            if isinstance(extras.get(name), str):
                extras[name] = _json(name, extras[name], dict)
        for name in ("env_from_secrets", "image_pull_secrets", "py_files"):
            if isinstance(extras.get(name), str):
                text = extras[name].strip()
                extras[name] = _json(name, text, list) if text.startswith("[") else [text]
        for name, convert in (("time_to_live_s", int), ("startup_timeout_s", float)):
            if isinstance(extras.get(name), str):
                extras[name] = convert(extras[name])
        for name in ("delete_on_success", "class_data"):
            if isinstance(extras.get(name), str):
                extras[name] = extras[name].strip().lower() in ("true", "1", "yes")
        return extras


def _pod_settings(name: str, given: Mapping[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    settings = {**defaults, **dict(given)}
    for key in ("cores", "instances"):
        if key in settings:
            value = settings[key]
            if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
                raise ValueError(f"{name}.{key} must be a whole number, not {value!r}")
            settings[key] = int(value)
            if settings[key] < (0 if key == "instances" else 1):
                raise ValueError(f"{name}.{key} must be at least {0 if key == 'instances' else 1}, not {value!r}")
    memory = settings.get("memory")
    if not isinstance(memory, str) or not _QUANTITY.match(memory):
        raise ValueError(f"{name}.memory must be a size such as '2g' or '512m', not {memory!r}")
    return settings


def _json(name: str, text: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} must be JSON: {exc.msg}") from None
    if not isinstance(value, kind):
        raise ValueError(f"{name} must be a JSON {'object' if kind is dict else 'list'}")
    return value
