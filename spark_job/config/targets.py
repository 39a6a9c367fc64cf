"""The identities of the places a pipeline reads and writes, under the name the readers, the writers
and the provider's lineage import them by: canonical paths live in ``spark_job.config.paths``, table
identities (JDBC, catalog) in ``spark_job.config.tables``, the overlap check in
``spark_job.config.overlaps``.

``canonical_path`` here reads paths with no default filesystem known; inside ``links_remembered()`` the
local disk's links are resolved once for the whole block (a listing of many files).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from spark_job.config.paths import PathLocation, PathResolver, direct_read_path, glob_prefix
from spark_job.config.tables import (
    canonical_catalog_table,
    canonical_jdbc_table,
    canonical_jdbc_url,
    derived_table_name,
    jdbc_identifier_limit,
    jdbc_parameters,
    jdbc_subprotocol,
    jdbc_table_identity,
    join_identifier,
    split_identifier,
)

__all__ = [
    "PathLocation",
    "canonical_catalog_table",
    "canonical_jdbc_table",
    "canonical_jdbc_url",
    "canonical_path",
    "derived_table_name",
    "direct_read_path",
    "glob_prefix",
    "jdbc_identifier_limit",
    "jdbc_parameters",
    "jdbc_subprotocol",
    "jdbc_table_identity",
    "join_identifier",
    "links_remembered",
    "split_identifier",
]

_listing: contextvars.ContextVar[PathResolver | None] = contextvars.ContextVar("sparkpipe_listing", default=None)


def canonical_path(path: str, cwd: str | None = None) -> PathLocation:
    """``path`` in canonical form (see :meth:`spark_job.config.paths.PathResolver.canonical`), no default
    filesystem known."""
    return (_listing.get() or PathResolver()).canonical(path, cwd)


@contextlib.contextmanager
def links_remembered() -> Iterator[None]:
    """Within the block, :func:`canonical_path` resolves each local directory's links once (a listing of
    many files under one folder costs one ``lstat`` per file). Code that can pass a
    :class:`~spark_job.config.paths.PathResolver` made with ``remember_links=True`` does that instead."""
    token = _listing.set(PathResolver(remember_links=True)) if _listing.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _listing.reset(token)
