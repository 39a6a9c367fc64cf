"""Google Secret Manager for ``${secret:gcp:projects/P[/locations/L]/secrets/S[/versions/V][#field]}``: the
payload of a secret version, checked against its CRC32C (see ``spark_job.config.secret_managers``)."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping

from spark_job.config.secret_managers import (
    METADATA_TIMEOUT_S,
    SecretProvider,
    SecretUnavailable,
    http,
    secret_providers,
)

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
