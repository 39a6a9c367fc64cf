"""The runtime config base class and the registry that turns ``sparkpipe`` connections into runtimes."""

from __future__ import annotations

import dataclasses
import difflib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from airflow_provider_sparkpipe.exceptions import SparkRuntimeError

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_sparkpipe.hooks.base import SparkPipelineHook

RuntimeT = TypeVar("RuntimeT", bound="type[SparkRuntime]")

_RUNTIMES: dict[str, type[SparkRuntime]] = {}


class SparkRuntime(ABC):
    """Where and how a pipeline runs: a frozen dataclass per runtime, with a hook that submits to it.

    Subclasses are dataclasses, registered with :func:`register_runtime` under their ``kind``; the
    ``runtime`` key of a ``sparkpipe`` connection's extras names that kind, and the other extras are
    the dataclass's fields.
    """

    kind: ClassVar[str]
    """The name of this runtime in a connection's ``runtime`` extra and in metrics (``runtime.kind``)."""

    passes_environment: ClassVar[bool] = False
    """Whether the hook hands ``PipelineSubmission.environment`` (connection secrets) to the driver."""

    supports_deferral: ClassVar[bool] = False
    """Whether a submitted run can be polled from the triggerer (a remote job, not a local process)."""

    @abstractmethod
    def hook(self) -> SparkPipelineHook:
        """The hook that submits, polls, cancels and reads metrics on this runtime."""

    def describe(self) -> str:
        """One line for the task log, e.g. ``LocalSpark(master='local[2]')``."""
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if f.name not in _SECRET_FIELDS and getattr(self, f.name) not in (f.default, None, {}, ())
        )
        return f"{type(self).__name__}({shown})"

    def secret_values(self) -> list[str]:
        """Values of the secret fields (``env``), for Airflow's secrets masker."""
        values: list[str] = []
        for name in _SECRET_FIELDS:
            field_value = getattr(self, name, None)
            if isinstance(field_value, Mapping):
                values.extend(str(v) for v in field_value.values() if v)
        return values

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for triggers): ``{"runtime": kind, **fields}``."""
        fields = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {"runtime": self.kind, **json.loads(json.dumps(fields, default=list))}

    @classmethod
    def from_extras(cls, extras: Mapping[str, Any], *, where: str = "") -> SparkRuntime:
        """Build the runtime from a mapping of field values (a connection's extras without ``runtime``).

        Unknown keys are errors (with the closest field name suggested), so a typo in a connection
        does not silently fall back to a default.
        """
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        problems = []
        for key in extras:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(names)})"
                problems.append(f"{_at(where, key)}: unknown setting for runtime {cls.kind!r}{hint}")
        if problems:
            raise SparkRuntimeError("\n".join(problems))
        try:
            return cls(**cls._coerce_extras(dict(extras), where))
        except (TypeError, ValueError) as exc:
            raise SparkRuntimeError(f"{where or cls.kind + ' runtime'}: {exc}") from None

    @classmethod
    def _coerce_extras(cls, extras: dict[str, Any], where: str) -> dict[str, Any]:
        """Turn connection values (strings from URIs, JSON text from forms) into field types."""
        return extras


_SECRET_FIELDS = frozenset({"env"})


def register_runtime(cls: RuntimeT) -> RuntimeT:
    """Class decorator: make a runtime available to ``sparkpipe`` connections under ``cls.kind``."""
    _RUNTIMES[cls.kind] = cls
    return cls


def runtime_kinds() -> list[str]:
    """The kinds a connection's ``runtime`` extra may name."""
    _load_builtin_runtimes()
    return sorted(_RUNTIMES)


def runtime_from_dict(data: Mapping[str, Any], *, where: str = "") -> SparkRuntime:
    """Build a runtime from ``{"runtime": kind, **fields}`` (connection extras or :meth:`to_dict`)."""
    _load_builtin_runtimes()
    values = dict(data)
    kind = values.pop("runtime", "local")
    cls = _RUNTIMES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        close = difflib.get_close_matches(str(kind), list(_RUNTIMES), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"one of {', '.join(sorted(_RUNTIMES))}"
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


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _load_builtin_runtimes() -> None:
    # Imported here, not at module top, so that each runtime module registers itself once and the
    # base module stays importable from the runtime modules without a cycle.
    import airflow_provider_sparkpipe.runtimes.aws
    import airflow_provider_sparkpipe.runtimes.google
    import airflow_provider_sparkpipe.runtimes.kubernetes
    import airflow_provider_sparkpipe.runtimes.local  # noqa: F401
