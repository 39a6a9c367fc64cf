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

More managers plug in through the ``sparkpipe.secret_providers`` entry point group: a
:class:`SecretProvider` subclass whose ``type_name`` is the word after ``secret:``.
"""

from __future__ import annotations

import base64
import configparser
import datetime
import hashlib
import hmac
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
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


def read_secret(reference: str, environ: Mapping[str, str], cache: dict[str, str] | None = None) -> str:
    """The value of ``<type>:<name>[#key]``; ``cache`` holds whole secrets by ``<type>:<name>``."""
    kind, name, key = split_reference(reference)
    provider_cls = secret_providers.get(kind)
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
    provider_cls = secret_providers.get(kind)
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


# AWS Secrets Manager. -------------------------------------------------------------------------------

_AWS_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}\Z")
_AWS_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):\d{12}:secret:[A-Za-z0-9/_+=.@-]+\Z")


@dataclass(frozen=True)
class AwsCredentials:
    access_key: str
    secret_key: str
    token: str | None = None
    source: str = ""


@secret_providers.register
class AwsSecretsManager(SecretProvider):
    """``${secret:aws:NAME_OR_ARN[#key]}``: the current version (``AWSCURRENT``) of a secret."""

    type_name = "aws"
    example = "prod/orders-db#password"

    def check(self, name: str) -> str | None:
        if name.startswith("arn:"):
            return None if _AWS_ARN.match(name) else "not a Secrets Manager secret ARN"
        if not _AWS_NAME.match(name):
            return "an AWS secret name is 1-512 letters, digits and /_+=.@- (or give its ARN)"
        return None

    def fetch(self, name: str, environ: Mapping[str, str]) -> str:
        arn = _AWS_ARN.match(name)
        imds = InstanceMetadata(environ)
        region = arn.group(1) if arn else aws_region(environ, imds)
        endpoint = aws_endpoint("SECRETS_MANAGER", f"https://secretsmanager.{region}.amazonaws.com", environ)
        credentials = aws_credentials(environ, region, imds)
        body = json.dumps({"SecretId": name}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "secretsmanager.GetSecretValue"}
        signed = sigv4_headers("POST", endpoint + "/", headers, body, credentials, region, "secretsmanager")
        response = http("POST", endpoint + "/", signed, body, what="AWS Secrets Manager")
        data = response.json()
        if response.status != 200 or not isinstance(data, dict):
            raise SecretUnavailable(
                f"AWS Secrets Manager answered {_aws_error(response)} (credentials: {credentials.source})"
            )
        if isinstance(data.get("SecretString"), str):
            return str(data["SecretString"])
        try:
            return base64.b64decode(data["SecretBinary"]).decode("utf-8")
        except (KeyError, ValueError):
            raise SecretUnavailable("the secret has neither a string nor a UTF-8 binary value") from None


def _aws_error(response: Response) -> str:
    """``HTTP 404 ResourceNotFoundException: ...`` from a JSON or an XML error body."""
    data = response.json()
    if isinstance(data, dict):
        kind = str(data.get("__type", "")).rpartition("#")[2]
        message = str(data.get("message") or data.get("Message") or "")
    else:
        fields = _xml_fields(response.body)
        kind, message = fields.get("Code", ""), fields.get("Message", "")
    return f"HTTP {response.status} {kind}: {message}".rstrip(": ")


