"""Turning names into runtimes: a connection's extras, a trigger's serialised runtime, a connection id.

Importing this module registers the built-in runtimes (each module registers its classes).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_sparkpipe.exceptions import SparkRuntimeError
from airflow_provider_sparkpipe.runtimes import dataproc, emr, kubernetes, local  # noqa: F401  (registration)
from airflow_provider_sparkpipe.runtimes.base import SparkRuntime, _at, runtimes

if TYPE_CHECKING:
    from airflow.sdk import Connection


def runtime_kinds() -> list[str]:
    """The kinds a connection's ``runtime`` extra may name."""
    return runtimes.names()


def runtime_from_dict(data: Mapping[str, Any], *, where: str = "") -> SparkRuntime:
    """Build a runtime from ``{"runtime": kind, **fields}`` (connection extras or :meth:`to_dict`)."""
    values = dict(data)
    kind = values.pop("runtime", "local")
    cls = runtimes.get(kind) if isinstance(kind, str) else None
    if cls is None:
        close = difflib.get_close_matches(str(kind), runtimes.names(), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"one of {', '.join(runtimes.names())}"
        raise SparkRuntimeError(f"{_at(where, 'runtime')}: unknown runtime {kind!r}: {hint}")
    return cls.from_extras(values, where=where)


def runtime_from_connection(conn: Connection) -> SparkRuntime:
    """Build the runtime a ``sparkpipe`` connection describes.

    The connection's extras hold ``runtime`` (default ``local``) and that runtime's settings, e.g.
    ``{"runtime": "local", "master": "spark://spark-master:7077", "conf": {"spark.executor.memory": "1g"}}``.
    """
    # Fields left empty in the connection form arrive as "" or null: they mean "the default".
    from airflow_provider_sparkpipe.masking import connection_extras

    where = f"connection {conn.conn_id!r}"
    try:
        extras = {k: v for k, v in connection_extras(conn).items() if v not in (None, "")}
    except ValueError as exc:
        raise SparkRuntimeError(str(exc)) from None
    if conn.conn_type and conn.conn_type != "sparkpipe":
        raise SparkRuntimeError(
            f"{where} has type {conn.conn_type!r}; SparkPipelineOperator needs a connection of type 'sparkpipe'"
        )
    return runtime_from_dict(extras, where=where)


def resolve_runtime(
    runtime: SparkRuntime | str, get_connection: Callable[[str], Connection] | None = None
) -> SparkRuntime:
    """The runtime object itself, or the one described by the ``sparkpipe`` connection of that id."""
    if isinstance(runtime, SparkRuntime):
        return runtime
    if not isinstance(runtime, str) or not runtime:
        raise SparkRuntimeError(
            f"runtime must be a runtime object such as LocalSpark(...) or a connection id, not {runtime!r}"
        )
    if get_connection is None:
        from airflow_provider_sparkpipe import masking

        get_connection = masking.get_connection
    return runtime_from_connection(get_connection(runtime))
