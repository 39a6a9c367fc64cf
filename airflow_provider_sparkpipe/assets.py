"""Airflow Assets for the tables and paths a pipeline writes, so downstream DAGs can be scheduled on them."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import Asset

_SCHEME_ALIASES = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}


def target_uri(target: Mapping[str, Any]) -> str | None:
    """The Asset URI of one target (``PipelineConfig.targets()`` item), None when it has no stable one.

    Paths keep their scheme (``gs://``, ``s3://``, ``hdfs://``; ``s3a://`` becomes ``s3://``); local
    absolute paths become ``file:///...``; BigQuery tables ``bigquery://project/dataset/table``;
    PostgreSQL tables ``postgres://host:port/database/schema/table``; catalog tables ``table:<name>``.
    Relative paths and values still holding a Jinja template have no stable URI.
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
        return "bigquery://" + "/".join(parts) if len(parts) == 3 else f"bigquery:{table}"
    if isinstance(uri, str) and uri:
        return _path_uri(uri)
    if table:
        return f"{kind or 'table'}:{table}"
    return None


def assets_for_targets(targets: Iterable[Mapping[str, Any]]) -> list[Asset]:
    """One Asset per distinct target that has a stable URI."""
    seen: dict[str, Asset] = {}
    for target in targets:
        uri = target_uri(target)
        if uri and uri not in seen:
            seen[uri] = Asset(uri=uri, extra={"sparkpipe_target_type": str(target.get("type", ""))})
    return list(seen.values())


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
    return parts._replace(scheme=scheme).geturl()


def _jdbc_uri(url: str, table: str) -> str:
    # jdbc:postgresql://host:port/database → postgres://host:port/database/schema/table, the form the
    # postgres provider's asset normaliser expects; other databases keep their JDBC URL.
    rest = url[len("jdbc:") :] if url.startswith("jdbc:") else url
    parts = urlsplit(rest)
    if parts.scheme in ("postgresql", "postgres") and parts.hostname:
        database = parts.path.strip("/")
        schema, _, name = table.rpartition(".")
        port = parts.port or 5432
        return f"postgres://{parts.hostname}:{port}/{database}/{schema or 'public'}/{name}"
    return f"{url}/{table}"