def _xml_fields(body: bytes) -> dict[str, str]:
    """Leaf element name → text of an AWS XML answer (namespaces dropped); empty when it is not XML."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return {}
    return {el.tag.rpartition("}")[2]: (el.text or "").strip() for el in root.iter()}


def aws_endpoint(service: str, default: str, environ: Mapping[str, str]) -> str:
    return (environ.get(f"AWS_ENDPOINT_URL_{service}") or environ.get("AWS_ENDPOINT_URL") or default).rstrip("/")


def aws_region(environ: Mapping[str, str], imds: InstanceMetadata) -> str:
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if region:
        return region
    try:
        return imds.get("/latest/meta-data/placement/region")
    except SecretUnavailable:
        raise SecretUnavailable("no AWS region: set AWS_REGION or give the secret's ARN") from None


def aws_credentials(environ: Mapping[str, str], region: str, imds: InstanceMetadata) -> AwsCredentials:
    """The first credentials of the SDKs' default chain that the driver has."""
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        return AwsCredentials(
            environ["AWS_ACCESS_KEY_ID"],
            environ["AWS_SECRET_ACCESS_KEY"],
            environ.get("AWS_SESSION_TOKEN") or None,
            "environment variables",
        )
    if environ.get("AWS_WEB_IDENTITY_TOKEN_FILE") and environ.get("AWS_ROLE_ARN"):
        return _web_identity(environ, region)
    shared = _shared_file(environ)
    if shared is not None:
        return shared
    if environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        return _container(environ)
    try:
        role = imds.get("/latest/meta-data/iam/security-credentials/").splitlines()[0].strip()
        data = json.loads(imds.get(f"/latest/meta-data/iam/security-credentials/{role}"))
        return AwsCredentials(data["AccessKeyId"], data["SecretAccessKey"], data.get("Token"), "instance metadata")
    except (SecretUnavailable, ValueError, KeyError, IndexError):
        pass
    raise SecretUnavailable(
        "no AWS credentials found (environment, web identity, shared credentials file, container or "
        "instance metadata): give the driver an IAM role allowed secretsmanager:GetSecretValue"
    )


def _web_identity(environ: Mapping[str, str], region: str) -> AwsCredentials:
    path = environ["AWS_WEB_IDENTITY_TOKEN_FILE"]
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.read().strip()
    except OSError as exc:
        raise SecretUnavailable(f"cannot read the web identity token file {path}: {exc.strerror}") from None
    query = urllib.parse.urlencode(
        {
            "Action": "AssumeRoleWithWebIdentity",
            "Version": "2011-06-15",
            "RoleArn": environ["AWS_ROLE_ARN"],
            "RoleSessionName": environ.get("AWS_ROLE_SESSION_NAME") or f"sparkpipe-{int(time.time())}",
            "WebIdentityToken": token,
        }
    ).encode()
    endpoint = aws_endpoint("STS", f"https://sts.{region}.amazonaws.com", environ)
    response = http(
        "POST",
        endpoint + "/",
        {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        query,
        what="AWS STS",
    )
    found = _xml_fields(response.body)
    if response.status != 200 or not found.get("AccessKeyId"):
        raise SecretUnavailable(
            f"AWS STS refused AssumeRoleWithWebIdentity for {environ['AWS_ROLE_ARN']}: {_aws_error(response)}"
        )
    return AwsCredentials(found["AccessKeyId"], found["SecretAccessKey"], found.get("SessionToken"), "web identity")


def _shared_file(environ: Mapping[str, str]) -> AwsCredentials | None:
    path = environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".aws", "credentials"
    )
    profile = environ.get("AWS_PROFILE") or "default"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        if not parser.read(path, encoding="utf-8"):
            return None
    except configparser.Error:
        raise SecretUnavailable(f"the AWS shared credentials file {path} is not valid INI") from None
    if not parser.has_section(profile):
        return None
    section = parser[profile]
    if not section.get("aws_access_key_id") or not section.get("aws_secret_access_key"):
        return None
    return AwsCredentials(
        section["aws_access_key_id"],
        section["aws_secret_access_key"],
        section.get("aws_session_token") or None,
        f"shared credentials file, profile {profile}",
    )


def _container(environ: Mapping[str, str]) -> AwsCredentials:
    relative = environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    url = f"http://169.254.170.2{relative}" if relative else environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
    headers: dict[str, str] = {}
    token = environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
    token_file = environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise SecretUnavailable(f"cannot read {token_file}: {exc.strerror}") from None
    if token:
        headers["Authorization"] = token
    response = http("GET", url, headers, what="the container credentials endpoint", direct=True)
    data = response.json()
    if response.status != 200 or not isinstance(data, dict) or "AccessKeyId" not in data:
        raise SecretUnavailable(f"the container credentials endpoint answered HTTP {response.status}")
    return AwsCredentials(data["AccessKeyId"], data["SecretAccessKey"], data.get("Token"), "container credentials")


