"""``SparkKubernetesHook``: submits, follows and stops ``SparkApplication`` objects of the Spark operator.

Built on the official cncf.kubernetes provider's ``KubernetesHook`` (CustomObjectsApi, CoreV1Api),
reading an Airflow connection of type ``kubernetes``; the triggerer calls it from a thread.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_sparkpipe.exceptions import SparkRuntimeError
from airflow_provider_sparkpipe.hooks.base import PipelineRun, PipelineSubmission, RunState, SparkPipelineHook
from spark_job import APPLICATION_MARKER, METRICS_MARKER

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from airflow_provider_sparkpipe.runtimes.kubernetes import SparkKubernetes

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
_TAIL_LINES = 40
_SECRET_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # an environment variable name (also a valid Secret key)

# The Spark operator's application states (``status.applicationState.state``), as runs see them.
_STATES = {
    "": RunState.PENDING,
    "NEW": RunState.PENDING,
    "SUBMITTED": RunState.PENDING,
    "PENDING_RERUN": RunState.PENDING,
    "SUSPENDING": RunState.PENDING,
    "SUSPENDED": RunState.PENDING,
    "RESUMING": RunState.PENDING,
    "RUNNING": RunState.RUNNING,
    "SUCCEEDING": RunState.RUNNING,
    "FAILING": RunState.RUNNING,
    "INVALIDATING": RunState.RUNNING,
    "UNKNOWN": RunState.RUNNING,
    "COMPLETED": RunState.SUCCEEDED,
    "FAILED": RunState.FAILED,
    "SUBMISSION_FAILED": RunState.FAILED,
}


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
    runtime: SparkKubernetes, submission: PipelineSubmission, name: str, metrics_uri: str | None = None
) -> dict[str, Any]:
    """The ``sparkoperator.k8s.io/v1beta2`` SparkApplication that runs one submission."""
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
        "sparkConf": {**runtime.conf, **{str(k): _conf_str(v) for k, v in spark_conf.items()}},
        # Airflow owns retries: a failed attempt is replaced by the next one, never rerun by the operator.
        "restartPolicy": {"type": "Never"},
        "volumes": [{"name": CONFIG_VOLUME, "configMap": {"name": config_map_name(name)}}],
        "driver": driver,
        "executor": _pod_spec(runtime.executor, labels, env, env_from),
    }
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


@dataclass
class _DriverLog:
    """What the task has seen of a driver's log: lines already logged, the tail, the metrics line."""

    lines_seen: int = 0
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=_TAIL_LINES))
    metrics_line: str | None = None
    followed: bool = False
    complete: bool = False


