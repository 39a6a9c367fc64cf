"""AWS Secrets Manager for ``${secret:aws:NAME_OR_ARN[#field]}``: ``GetSecretValue`` signed with Signature
Version 4, with the credentials the driver's machine has (see ``spark_job.config.secret_managers``)."""

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

from spark_job.config.secret_managers import (
    METADATA_TIMEOUT_S,
    Response,
    SecretProvider,
    SecretUnavailable,
    http,
    secret_providers,
)

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
