"""``SparkKubernetesHook``: submits, follows and stops ``SparkApplication`` objects of the Spark operator.

Built on the official cncf.kubernetes provider's ``KubernetesHook`` (CustomObjectsApi, CoreV1Api),
reading an Airflow connection of type ``kubernetes``; the triggerer calls it from a thread.
"""

from __future__ import annotations

import collections
import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_sparkpipe.exceptions import SparkRuntimeError
from airflow_provider_sparkpipe.hooks.base import SparkPipelineHook
from airflow_provider_sparkpipe.hooks.kubernetes_manifest import (
    ANNOTATION,
    DRIVER_CONTAINER,
    GROUP,
    PLURAL,
    VERSION,
    application_name,
    config_digest,
    config_map_name,
    credentials_secret_name,
    render_application,
    render_config_map,
    render_credentials_secret,
)
from airflow_provider_sparkpipe.runs import PipelineRun, PipelineSubmission, RunState
from airflow_provider_sparkpipe.runtimes.kubernetes import SparkKubernetes
from airflow_provider_sparkpipe.staging import ObjectStorageStore, Staging
from spark_job.markers import METRICS_MARKER, parse_marker_line

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

_TAIL_LINES = 40

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


@dataclass
class _DriverLog:
    """What the task has seen of a driver's log: lines already logged, the tail, the metrics line."""

    lines_seen: int = 0
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=_TAIL_LINES))
    metrics: dict[str, Any] | None = None
    followed: bool = False
    complete: bool = False


class SparkKubernetesHook(SparkPipelineHook[SparkKubernetes]):
    """Submit, follow and stop pipelines on a :class:`~airflow_provider_sparkpipe.runtimes.SparkKubernetes` runtime.

    One SparkApplication per task instance, named from the task key: a retry finds the application
    of an earlier attempt and re-attaches to it while it runs or after it completed with the same
    config; a failed one (or one with another config) is deleted and submitted again. ``wait``
    follows the driver pod's log into the task log; the metrics come from its ``SPARKPIPE_METRICS``
    line (or ``staging_uri``). ``cancel`` deletes the application: the operator stops its pods.
    """

    hook_name = "Spark pipeline on Kubernetes (Spark operator)"
    passes_environment = True
    supports_deferral = True

    def __init__(self, runtime: SparkKubernetes | None = None, **kwargs: Any) -> None:
        super().__init__(runtime=runtime, **kwargs)
        self._logs: dict[str, _DriverLog] = {}
        self._status: dict[str, dict[str, Any]] = {}
        self._cancelled: set[str] = set()

    @cached_property
    def kube(self) -> KubernetesHook:
        """The official provider's hook for the runtime's ``kubernetes`` connection."""
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return KubernetesHook(conn_id=self.runtime.kubernetes_conn_id)

    def check(self) -> str:
        listed = self.kube.custom_object_client.list_namespaced_custom_object(
            GROUP, VERSION, self.runtime.namespace, PLURAL, limit=1
        )
        more = "" if not listed.get("items") else " (has applications)"
        return f"{self.runtime.describe()}: SparkApplications readable in namespace {self.runtime.namespace!r}{more}"

    # The runtime interface. ------------------------------------------------------------------------

    def submit(self, submission: PipelineSubmission, previous: PipelineRun | None = None) -> PipelineRun:
        name = application_name(submission.task_key)
        namespace = self.runtime.namespace
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

        metrics_uri = state_uri = None
        if self.staging is not None:
            # The image holds the driver and a ConfigMap the config: only the metrics are staged, and the
            # task instance's commit log beside its tries' folders.
            metrics_uri = self.staging.metrics_uri(f"{name}/{submission.run_key}")
            state_uri = self.staging.state_uri(name)
            self.staging.store.delete([metrics_uri])
        elif submission.resume_key:
            self.log.info("No staging_uri: every try runs every sequence (a retry has no commit log to resume from)")
        manifest = render_application(self.runtime, submission, name, metrics_uri, state_uri)
        from kubernetes.client.exceptions import ApiException

        self.log.info(
            "Submitting SparkApplication %s/%s (image %s, %s executor(s))",
            namespace,
            name,
            self.runtime.image,
            self.runtime.executor.get("instances"),
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

    @cached_property
    def staging(self) -> Staging | None:
        if not self.runtime.staging_uri:
            return None
        return Staging(ObjectStorageStore(self.runtime.staging_conn_id), self.runtime.staging_uri, self.log)

    def announced_metrics(self, run: PipelineRun) -> dict[str, Any] | None:
        return self._read_driver_log(run).metrics

    def cleanup(self, run: PipelineRun, state: RunState) -> None:
        """With ``delete_on_success``, delete a successful application; failed ones stay to be inspected.

        The credentials Secret this attempt created is deleted in any case: the driver has ended.
        """
        if state == RunState.SUCCEEDED and self.runtime.delete_on_success:
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
            "kind": self.runtime.kind,
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
        if not self.runtime.ui_url:
            return None
        return self.runtime.ui_url.format(namespace=run.details["namespace"], name=run.run_id)

    # Internals. ------------------------------------------------------------------------------------

    def _run(self, app: Mapping[str, Any], *, attached: bool, credentials_uid: str | None = None) -> PipelineRun:
        metadata = app.get("metadata") or {}
        details: dict[str, Any] = {
            "namespace": self.runtime.namespace,
            "uid": metadata.get("uid"),
            "attached": attached,
            "metrics_uri": _annotation(app, "metrics-uri"),
        }
        if credentials_uid:
            details["credentials_uid"] = credentials_uid
        return PipelineRun(runtime_kind=self.runtime.kind, run_id=str(metadata["name"]), details=details)

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
            return dict(self.kube.get_custom_object(GROUP, VERSION, PLURAL, name, self.runtime.namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise SparkRuntimeError(
                _api_error(f"cannot read SparkApplication {self.runtime.namespace}/{name}", exc)
            ) from exc

    def _delete(self, name: str, uid: str | None) -> None:
        """Delete the application (only the one with this uid), its ConfigMap and its credentials Secret;
        gone already is fine."""
        from kubernetes.client.exceptions import ApiException

        namespace = self.runtime.namespace
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

        namespace, name, uid = self.runtime.namespace, str(app["metadata"]["name"]), app["metadata"].get("uid")
        try:
            self.kube.core_v1_client.create_namespaced_config_map(
                namespace, render_config_map(self.runtime, submission, name, uid)
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

        namespace, secret_name = self.runtime.namespace, credentials_secret_name(name)
        secret = render_credentials_secret(self.runtime, submission, name, owner_uid)
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
        deadline = time.monotonic() + self.runtime.startup_timeout_s
        while self._get_application(name) is not None:
            if time.monotonic() > deadline:
                raise SparkRuntimeError(
                    f"SparkApplication {self.runtime.namespace}/{name} is still being deleted after "
                    f"{self.runtime.startup_timeout_s:g}s: check its finalizers (kubectl describe sparkapplication)"
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
        marker = parse_marker_line(line)
        if marker is not None and marker[0] == METRICS_MARKER:
            log.metrics = marker[1]
            self.log.info("Driver metrics received (%d bytes)", len(line))
            return
        if marker is not None:
            return  # the application id reaches the metrics; the pod's Spark UI is not reachable
        log.tail.append(line)
        self.log.info("%s", line)


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode(errors="replace").rstrip("\r")
    if pending:
        yield pending.decode(errors="replace")


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