class InstanceMetadata:
    """The EC2 instance metadata service (IMDSv2): one session token for every read of a fetch."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.base = (environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or "http://169.254.169.254").rstrip("/")
        self.enabled = environ.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true"
        self.token: str | None = None
        self.unavailable: SecretUnavailable | None = None  # no token: not asked again (off EC2, each try waits)

    def get(self, path: str) -> str:
        if not self.enabled:
            raise SecretUnavailable("the instance metadata service is disabled (AWS_EC2_METADATA_DISABLED)")
        if self.unavailable is not None:
            raise self.unavailable
        if self.token is None:
            try:
                self.token = self._request("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "300"})
            except SecretUnavailable as exc:
                self.unavailable = exc
                raise
        return self._request("GET", path, {"X-aws-ec2-metadata-token": self.token})

    def _request(self, method: str, path: str, headers: Mapping[str, str]) -> str:
        response = http(
            method,
            self.base + path,
            headers,
            b"" if method == "PUT" else None,
            what="the instance metadata service",
            timeout=METADATA_TIMEOUT_S,
            direct=True,
            attempts=2,
        )
        if response.status != 200:
            raise SecretUnavailable(f"the instance metadata service answered HTTP {response.status} for {path}")
        return response.body.decode()


def sigv4_headers(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: AwsCredentials,
    region: str,
    service: str,
    now: datetime.datetime | None = None,
) -> dict[str, str]:
    """``headers`` plus ``Host``, ``X-Amz-Date``, the session token and the Signature Version 4 ``Authorization``."""
    parts = urllib.parse.urlsplit(url)
    stamp = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    host = parts.hostname or ""
    if parts.port and (parts.scheme, parts.port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{parts.port}"
    signed = {**headers, "Host": host, "X-Amz-Date": stamp}
    if credentials.token:
        signed["X-Amz-Security-Token"] = credentials.token
    canonical = {k.lower(): " ".join(str(v).split()) for k, v in signed.items()}
    names = ";".join(sorted(canonical))
    query = "&".join(
        sorted(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
            for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        )
    )
    request = "\n".join(
        [
            method,
            urllib.parse.quote(parts.path or "/", safe="/-_.~"),
            query,
            "".join(f"{k}:{canonical[k]}\n" for k in sorted(canonical)),
            names,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(request.encode()).hexdigest()])
    key = f"AWS4{credentials.secret_key}".encode()
    for part in (stamp[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, SignedHeaders={names}, Signature={signature}"
    )
    return signed


# Google Secret Manager. -----------------------------------------------------------------------------

_GCP_NAME = re.compile(
    r"projects/([a-z0-9.:-]{1,100})(?:/locations/([a-z0-9-]{1,63}))?/secrets/([A-Za-z0-9_-]{1,255})"
    r"(?:/versions/([A-Za-z0-9_-]{1,255}))?\Z"
)


@secret_providers.register
class GoogleSecretManager(SecretProvider):
    """``${secret:gcp:projects/P[/locations/L]/secrets/S[/versions/V][#key]}``; version ``latest`` by default."""

    type_name = "gcp"
    example = "projects/my-project/secrets/orders-db-password"

    def check(self, name: str) -> str | None:
        if not _GCP_NAME.match(name):
            return "a Google secret is named projects/PROJECT/secrets/SECRET, optionally with /versions/VERSION"
        return None

    def fetch(self, name: str, environ: Mapping[str, str]) -> str:
        match = _GCP_NAME.match(name)
        if match is None:  # check() ran first; keep the type checker and direct callers honest
            raise SecretUnavailable("not a Google secret name")
        if match.group(4) is None:
            name = f"{name}/versions/latest"
        location = match.group(2)
        default = (
            f"https://secretmanager.{location}.rep.googleapis.com"
            if location
            else "https://secretmanager.googleapis.com"
        )
        endpoint = (environ.get("SPARKPIPE_GCP_SECRET_MANAGER_ENDPOINT") or default).rstrip("/")
        token, source = google_access_token(environ)
        response = http(
            "GET",
            f"{endpoint}/v1/{name}:access",
            {"Authorization": f"Bearer {token}", "Accept": "application/json"},
            what="Google Secret Manager",
        )
        data = response.json()
        if response.status != 200 or not isinstance(data, dict):
            error = data.get("error") if isinstance(data, dict) else None
            detail = f" {error.get('status', '')}: {error.get('message', '')}" if isinstance(error, dict) else ""
            raise SecretUnavailable(
                f"Google Secret Manager answered HTTP {response.status}{detail} (credentials: {source})"
            )
        payload = data.get("payload") or {}
        try:
            raw = base64.b64decode(payload.get("data", ""), validate=True)
        except ValueError:
            raise SecretUnavailable("Google Secret Manager sent a payload that is not base64") from None
        if "dataCrc32c" in payload and int(payload["dataCrc32c"]) != crc32c(raw):
            raise SecretUnavailable("the secret's payload does not match its CRC32C checksum: it was corrupted")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretUnavailable("the secret is not UTF-8 text") from None


def google_access_token(environ: Mapping[str, str]) -> tuple[str, str]:
    """An OAuth access token and where it came from."""
    if environ.get("GOOGLE_OAUTH_ACCESS_TOKEN"):
        return environ["GOOGLE_OAUTH_ACCESS_TOKEN"], "GOOGLE_OAUTH_ACCESS_TOKEN"
    key_file = environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if key_file:
        return _authorized_user(key_file), f"GOOGLE_APPLICATION_CREDENTIALS ({key_file})"
    host = environ.get("GCE_METADATA_HOST") or "metadata.google.internal"
    response = http(
        "GET",
        f"http://{host}/computeMetadata/v1/instance/service-accounts/default/token",
        {"Metadata-Flavor": "Google"},
        what="the metadata server",
        timeout=METADATA_TIMEOUT_S,
        direct=True,
    )
    data = response.json()
    if response.status != 200 or not isinstance(data, dict) or not data.get("access_token"):
        raise SecretUnavailable(f"the metadata server answered HTTP {response.status} for a token")
    return str(data["access_token"]), "the metadata server's default service account"


def _authorized_user(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            info = json.load(fh)
    except (OSError, ValueError) as exc:
        raise SecretUnavailable(f"cannot read GOOGLE_APPLICATION_CREDENTIALS file {path}: {exc}") from None
    if not isinstance(info, dict) or info.get("type") != "authorized_user":
        raise SecretUnavailable(
            f"{path} is a {info.get('type') if isinstance(info, dict) else 'non-JSON'} credentials file: the driver "
            "reads authorized_user files only; run it with a service account attached (metadata server) instead "
            "of a key file"
        )
    body = urllib.parse.urlencode(
        {
            "grant_type": "refresh_token",
            "client_id": info.get("client_id", ""),
            "client_secret": info.get("client_secret", ""),
            "refresh_token": info.get("refresh_token", ""),
        }
    ).encode()
    url = info.get("token_uri") or "https://oauth2.googleapis.com/token"
    response = http(
        "POST", url, {"Content-Type": "application/x-www-form-urlencoded"}, body, what="Google's token endpoint"
    )
    data = response.json()
    if response.status != 200 or not isinstance(data, dict) or not data.get("access_token"):
        raise SecretUnavailable(f"Google's token endpoint refused the refresh token: HTTP {response.status}")
    return str(data["access_token"])


_CRC32C_TABLE: list[int] = []


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum Secret Manager sends with a payload."""
    if not _CRC32C_TABLE:
        for n in range(256):
            crc = n
            for _ in range(8):
                crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
            _CRC32C_TABLE.append(crc)
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
