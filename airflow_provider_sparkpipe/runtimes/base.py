"""``SparkRuntime``, the base of the runtime configs, and ``runtimes``, the registry they join.

A runtime is data only: a frozen dataclass naming, by a dotted path, the hook that runs pipelines
on it. Nothing here imports a hook (``hook_for`` in :mod:`airflow_provider_sparkpipe.hooks.base`
resolves ``hook_class``), so the runtime modules import nothing but this one.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from airflow_provider_sparkpipe.exceptions import SparkRuntimeError
from spark_job.registry import Registry

RuntimeT = TypeVar("RuntimeT", bound="type[SparkRuntime]")


class SparkRuntime:
    """Where and how a pipeline runs: a frozen dataclass per runtime, with a hook that submits to it.

    Subclasses are frozen dataclasses, registered with :func:`register_runtime` (or an entry point
    of the ``sparkpipe.runtimes`` group) under their ``kind``; the ``runtime`` key of a ``sparkpipe``
    connection's extras names that kind, and the other extras are the dataclass's fields.
    """

    kind: ClassVar[str]
    """The name of this runtime in a connection's ``runtime`` extra and in metrics (``runtime.kind``)."""

    hook_class: ClassVar[str]
    """The dotted path of the :class:`~airflow_provider_sparkpipe.hooks.base.SparkPipelineHook` subclass
    that submits, polls, cancels and reads metrics on this runtime (imported only when a run starts)."""

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

runtimes: Registry[SparkRuntime] = Registry("runtime", "sparkpipe.runtimes", name_attr="kind")
"""Runtime kind -> runtime class: the built-in ones, and those of installed ``sparkpipe.runtimes`` entry points."""


def register_runtime(cls: RuntimeT) -> RuntimeT:
    """Class decorator: make a runtime available to ``sparkpipe`` connections under ``cls.kind``."""
    runtimes.register(cls)
    return cls


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


# Helpers of the runtimes' validation and of their hooks. -------------------------------------------


def spark_str(value: Any) -> str:
    """A Spark property or environment value as Spark wants it: booleans as ``true``/``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def string_map(name: str, value: Any) -> dict[str, str]:
    """A mapping setting with string values (numbers and booleans accepted as a user writes them)."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a mapping of strings, not {type(value).__name__}")
    return {str(k): spark_str(v) for k, v in value.items()}


def json_extras(extras: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Decode the connection extras ``names`` given as JSON text (a form's text field) into objects."""
    for name in names:
        if isinstance(extras.get(name), str):
            try:
                extras[name] = json.loads(extras[name])
            except json.JSONDecodeError as exc:
                raise ValueError(f"{name} must be a JSON object: {exc.msg}") from None
    return extras
