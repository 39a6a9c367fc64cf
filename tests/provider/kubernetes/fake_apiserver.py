"""A small fake of the Kubernetes API server, with a Spark operator inside, for the SparkKubernetes tests.

It serves what the runtime uses: SparkApplications (create, get, list, delete with a uid
precondition), ConfigMaps and Secrets (create, get, delete with a uid precondition; deleted with their
owner like Kubernetes' garbage collector does), pods (list by label selector) and pod logs (plain or
followed, chunked). Each GET of an application moves it one step through its script (SUBMITTED,
RUNNING, then COMPLETED or FAILED, or RUNNING for ever) and creates its driver pod, whose log is made
from the ConfigMap's config and ends with the driver's ``SPARKPIPE_METRICS`` line. When the driver
starts, its environment is built as the kubelet builds it (``env`` values, ``secretKeyRef``,
``envFrom`` Secrets and ConfigMaps, decoded) and kept in ``driver_env``; a Secret it names that does
not exist fails the application with the kubelet's message as the driver's log. Created applications
are checked against the CRD's schema: an invalid one gets the 422 a real API server answers.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "sparkpipe-test-token"
_APPS = re.compile(r"^/apis/sparkoperator\.k8s\.io/v1beta2/namespaces/([^/]+)/sparkapplications(?:/([^/]+))?$")
_CONFIG_MAPS = re.compile(r"^/api/v1/namespaces/([^/]+)/configmaps(?:/([^/]+))?$")
_SECRETS = re.compile(r"^/api/v1/namespaces/([^/]+)/secrets(?:/([^/]+))?$")
_PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
_LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class FakeKubernetes:
    """The fake's state; tests read it and choose how applications end.

    Attributes:
        outcomes: the end state of the applications of a task id (their ``task_id`` label):
            ``COMPLETED`` (the default), ``FAILED``, or ``None`` to keep running until deleted.
        validate: checks a SparkApplication and returns its problems (the CRD schema).
        refused: ``(method, resource)`` → HTTP status, e.g. ``{("POST", "secrets"): 403}``: requests the
            API server refuses, as it does when the identity lacks an RBAC permission.
        driver_env: the environment each application's driver started with (by the application's uid).
    """

    validate: Callable[[Mapping[str, Any]], list[str]]
    url: str = ""
    outcomes: dict[str, str | None] = field(default_factory=dict)
    apps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    config_maps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    refused: dict[tuple[str, str], int] = field(default_factory=dict)
    driver_env: dict[str, dict[str, str]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    logs: dict[tuple[str, str], str] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    _steps: dict[str, int] = field(default_factory=dict)
    _scripts: dict[str, list[str]] = field(default_factory=dict)
    _start_failures: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    def calls(self, method: str, fragment: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and fragment in r.path]

    def reset(self) -> None:
        with self._lock:
            stores = (self.apps, self.config_maps, self.secrets, self.pods, self.logs, self.outcomes, self.refused)
            for store in (*stores, self.driver_env, self._steps, self._scripts, self._start_failures):
                store.clear()
            self.requests.clear()

    # The API. ---------------------------------------------------------------------------------------

    def handle(self, request: Request) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(request)
            for pattern, resource, handler in (
                (_APPS, "sparkapplications", self._apps),
                (_CONFIG_MAPS, "configmaps", self._config_maps),
                (_SECRETS, "secrets", self._secrets),
                (_PODS, "pods", self._pods),
                (_LOG, "pods/log", self._log),
            ):
                if match := pattern.match(request.path):
                    if code := self.refused.get((request.method, resource)):
                        verb = {"POST": "create", "GET": "get", "DELETE": "delete"}.get(request.method, request.method)
                        message = f'{resource} is forbidden: User "airflow" cannot {verb} resource "{resource}"'
                        return code, _status(code, "Forbidden", message)
                    return handler(request, *match.groups())
        return 404, _status(404, "NotFound", f"no route for {request.path}")

    def _apps(self, request: Request, namespace: str, name: str | None) -> tuple[int, Any]:
        key = (namespace, name or "")
        if request.method == "POST" and name is None:
            app = dict(request.body)
            problems = self.validate(app)
            if problems:
                return 422, _status(422, "Invalid", "SparkApplication is invalid: " + "; ".join(problems))
            key = (namespace, app["metadata"]["name"])
            if key in self.apps:
                return 409, _status(409, "AlreadyExists", f'sparkapplications "{key[1]}" already exists')
            app["metadata"] = {**app["metadata"], **self._new_metadata(namespace)}
            app["status"] = {}
            self.apps[key] = app
            self._steps[app["metadata"]["uid"]] = 0
            # How it ends is decided when it is created, as the pipeline it runs decides it.
            outcome = self.outcomes.get(app["metadata"]["labels"].get("task_id", ""), "COMPLETED")
            self._scripts[app["metadata"]["uid"]] = ["SUBMITTED", "RUNNING", *([outcome] if outcome else [])]
            return 201, app
        if request.method == "GET" and name is None:
            items = [a for (ns, _), a in self.apps.items() if ns == namespace]
            limit = int(request.query.get("limit", ["0"])[0] or 0)
            return 200, {"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplicationList",
                         "metadata": {}, "items": items[:limit] if limit else items}  # fmt: skip
        if key not in self.apps:
            return 404, _status(404, "NotFound", f'sparkapplications.sparkoperator.k8s.io "{name}" not found')
        app = self.apps[key]
        if request.method == "GET":
            self._advance(app)
            return 200, app
        if request.method == "DELETE":
            wanted = ((request.body or {}).get("preconditions") or {}).get("uid")
            if wanted and wanted != app["metadata"]["uid"]:
                return 409, _status(409, "Conflict", "Precondition failed: UID in precondition does not match")
            del self.apps[key]
            uid = app["metadata"]["uid"]
            # The operator's pods and the owned ConfigMap and Secret go with the application (garbage collection).
            for store in (self.pods, self.config_maps, self.secrets):
                for k, obj in list(store.items()):
                    if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or []):
                        del store[k]
            return 200, _status(200, "Success", "deleted")
        return 405, _status(405, "MethodNotAllowed", request.method)

    def _config_maps(self, request: Request, namespace: str, name: str | None) -> tuple[int, Any]:
        return self._objects(self.config_maps, "configmaps", request, namespace, name)

    def _secrets(self, request: Request, namespace: str, name: str | None) -> tuple[int, Any]:
        if request.method == "POST" and name is None:
            data = request.body.get("data") or {}
            for key, value in data.items():
                try:
                    base64.b64decode(value, validate=True)
                except (binascii.Error, TypeError):
                    message = f'Secret in version "v1" cannot be handled as a Secret: data[{key}]: illegal base64 data'
                    return 400, _status(400, "BadRequest", message)
        return self._objects(self.secrets, "secrets", request, namespace, name)

    def _objects(
        self,
        store: dict[tuple[str, str], dict[str, Any]],
        plural: str,
        request: Request,
        namespace: str,
        name: str | None,
    ) -> tuple[int, Any]:
        """Create, get and delete (with a uid precondition) a namespaced core object."""
        if request.method == "POST" and name is None:
            obj = dict(request.body)
            key = (namespace, obj["metadata"]["name"])
            if key in store:
                return 409, _status(409, "AlreadyExists", f'{plural} "{key[1]}" already exists')
            obj["metadata"] = {**obj["metadata"], **self._new_metadata(namespace)}
            store[key] = obj
            return 201, obj
        key = (namespace, name or "")
        if key not in store:
            return 404, _status(404, "NotFound", f'{plural} "{name}" not found')
        if request.method == "GET":
            return 200, store[key]
        if request.method == "DELETE":
            wanted = ((request.body or {}).get("preconditions") or {}).get("uid")
            if wanted and wanted != store[key]["metadata"]["uid"]:
                return 409, _status(409, "Conflict", "Precondition failed: UID in precondition does not match")
            del store[key]
            return 200, _status(200, "Success", "deleted")
        return 405, _status(405, "MethodNotAllowed", request.method)

    def _pods(self, request: Request, namespace: str) -> tuple[int, Any]:
        selector = dict(
            part.split("=", 1) for part in request.query.get("labelSelector", [""])[0].split(",") if "=" in part
        )
        items = [
            pod
            for (ns, _), pod in self.pods.items()
            if ns == namespace and all(pod["metadata"]["labels"].get(k) == v for k, v in selector.items())
        ]
        return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}

    def _log(self, request: Request, namespace: str, pod: str) -> tuple[int, Any]:
        if (namespace, pod) not in self.pods:
            return 404, _status(404, "NotFound", f'pods "{pod}" not found')
        return 200, self.logs[(namespace, pod)]

    # The Spark operator. ----------------------------------------------------------------------------

    def _new_metadata(self, namespace: str) -> dict[str, Any]:
        n = next(self._counter)
        return {
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "resourceVersion": str(n),
            "creationTimestamp": f"2024-01-15T00:00:{n % 60:02d}Z",
        }

    def _advance(self, app: dict[str, Any]) -> None:
        uid = app["metadata"]["uid"]
        script = self._scripts[uid]
        step = min(self._steps[uid], len(script) - 1)
        self._steps[uid] += 1
        state = script[step]
        name = app["metadata"]["name"]
        if state != "SUBMITTED" and uid not in self.driver_env and uid not in self._start_failures:
            self._start_driver(app)
        if uid in self._start_failures:
            state = "FAILED"
            self._scripts[uid] = [*script[:step], state]
        status: dict[str, Any] = {"applicationState": {"state": state}, "submissionAttempts": 1}
        if state != "SUBMITTED":
            pod_name = f"{name}-driver"
            status["driverInfo"] = {"podName": pod_name}
            status["sparkApplicationId"] = f"spark-{uid[:8]}"
            self._driver_pod(app, pod_name, state)
        if uid in self._start_failures:
            status["applicationState"]["errorMessage"] = f"driver pod failed to start: {self._start_failures[uid]}"
        elif state == "FAILED":
            status["applicationState"]["errorMessage"] = "driver container failed with ExitCode: 1, Reason: Error"
        app["status"] = status

    def _start_driver(self, app: dict[str, Any]) -> None:
        """Build the driver container's environment as the kubelet does, or record why it cannot start."""
        namespace, uid = app["metadata"]["namespace"], app["metadata"]["uid"]
        driver = app["spec"]["driver"]
        env: dict[str, str] = {}
        for source in driver.get("envFrom") or []:
            kind, store = ("secretRef", self.secrets) if "secretRef" in source else ("configMapRef", self.config_maps)
            ref = source[kind]
            obj = store.get((namespace, ref["name"]))
            if obj is None:
                if not ref.get("optional"):
                    self._start_failures[uid] = f'Error: {kind[:-3].lower()} "{ref["name"]}" not found'
                    return
                continue
            env.update({source.get("prefix", "") + k: _value(obj, k) for k in obj.get("data") or {}})
        for var in driver.get("env") or []:
            if "value" in var:
                env[var["name"]] = var["value"]
                continue
            ref = var["valueFrom"]["secretKeyRef"]
            secret = self.secrets.get((namespace, ref["name"]))
            if secret is None or ref["key"] not in (secret.get("data") or {}):
                self._start_failures[uid] = (
                    f'Error: secret "{ref["name"]}" not found'
                    if secret is None
                    else f"Error: couldn't find key {ref['key']} in Secret {namespace}/{ref['name']}"
                )
                return
            env[var["name"]] = _value(secret, ref["key"])
        self.driver_env[uid] = env

    def _driver_pod(self, app: dict[str, Any], pod_name: str, state: str) -> None:
        namespace, name, uid = app["metadata"]["namespace"], app["metadata"]["name"], app["metadata"]["uid"]
        phase = {"RUNNING": "Running", "COMPLETED": "Succeeded", "FAILED": "Failed"}[state]
        self.pods[(namespace, pod_name)] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": namespace,
                "uid": f"pod-{uid}",
                "creationTimestamp": app["metadata"]["creationTimestamp"],
                "labels": {
                    **app["spec"]["driver"].get("labels", {}),
                    "sparkoperator.k8s.io/app-name": name,
                    "spark-role": "driver",
                },
                "ownerReferences": [
                    {"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication", "name": name, "uid": uid}
                ],
            },
            "spec": {"containers": [{"name": "spark-kubernetes-driver", "image": app["spec"]["image"]}]},
            "status": {"phase": phase},
        }
        self.logs[(namespace, pod_name)] = self._driver_log(app, state)

    def _driver_log(self, app: dict[str, Any], state: str) -> str:
        """What the driver prints: one line per sequence of the mounted config, then the metrics line."""
        namespace = app["metadata"]["namespace"]
        volume = next(v for v in app["spec"]["volumes"] if "configMap" in v)
        config_map = self.config_maps.get((namespace, volume["configMap"]["name"]))
        if config_map is None:  # the kubelet would keep the pod in ContainerCreating
            return "MountVolume.SetUp failed: configmap not found\n"
        if app["metadata"]["uid"] in self._start_failures:  # CreateContainerConfigError: the driver never ran
            return self._start_failures[app["metadata"]["uid"]] + "\n"
        config = json.loads(config_map["data"]["config.json"])
        lines = ["Spark Command: /opt/spark/bin/spark-submit ... local:///opt/sparkpipe/sparkpipe_main.py"]
        if state == "RUNNING":
            return "\n".join(lines) + "\n"
        sequences: dict[str, Any] = {}
        for i, sequence in enumerate(config["sequences"]):
            failed = state == "FAILED" and i == len(config["sequences"]) - 1
            error = "AnalysisException: [TABLE_OR_VIEW_NOT_FOUND] missing_table" if failed else None
            rows = 0 if failed else 10 * (i + 1)
            lines.append(f"sparkpipe: sequence {sequence['name']}: {'failed' if failed else f'{rows} rows'}")
            target = sequence["target"]
            sequences[sequence["name"]] = {
                "status": "failed" if failed else "succeeded",
                "rows_written": rows,
                "duration_s": 1.0,
                "target": {"type": target["type"], "uri": target.get("path")},
                "error": error,
            }
        metrics = {
            "app_name": config["app_name"],
            "status": "failed" if state == "FAILED" else "succeeded",
            "started_at": "2024-01-15T00:00:00+00:00",
            "duration_s": 3.5,
            "spark_app_id": app["status"].get("sparkApplicationId") or f"spark-{app['metadata']['uid'][:8]}",
            "runtime": {"kind": "spark"},
            "sequences": sequences,
        }
        arguments = app["spec"].get("arguments", [])
        if "--metrics-out" in arguments:
            target_uri = arguments[arguments.index("--metrics-out") + 1]
            path = Path(urlsplit(target_uri).path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**metrics, "written_to": "staging"}))
        lines.append("SPARKPIPE_METRICS " + json.dumps(metrics))
        return "\n".join(lines) + "\n"


def _value(obj: Mapping[str, Any], key: str) -> str:
    """A Secret's value (base64 in ``data``) or a ConfigMap's, as the container sees it."""
    value = obj["data"][key]
    return base64.b64decode(value).decode() if obj.get("kind") == "Secret" else str(value)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure" if code >= 300 else "Success",
            "message": message, "reason": reason, "code": code}  # fmt: skip


def serve(fake: FakeKubernetes) -> ThreadingHTTPServer:
    """Start the fake on 127.0.0.1 (a free port) in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._send(401, _status(401, "Unauthorized", "Unauthorized"))
                return
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            query = parse_qs(url.query)
            code, payload = fake.handle(Request(self.command, url.path, query, body))
            if isinstance(payload, str) and query.get("follow", [""])[0].lower() == "true":
                self._send_chunked(payload)
            else:
                self._send(code, payload)

        do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _handle

        def _send(self, code: int, payload: Any) -> None:
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send_chunked(self, text: str) -> None:
            # A followed log arrives line by line in chunks, as the API server streams it.
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for line in text.splitlines(keepends=True):
                data = line.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="fake-kubernetes", daemon=True).start()
    return server
