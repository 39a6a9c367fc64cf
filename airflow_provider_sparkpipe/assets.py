"""Airflow Assets for the tables and paths a pipeline writes, so downstream DAGs can be scheduled on them.

The URIs are built here in the canonical form Airflow's sanitizer gives them, so that building an
Asset at DAG parse does not load every installed provider's URI handlers (and boto3, grpc ...).
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from airflow.sdk import Asset

from spark_job.config.urls import strip_credentials

log = logging.getLogger(__name__)

_SCHEME_ALIASES = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}
# Schemes whose official provider normaliser only checks that a bucket (netloc) is named.
_BUCKET_SCHEMES = ("s3", "gs")
_MAX_URI = 1500  # Airflow's limit on an Asset's name and URI


class TargetUriError(ValueError):
    """A target whose URL cannot name an Asset (bad port, no bucket, too long): it gets no outlet."""


def target_uri(target: Mapping[str, Any]) -> str | None:
    """The Asset URI of one target (``PipelineConfig.targets()`` item), None when it has no stable one.

    Paths keep their scheme (``gs://``, ``s3://``, ``hdfs://``; ``s3a://`` becomes ``s3://``); local
    absolute paths become ``file:///...``; BigQuery tables ``bigquery://project/dataset/table`` (none
    without a project); PostgreSQL tables ``postgres://host:port/database/schema/table``; catalog
    tables ``table:<name>``.
    Relative paths and values still holding a Jinja template have no stable URI. Credentials written
    in a URL (user info, ``password=`` parameters, Oracle ``user/password@``) never reach the URI.
    Raises TargetUriError when the URL is malformed (a port that is not a number, ...).
    """
    kind = str(target.get("type", ""))
    uri = target.get("uri")
    table = target.get("table")
    if any("{{" in str(v) for v in (uri, table) if v):
        return None
    if kind == "jdbc" and isinstance(uri, str) and table:
        return _jdbc_uri(uri, str(table))
    if kind == "bigquery" and table:
        parts = str(table).replace(":", ".").split(".")
        # Without a project the table's identity depends on the job's default project: no stable URI.
        return "bigquery://" + "/".join(parts) if len(parts) == 3 else None
    if isinstance(uri, str) and uri:
        return _path_uri(uri)
    if table:
        return f"{kind or 'table'}:{table}"
    return None


def assets_for_targets(targets: Iterable[Mapping[str, Any]], where: str = "") -> list[Asset]:
    """One Asset per distinct target that has a stable URI.

    A target whose URL is malformed gets no Asset and a warning: raising here would fail the import
    of the whole DAG file, every other DAG in it included; the run reports the URL itself.
    """
    seen: dict[str, Asset] = {}
    for target in targets:
        try:
            uri = target_uri(target)
            canonical = canonical_asset_uri(uri) if uri else None
        except ValueError as exc:
            log.warning("%sno Asset for the target %s: %s", f"{where}: " if where else "", _describe(target), exc)
            continue
        if uri and canonical and canonical not in seen:
            seen[canonical] = _asset(uri, canonical, {"sparkpipe_target_type": str(target.get("type", ""))})
    return list(seen.values())


def canonical_asset_uri(uri: str) -> str:
    """``uri`` as Airflow's Asset sanitizer writes it for the schemes this module produces.

    The generic steps (lower-case scheme, no user info, sorted query, no trailing ``/``, no fragment)
    plus what the official providers' normalisers do for ``s3``, ``gs``, ``bigquery`` and ``postgres``.
    """
    if len(uri) > _MAX_URI:
        raise TargetUriError(f"the Asset URI would be {len(uri)} characters long, more than Airflow's {_MAX_URI}")
    parts = urlsplit(uri)
    if not parts.scheme and not parts.netloc:
        return uri
    scheme = parts.scheme.lower()
    netloc = parts.netloc.rpartition("@")[2] if parts.password else parts.netloc
    query = urlencode(sorted(parse_qsl(parts.query))) if parts.query else ""
    parts = parts._replace(scheme=scheme, netloc=netloc, path=parts.path.rstrip("/") or "/", query=query, fragment="")
    return urlunsplit(_normalise(parts))


def _normalise(parts: SplitResult) -> SplitResult:
    scheme = parts.scheme
    if scheme in _BUCKET_SCHEMES and not parts.netloc:
        raise TargetUriError(f"a {scheme}:// URL must name a bucket")
    if scheme == "bigquery" and (not parts.netloc or len(parts.path.split("/")) != 3):
        raise TargetUriError("a bigquery:// URI must be bigquery://project/dataset/table")
    if scheme == "postgres":
        if not parts.netloc:
            raise TargetUriError("a PostgreSQL JDBC URL must name a host")
        if _port(parts) is None:
            parts = parts._replace(netloc=parts.netloc.rstrip(":") + ":5432")
        path = parts.path.split("/")
        if len(path) != 4:
            raise TargetUriError("a postgres:// URI must name the database, schema and table")
        if not path[2]:
            path[2] = "default"
        parts = parts._replace(path="/".join(path))
    return parts


def _asset(name: str, uri: str, extra: dict[str, Any]) -> Asset:
    # Asset's URI converter looks the scheme's normaliser up in the providers manager, which imports
    # every installed provider's asset module (boto3, grpc, google-cloud-*) on first use. The URI is
    # already in that converter's canonical form (canonical_asset_uri; tests compare the two), so the
    # Asset is built on a URI the converter returns unchanged without a lookup, then given its own.
    asset = Asset(name=name, uri="x-sparkpipe:pending", extra=extra)
    object.__setattr__(asset, "uri", uri)
    return asset


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError as exc:  # "Port could not be cast to integer value as 'abc'", "out of range"
        raise TargetUriError(f"bad port in {urlunsplit(parts._replace(query='', fragment=''))}: {exc}") from None


def _describe(target: Mapping[str, Any]) -> str:
    url = target.get("uri") or target.get("table") or "?"
    return f"{target.get('type', '?')} {strip_credentials(str(url))}"


def _path_uri(path: str) -> str | None:
    parts = urlsplit(path)
    scheme = parts.scheme.lower()
    if not scheme:
        if not path.startswith("/"):
            return None  # relative to the driver's working directory: not a stable identity
        return "file://" + posixpath.normpath(path)
    scheme = _SCHEME_ALIASES.get(scheme, scheme)
    if scheme == "file":
        return "file://" + posixpath.normpath(parts.path or "/")
    clean = strip_credentials(path)  # an ADLS/WASB container in the user info stays: it names the place
    return urlsplit(clean)._replace(scheme=scheme).geturl()


def _jdbc_uri(url: str, table: str) -> str:
    # jdbc:postgresql://host:port/database → postgres://host:port/database/schema/table, the form the
    # postgres provider's asset normaliser expects; other databases keep their JDBC URL, credentials
    # stripped.
    clean = strip_credentials(url)
    rest = clean[len("jdbc:") :] if clean.startswith("jdbc:") else clean
    parts = urlsplit(rest)
    if parts.scheme in ("postgresql", "postgres") and parts.hostname:
        database = parts.path.strip("/")
        schema, _, name = table.rpartition(".")
        port = _port(parts) or 5432
        return f"postgres://{parts.hostname}:{port}/{database}/{schema or 'public'}/{name}"
    return f"{clean}/{table}"
