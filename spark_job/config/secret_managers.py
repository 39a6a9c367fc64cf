"""Secret-manager references, resolved by the driver with the standard library alone.

``${secret:aws:NAME_OR_ARN}`` reads AWS Secrets Manager, ``${secret:gcp:projects/P/secrets/S}`` (optionally
``/versions/V``, default ``latest``) reads Google Secret Manager. A ``#key`` suffix picks one field of a
secret holding a JSON object: ``${secret:aws:prod/orders-db#password}``.

Credentials are the ones the driver's machine already has, found the way the clouds' SDKs find them:

- AWS: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``; a web identity
  (``AWS_WEB_IDENTITY_TOKEN_FILE`` + ``AWS_ROLE_ARN``: EMR on EKS, IRSA); the shared credentials file
  (``AWS_SHARED_CREDENTIALS_FILE``, ``AWS_PROFILE``); the container endpoint
  (``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`` / ``_FULL_URI``: ECS, EKS Pod Identity); the instance
  metadata service (IMDSv2: EMR on EC2). Endpoints follow ``AWS_ENDPOINT_URL_SECRETS_MANAGER``,
  ``AWS_ENDPOINT_URL_STS`` and ``AWS_ENDPOINT_URL``; the region comes from an ARN, ``AWS_REGION`` /
  ``AWS_DEFAULT_REGION`` or the instance metadata.
- Google: ``GOOGLE_OAUTH_ACCESS_TOKEN``; an ``authorized_user`` file in
  ``GOOGLE_APPLICATION_CREDENTIALS``; the metadata server (``GCE_METADATA_HOST``: Dataproc, Dataproc
  Serverless, GKE Workload Identity). ``SPARKPIPE_GCP_SECRET_MANAGER_ENDPOINT`` overrides the endpoint.

The managers are ``spark_job.config.secret_manager_aws`` and ``spark_job.config.secret_manager_gcp``; more
plug in through the ``sparkpipe.secret_providers`` entry point group: a :class:`SecretProvider` subclass
whose ``type_name`` is the word after ``secret:``.
"""

from __future__ import annotations

import importlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from spark_job.registry import Registry

TIMEOUT_S = 10.0
METADATA_TIMEOUT_S = 2.0
ATTEMPTS = 3


class SecretUnavailable(Exception):
    """A secret could not be read; the message says why without quoting any secret value."""


class SecretProvider:
    """One secret manager: checks the shape of a reference, then reads the secret's text."""

    type_name: ClassVar[str]
    example: ClassVar[str]

    def check(self, name: str) -> str | None:
        """What is wrong with the reference ``name`` (the part after ``secret:<type>:``), or None."""
        raise NotImplementedError

    def fetch(self, name: str, environ: Mapping[str, str]) -> str:
        """The secret's text; raises :class:`SecretUnavailable`."""
        raise NotImplementedError


secret_providers: Registry[SecretProvider] = Registry("secret provider", "sparkpipe.secret_providers")
BUILT_IN = ("spark_job.config.secret_manager_aws", "spark_job.config.secret_manager_gcp")
"""The modules of the built-in managers, imported (so registered) before the first lookup."""


def provider(kind: str) -> type[SecretProvider] | None:
    """The manager of ``${secret:<kind>:...}`` references (None when there is none)."""
    for module in BUILT_IN:
        importlib.import_module(module)
    return secret_providers.get(kind)


def read_secret(reference: str, environ: Mapping[str, str], cache: dict[str, str] | None = None) -> str:
    """The value of ``<type>:<name>[#key]``; ``cache`` holds whole secrets by ``<type>:<name>``."""
    kind, name, key = split_reference(reference)
    provider_cls = provider(kind)
    if provider_cls is None:
        raise SecretUnavailable(f"unknown secret manager {kind!r}")
    whole = f"{kind}:{name}"
    if cache is not None and whole in cache:
        text = cache[whole]
    else:
        text = provider_cls().fetch(name, environ)
        if cache is not None:
            cache[whole] = text
    return text if key is None else json_field(text, key)


def split_reference(reference: str) -> tuple[str, str, str | None]:
    kind, _, rest = reference.partition(":")
    name, hash_sign, key = rest.partition("#")
    return kind.strip(), name.strip(), key.strip() if hash_sign else None


def check_reference(reference: str) -> str | None:
    """What is wrong with ``<type>:<name>[#key]`` (no network), or None."""
    kind, name, key = split_reference(reference)
    provider_cls = provider(kind)
    if provider_cls is None:
        known = ", ".join(f"${{secret:{n}:...}}" for n in secret_providers.names())
        return f"unknown secret manager {kind!r}: a reference is MANAGER:NAME, one of {known}"
    if key == "":
        return "nothing after '#': name the JSON field to read, or drop the '#'"
    if problem := provider_cls().check(name):
        return f"{problem} (for example ${{secret:{kind}:{provider_cls.example}}})"
    return None


def json_field(text: str, key: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        raise SecretUnavailable(f"#{key} reads a JSON field, but the secret is not JSON") from None
    if not isinstance(data, dict):
        raise SecretUnavailable(f"#{key} reads a JSON field, but the secret is not a JSON object")
    if key not in data:
        raise SecretUnavailable(f"the secret's JSON object has no field {key!r} (it has {len(data)} fields)")
    value = data[key]
    if isinstance(value, (dict, list)) or value is None:
        raise SecretUnavailable(f"the secret's field {key!r} is not a string or number")
    return str(value).lower() if isinstance(value, bool) else str(value)


# HTTP. ----------------------------------------------------------------------------------------------

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_PROXIED = urllib.request.build_opener()


@dataclass
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def http(
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    *,
    what: str,
    timeout: float = TIMEOUT_S,
    direct: bool = False,
    attempts: int = ATTEMPTS,
) -> Response:
    """One request, retried on connection errors, throttling and 5xx; other statuses are returned."""
    opener = _DIRECT if direct else _PROXIED
    problem = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(0.5 * 2 ** (attempt - 1))
        request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
        try:
            with opener.open(request, timeout=timeout) as resp:
                return Response(resp.status, resp.read())
        except urllib.error.HTTPError as exc:
            response = Response(exc.code, exc.read())
            if exc.code not in (429, 500, 502, 503, 504) or attempt == attempts - 1:
                return response
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            problem = f"{reason}"
    raise SecretUnavailable(f"cannot reach {what} at {_origin(url)}: {problem}")


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