class SparkKubernetesHook(SparkPipelineHook):
    """Submit, follow and stop pipelines on a :class:`~airflow_provider_sparkpipe.runtimes.SparkKubernetes` runtime.

    One SparkApplication per task instance, named from the task key: a retry finds the application
    of an earlier attempt and re-attaches to it while it runs or after it completed with the same
    config; a failed one (or one with another config) is deleted and submitted again. ``wait``
    follows the driver pod's log into the task log; the metrics come from its ``SPARKPIPE_METRICS``
    line (or ``staging_uri``). ``cancel`` deletes the application: the operator stops its pods.
    """

    hook_name = "Spark pipeline on Kubernetes (Spark operator)"

    def __init__(self, runtime: SparkKubernetes, **kwargs: Any) -> None:
        super().__init__(runtime=runtime, **kwargs)
        self.k8s = runtime
        self._logs: dict[str, _DriverLog] = {}
        self._status: dict[str, dict[str, Any]] = {}
        self._cancelled: set[str] = set()

    @cached_property
    def kube(self) -> KubernetesHook:
        """The official provider's hook for the runtime's ``kubernetes`` connection."""
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return KubernetesHook(conn_id=self.k8s.kubernetes_conn_id)

    def check(self) -> str:
        listed = self.kube.custom_object_client.list_namespaced_custom_object(
            GROUP, VERSION, self.k8s.namespace, PLURAL, limit=1
        )
        more = "" if not listed.get("items") else " (has applications)"
        return f"{self.k8s.describe()}: SparkApplications readable in namespace {self.k8s.namespace!r}{more}"

    # The runtime interface. ------------------------------------------------------------------------

    def submit(self, submission: PipelineSubmission) -> PipelineRun:
        name = application_name(submission.task_key)
        namespace = self.k8s.namespace
        existing = self._get_application(name)
        if existing is not None:
            state = _app_state(existing)
            same_config = _annotation(existing, "config-digest") == config_digest(submission.document)
            if state != RunState.FAILED and same_config:
                self.log.info(
                    "SparkApplication %s/%s of an earlier attempt is %s: re-attaching to it",
                    namespace,
                    name,
                    _raw_state(existing) or "NEW",
                )
                pending = state == RunState.PENDING
                credentials_uid = self._create_parts(submission, existing, restoring=True) if pending else None
                return self._run(existing, attached=True, credentials_uid=credentials_uid)
            why = "failed" if state == RunState.FAILED else "ran another config"
            self.log.warning("SparkApplication %s/%s of an earlier attempt %s: replacing it", namespace, name, why)
            self._delete(name, existing["metadata"].get("uid"))
            self._wait_until_gone(name)

        metrics_uri = (
            f"{self.k8s.staging_uri.rstrip('/')}/{name}/{submission.run_key}/metrics.json"
            if (self.k8s.staging_uri)
            else None
        )
        manifest = render_application(self.k8s, submission, name, metrics_uri)
        from kubernetes.client.exceptions import ApiException

        self.log.info(
            "Submitting SparkApplication %s/%s (image %s, %s executor(s))",
            namespace,
            name,
            self.k8s.image,
            self.k8s.executor.get("instances"),
        )
        try:
            created = self.kube.create_custom_object(GROUP, VERSION, PLURAL, manifest, namespace)
        except ApiException as exc:
            if exc.status != 409:
                raise SparkRuntimeError(_api_error(f"cannot create SparkApplication {namespace}/{name}", exc)) from exc
            # Another attempt of this task created it a moment ago: follow that one.
            self.log.warning("SparkApplication %s/%s appeared meanwhile: re-attaching to it", namespace, name)
            return self._run(self._get_application(name) or manifest, attached=True)
        try:
            credentials_uid = self._create_parts(submission, created, restoring=False)
        except Exception:
            self._delete(name, created["metadata"].get("uid"))
            raise
        return self._run(created, attached=False, credentials_uid=credentials_uid)

    def poll(self, run: PipelineRun) -> RunState:
        return self._state(run, self._get_application(run.run_id))

    def wait(self, run: PipelineRun, poll_interval: float = 10.0) -> RunState:
        """Poll the application and follow its driver's log into the task log until it ends."""
        log = self._driver_log_state(run)
        while not (state := self.poll(run)).finished:
            if not log.followed:
                pod = self._driver_pod(run)
                if pod is not None and pod.status is not None and pod.status.phase != "Pending":
                    self._follow_driver_log(run, pod.metadata.name)
                    continue
            time.sleep(poll_interval)
        self._read_driver_log(run)
        return state

    def cancel(self, run: PipelineRun) -> None:
        """Delete the SparkApplication (the operator then deletes its driver and executor pods)."""
        self.log.info("Deleting SparkApplication %s/%s", run.details["namespace"], run.run_id)
        self._cancelled.add(run.run_id)
        self._delete(run.run_id, run.details.get("uid"))

    def fetch_metrics(self, run: PipelineRun) -> dict[str, Any] | None:
        metrics_uri = run.details.get("metrics_uri")
        if metrics_uri:
            metrics = self._read_staged_metrics(metrics_uri)
            if metrics is not None:
                return metrics
        log = self._read_driver_log(run)
        if log.metrics_line:
            try:
                return dict(json.loads(log.metrics_line))
            except ValueError as exc:
                self.log.warning("Cannot read the driver's metrics line: %s", exc)
        return None

    def cleanup(self, run: PipelineRun, state: RunState) -> None:
        """With ``delete_on_success``, delete a successful application; failed ones stay to be inspected.

        The credentials Secret this attempt created is deleted in any case: the driver has ended.
        """
        if state == RunState.SUCCEEDED and self.k8s.delete_on_success:
            self.log.info("Deleting SparkApplication %s/%s (delete_on_success)", run.details["namespace"], run.run_id)
            self._delete(run.run_id, run.details.get("uid"))
            return
        if state != RunState.SUCCEEDED:
            self.log.info(
                "SparkApplication %s/%s kept for inspection: kubectl describe sparkapplication -n %s %s",
                run.details["namespace"],
                run.run_id,
                run.details["namespace"],
                run.run_id,
            )
        self._delete_credentials(run)

    def describe_failure(self, run: PipelineRun) -> str | None:
        status = self._status.get(run.run_id)
        if run.run_id in self._cancelled:
            what = f"SparkApplication {run.details['namespace']}/{run.run_id} was deleted (the task was killed)"
        elif status is None:
            what = (
                f"SparkApplication {run.details['namespace']}/{run.run_id} no longer exists "
                "(deleted by someone, or by its timeToLiveSeconds)"
            )
        else:
            app_state = status.get("applicationState") or {}
            what = f"SparkApplication {run.details['namespace']}/{run.run_id} {app_state.get('state') or 'ended'}"
            if app_state.get("errorMessage"):
                what += f": {app_state['errorMessage']}"
        tail = "\n".join(self._driver_log_state(run).tail)
        return f"{what}; last driver log lines:\n{tail}" if tail else what

    def runtime_info(self, run: PipelineRun) -> dict[str, Any]:
        """What the metrics document's ``runtime`` block says about a Kubernetes run."""
        info: dict[str, Any] = {
            "kind": self.k8s.kind,
            "namespace": run.details["namespace"],
            "application": run.run_id,
            "uid": run.details.get("uid"),
        }
        status = self._status.get(run.run_id) or {}
        if status.get("sparkApplicationId"):
            info["spark_app_id"] = status["sparkApplicationId"]
        if (status.get("driverInfo") or {}).get("podName"):
            info["driver_pod"] = status["driverInfo"]["podName"]
        if url := self.run_url(run):
            info["url"] = url
        return info

    def run_url(self, run: PipelineRun) -> str | None:
        if not self.k8s.ui_url:
            return None
        return self.k8s.ui_url.format(namespace=run.details["namespace"], name=run.run_id)

    # Internals. ------------------------------------------------------------------------------------

    def _run(self, app: Mapping[str, Any], *, attached: bool, credentials_uid: str | None = None) -> PipelineRun:
        metadata = app.get("metadata") or {}
        details: dict[str, Any] = {
            "namespace": self.k8s.namespace,
            "uid": metadata.get("uid"),
            "attached": attached,
            "metrics_uri": _annotation(app, "metrics-uri"),
        }
        if credentials_uid:
            details["credentials_uid"] = credentials_uid
        return PipelineRun(runtime_kind=self.k8s.kind, run_id=str(metadata["name"]), details=details)

    def _state(self, run: PipelineRun, app: Mapping[str, Any] | None) -> RunState:
        uid = run.details.get("uid")
        if app is None or (uid and (app.get("metadata") or {}).get("uid") not in (None, uid)):
            self._status.pop(run.run_id, None)
            return RunState.CANCELLED  # deleted (killed, by hand or TTL) or replaced by another attempt
        self._status[run.run_id] = dict(app.get("status") or {})
        return _app_state(app)

    def _get_application(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return dict(self.kube.get_custom_object(GROUP, VERSION, PLURAL, name, self.k8s.namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise SparkRuntimeError(
                _api_error(f"cannot read SparkApplication {self.k8s.namespace}/{name}", exc)
            ) from exc

    def _delete(self, name: str, uid: str | None) -> None:
        """Delete the application (only the one with this uid), its ConfigMap and its credentials Secret;
        gone already is fine."""
        from kubernetes.client.exceptions import ApiException

        namespace = self.k8s.namespace
        try:
            self.kube.delete_custom_object(GROUP, VERSION, PLURAL, name, namespace, body=_delete_options(uid))
        except ApiException as exc:
            if exc.status == 409:
                # The uid precondition failed: the name is another attempt's application now, and so are
                # the ConfigMap and the Secret of that name.
                return
            if exc.status != 404:
                raise SparkRuntimeError(_api_error(f"cannot delete SparkApplication {namespace}/{name}", exc)) from exc
        core = self.kube.core_v1_client
        for kind, object_name, delete in (
            ("ConfigMap", config_map_name(name), core.delete_namespaced_config_map),
            ("Secret", credentials_secret_name(name), core.delete_namespaced_secret),
        ):
            try:
                delete(object_name, namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise SparkRuntimeError(_api_error(f"cannot delete {kind} {namespace}/{object_name}", exc)) from exc

    def _create_parts(self, submission: PipelineSubmission, app: Mapping[str, Any], *, restoring: bool) -> str | None:
        """Create the application's ConfigMap and (with an environment) credentials Secret, owned by it.

        ``restoring``: for an application of an earlier attempt whose driver has not started: that attempt
        may have stopped between creating the application and creating these, and the driver would wait for
        them for ever; existing ones are kept. Returns the uid of a Secret created.
        """
        from kubernetes.client.exceptions import ApiException

        namespace, name, uid = self.k8s.namespace, str(app["metadata"]["name"]), app["metadata"].get("uid")
        try:
            self.kube.core_v1_client.create_namespaced_config_map(
                namespace, render_config_map(self.k8s, submission, name, uid)
            )
        except ApiException as exc:
            if not (restoring and exc.status == 409):
                raise SparkRuntimeError(_api_error(f"cannot create ConfigMap {namespace}/{name}", exc)) from exc
        else:
            if restoring:
                self.log.warning(
                    "ConfigMap %s/%s was missing (an earlier attempt stopped while submitting): created it",
                    namespace,
                    config_map_name(name),
                )
        if not submission.environment:
            return None
        return self._create_credentials(submission, name, uid, exists_ok=restoring)

    def _create_credentials(
        self, submission: PipelineSubmission, name: str, owner_uid: str | None, *, exists_ok: bool = False
    ) -> str | None:
        """Create the Secret holding the submission's environment; returns its uid (None when ``exists_ok``
        and it exists already).

        The API server's answer (the Secret, values included) is read raw: the client neither logs it at
        debug level nor keeps it.
        """
        from kubernetes.client.exceptions import ApiException

        namespace, secret_name = self.k8s.namespace, credentials_secret_name(name)
        secret = render_credentials_secret(self.k8s, submission, name, owner_uid)
        try:
            response = self.kube.core_v1_client.create_namespaced_secret(namespace, secret, _preload_content=False)
        except ApiException as exc:
            if exc.status == 409 and exists_ok:
                return None
            raise SparkRuntimeError(_api_error(f"cannot create Secret {namespace}/{secret_name}", exc)) from exc
        try:
            uid = (json.loads(response.data).get("metadata") or {}).get("uid")
        finally:
            response.release_conn()
        self.log.info(
            "Created Secret %s/%s: %d environment variable(s) for the driver (%s)",
            namespace,
            secret_name,
            len(secret["data"]),
            ", ".join(sorted(secret["data"])),
        )
        return str(uid) if uid else None

    def _delete_credentials(self, run: PipelineRun) -> None:
        """Delete the credentials Secret this attempt created, once its run ended: the driver no longer needs it.

        Only that Secret (its uid): an application re-attached to keeps its Secret until it is deleted.
        """
        from kubernetes.client.exceptions import ApiException

        secret_uid = run.details.get("credentials_uid")
        if not secret_uid:
            return
        namespace, secret_name = run.details["namespace"], credentials_secret_name(run.run_id)
        try:
            self.kube.core_v1_client.delete_namespaced_secret(
                secret_name, namespace, body={"preconditions": {"uid": secret_uid}}
            )
        except ApiException as exc:
            # 404: gone with its application; 409: the Secret of another attempt's application now.
            if exc.status not in (404, 409):
                self.log.warning(
                    "%s; it goes when the application is deleted",
                    _api_error(f"cannot delete Secret {namespace}/{secret_name}", exc),
                )
            return
        self.log.info("Deleted Secret %s/%s: the driver has ended", namespace, secret_name)

    def _wait_until_gone(self, name: str) -> None:
        deadline = time.monotonic() + self.k8s.startup_timeout_s
        while self._get_application(name) is not None:
            if time.monotonic() > deadline:
                raise SparkRuntimeError(
                    f"SparkApplication {self.k8s.namespace}/{name} is still being deleted after "
                    f"{self.k8s.startup_timeout_s:g}s: check its finalizers (kubectl describe sparkapplication)"
                )
            time.sleep(1.0)

    def _driver_log_state(self, run: PipelineRun) -> _DriverLog:
        return self._logs.setdefault(run.run_id, _DriverLog())

    def _driver_pod(self, run: PipelineRun) -> Any:
        """The driver pod of this application (the newest one if a label match is ambiguous), or None."""
        pods = self.kube.core_v1_client.list_namespaced_pod(
            run.details["namespace"],
            label_selector=f"sparkoperator.k8s.io/app-name={run.run_id},spark-role=driver",
        ).items
        uid = run.details.get("uid")
        owned = [p for p in pods if any(ref.uid == uid for ref in (p.metadata.owner_references or []))]
        candidates = owned or pods
        if not candidates:
            return None
        return max(candidates, key=lambda p: p.metadata.creation_timestamp or 0)

    def _follow_driver_log(self, run: PipelineRun, pod_name: str) -> None:
        """Stream the driver's log into the task log until its container ends (or the stream breaks)."""
        log = self._driver_log_state(run)
        log.followed = True
        self.log.info("Following the log of driver pod %s", pod_name)
        try:
            response = self.kube.core_v1_client.read_namespaced_pod_log(
                pod_name, run.details["namespace"], container=DRIVER_CONTAINER, follow=True, _preload_content=False
            )
            try:
                for index, line in enumerate(_lines(response.stream(amt=None, decode_content=True))):
                    if index >= log.lines_seen:
                        self._handle_line(log, line)
            finally:
                response.release_conn()
        except Exception as exc:
            self.log.warning("Stopped following driver pod %s: %s", pod_name, exc)

    def _read_driver_log(self, run: PipelineRun) -> _DriverLog:
        """Read the driver's whole log once it ended, logging the lines the task has not shown yet."""
        from kubernetes.client.exceptions import ApiException

        log = self._driver_log_state(run)
        if log.complete:
            return log
        pod = self._driver_pod(run)
        if pod is None:
            self.log.warning("No driver pod found for SparkApplication %s/%s", run.details["namespace"], run.run_id)
            return log
        try:
            response = self.kube.get_pod_logs(pod.metadata.name, DRIVER_CONTAINER, run.details["namespace"])
            text = response.data.decode(errors="replace")
        except ApiException as exc:
            self.log.warning("Cannot read the log of driver pod %s: %s", pod.metadata.name, exc.reason)
            return log
        for index, line in enumerate(text.splitlines()):
            if index >= log.lines_seen:
                self._handle_line(log, line)
        log.complete = True
        return log

    def _handle_line(self, log: _DriverLog, line: str) -> None:
        log.lines_seen += 1
        if line.startswith(METRICS_MARKER):
            log.metrics_line = line[len(METRICS_MARKER) :]
            self.log.info("Driver metrics received (%d bytes)", len(log.metrics_line))
            return
        if line.startswith(APPLICATION_MARKER):
            return  # the application id reaches the metrics; the pod's Spark UI is not reachable
        log.tail.append(line)
        self.log.info("%s", line)

    def _read_staged_metrics(self, uri: str) -> dict[str, Any] | None:
        from airflow.sdk import ObjectStoragePath

        path = ObjectStoragePath(uri, conn_id=self.k8s.staging_conn_id)
        try:
            if path.exists():
                return dict(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            self.log.warning("Cannot read %s: %s", uri, exc)
        return None


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode(errors="replace").rstrip("\r")
    if pending:
        yield pending.decode(errors="replace")


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


def _conf_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _annotation(app: Mapping[str, Any], key: str) -> str | None:
    annotations = (app.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(f"{ANNOTATION}{key}")
    return str(value) if value is not None else None


def _raw_state(app: Mapping[str, Any]) -> str:
    return str(((app.get("status") or {}).get("applicationState") or {}).get("state") or "")


def _app_state(app: Mapping[str, Any]) -> RunState:
    return _STATES.get(_raw_state(app), RunState.RUNNING)


def _delete_options(uid: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {"propagationPolicy": "Background"}
    if uid:
        options["preconditions"] = {"uid": uid}
    return options


def _api_error(what: str, exc: Any) -> str:
    detail = exc.reason
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        detail = json.loads(exc.body).get("message") or detail
    hint = {
        401: "check the kubernetes connection's credentials",
        403: (
            "the connection's identity lacks RBAC permissions on sparkapplications/configmaps/secrets in this namespace"
        ),
        404: "is the Spark operator (its SparkApplication CRD) installed, and does the namespace exist?",
    }.get(exc.status, "")
    return f"{what}: HTTP {exc.status} {detail}" + (f" ({hint})" if hint else "")
