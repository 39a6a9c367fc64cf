"""Loopback fakes of the endpoints the driver reads secrets from, other than AWS's own APIs (moto serves those).

One HTTP server plays four parts, each checking what the real one checks:

- the Google metadata server: an access token for the default service account, only with
  ``Metadata-Flavor: Google``;
- Google's OAuth token endpoint: an access token for an ``authorized_user`` refresh token;
- Google Secret Manager's REST API: ``GET /v1/{name}:access`` with that bearer token, answering like the
  real API (payload base64 with its CRC32C; ``NOT_FOUND`` / ``PERMISSION_DENIED`` errors);
- the AWS instance metadata service (IMDSv2: a session token first) and the container credentials
  endpoint (with its authorization token), handing out one set of AWS credentials.

The tests prove the fakes speak the real protocols by pointing Google's and botocore's own clients at them.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from spark_job.config.secret_manager_gcp import crc32c

GOOGLE_TOKEN = "ya29.sparkpipe-fake-token"
REFRESHED_TOKEN = "ya29.sparkpipe-refreshed-token"
REFRESH_TOKEN = "1//sparkpipe-refresh-token"
IMDS_TOKEN = "imds-session-token"
CONTAINER_TOKEN = "container-authorization-token"
PROJECT_NUMBER = "424242424242"
SERVICE_ACCOUNT = "driver@sparkpipe-project.iam.gserviceaccount.com"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


@dataclass
class SecretEndpoints:
    """The fakes' state.

    Attributes:
        google_secrets: ``projects/P/secrets/S`` → versions' payloads (version N is ``[N - 1]``).
        aws_credentials: what the instance metadata and container endpoints hand out.
        corrupt: names whose payload is sent with a wrong CRC32C.
        requests: ``METHOD path`` of every request received.
    """

    url: str = ""
    google_secrets: dict[str, list[bytes]] = field(default_factory=dict)
    aws_credentials: dict[str, str] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.requests.append(f"{method} {path}")
        if path.startswith("/computeMetadata/v1/"):
            return self._metadata(path, headers)
        if path == "/token" and method == "POST":
            return self._oauth(body)
        route = path.partition("?")[0]
        if route.startswith("/v1/") and route.endswith(":access") and method == "GET":
            return self._access(route[len("/v1/") : -len(":access")], headers)
        if path.startswith("/latest/"):
            return self._imds(method, path, headers)
        if path == "/container-credentials":
            if headers.get("Authorization") != CONTAINER_TOKEN:
                return _json(401, {"message": "unauthorized"})
            return _json(200, self._aws_document())
        return _json(404, {"error": {"code": 404, "message": f"no route {path}", "status": "NOT_FOUND"}})

    def _metadata(self, path: str, headers: Any) -> tuple[int, dict[str, str], bytes]:
        if headers.get("Metadata-Flavor") != "Google":
            return 403, {"Content-Type": "text/html"}, b"Missing Metadata-Flavor:Google header."
        if path.startswith("/computeMetadata/v1/instance/service-accounts/default/?recursive=true"):
            return _json(200, {"aliases": ["default"], "email": SERVICE_ACCOUNT, "scopes": [CLOUD_PLATFORM]})
        if path.startswith("/computeMetadata/v1/instance/service-accounts/default/token"):
            return _json(200, {"access_token": GOOGLE_TOKEN, "expires_in": 3599, "token_type": "Bearer"})
        if path.startswith("/computeMetadata/v1/instance/service-accounts/default/"):
            return (
                200,
                {"Content-Type": "application/text", "Metadata-Flavor": "Google"},
                b"driver@p.iam.gserviceaccount.com",
            )
        if path.startswith("/computeMetadata/v1/project/project-id"):
            return _text(b"sparkpipe-project")
        return 404, {"Metadata-Flavor": "Google"}, b"not found"

    def _oauth(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != REFRESH_TOKEN:
            return _json(400, {"error": "invalid_grant", "error_description": "Bad Request"})
        return _json(200, {"access_token": REFRESHED_TOKEN, "expires_in": 3599, "token_type": "Bearer"})

    def _access(self, name: str, headers: Any) -> tuple[int, dict[str, str], bytes]:
        if headers.get("Authorization") not in (f"Bearer {GOOGLE_TOKEN}", f"Bearer {REFRESHED_TOKEN}"):
            return _google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        secret, _, version = name.partition("/versions/")
        versions = self.google_secrets.get(secret)
        if versions is None:
            return _google_error(
                403,
                "PERMISSION_DENIED",
                f"Permission 'secretmanager.versions.access' denied for resource '{name}' (or it may not exist).",
            )
        number = len(versions) if version == "latest" else int(version) if version.isdigit() else 0
        if not 1 <= number <= len(versions):
            return _google_error(404, "NOT_FOUND", f"Secret Version [{name}] not found.")
        data = versions[number - 1]
        checksum = crc32c(data) + (1 if secret in self.corrupt else 0)
        project_secret = secret.replace(secret.split("/")[1], PROJECT_NUMBER, 1)
        return _json(
            200,
            {
                "name": f"{project_secret}/versions/{number}",
                "payload": {"data": base64.b64encode(data).decode(), "dataCrc32c": str(checksum)},
            },
        )

    def _imds(self, method: str, path: str, headers: Any) -> tuple[int, dict[str, str], bytes]:
        if path == "/latest/api/token":
            if method != "PUT" or not headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return 400, {}, b""
            return 200, {"Content-Type": "text/plain"}, IMDS_TOKEN.encode()
        if headers.get("X-aws-ec2-metadata-token") != IMDS_TOKEN:
            return 401, {}, b""
        if path == "/latest/meta-data/iam/security-credentials/":
            return 200, {"Content-Type": "text/plain"}, b"sparkpipe-emr-ec2-role"
        if path == "/latest/meta-data/iam/security-credentials/sparkpipe-emr-ec2-role":
            return _json(200, {"Code": "Success", "Type": "AWS-HMAC", **self._aws_document()})
        if path == "/latest/meta-data/placement/region":
            return 200, {"Content-Type": "text/plain"}, b"eu-west-1"
        return 404, {}, b""

    def _aws_document(self) -> dict[str, str]:
        return {**self.aws_credentials, "Expiration": "2099-01-01T00:00:00Z"}


def _json(status: int, body: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json; charset=UTF-8"}, json.dumps(body).encode()


def _text(body: bytes) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/text", "Metadata-Flavor": "Google"}, body


def _google_error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    return _json(status, {"error": {"code": status, "message": message, "status": code}})


@contextmanager
def serve() -> Iterator[SecretEndpoints]:
    endpoints = SecretEndpoints()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, headers, payload = endpoints.handle(self.command, self.path, self.headers, body)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PUT = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    endpoints.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoints
    finally:
        server.shutdown()
        server.server_close()
