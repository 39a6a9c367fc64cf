"""Declarative field specifications: what keys a source or target accepts and of which type.

Readers and writers declare their fields with these; validation and the JSON Schema export read them,
so adding a type never means touching the validator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SCALAR = (str, int, float, bool)


@dataclass(frozen=True)
class Field:
    """One accepted key.

    Attributes:
        kind: ``str``, ``int``, ``bool``, ``map`` (string keys, scalar values), ``str_list``
            (a string or a list of strings), ``int_or_str_list`` or ``scalar``.
        required: whether the key must be present.
        choices: the allowed values, for enumerations.
        doc: one line for the JSON Schema description.
    """

    kind: str = "str"
    required: bool = False
    choices: tuple[str, ...] | None = None
    doc: str = ""

    def coerce(self, value: Any) -> Any:
        """Integers and booleans written as text (``coalesce: ${n}`` after substitution) become typed."""
        if isinstance(value, str):
            text = value.strip()
            if self.kind == "int" and text.lstrip("-").isdigit():
                return int(text)
            if self.kind == "bool" and text.lower() in ("true", "false"):
                return text.lower() == "true"
        return value

    def check(self, value: Any) -> str | None:
        """Return why ``value`` does not fit this field, or None."""
        ok: bool
        if self.kind == "str":
            ok = isinstance(value, str)
            expected = "a string"
        elif self.kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
            expected = "an integer"
        elif self.kind == "bool":
            ok = isinstance(value, bool)
            expected = "true or false"
        elif self.kind == "scalar":
            ok = isinstance(value, SCALAR)
            expected = "a string, number or boolean"
        elif self.kind == "map":
            ok = isinstance(value, Mapping) and all(
                isinstance(k, str) and isinstance(v, SCALAR) for k, v in value.items()
            )
            expected = "a mapping of names to strings, numbers or booleans"
        elif self.kind == "str_list":
            ok = isinstance(value, str) or (isinstance(value, Sequence) and all(isinstance(v, str) for v in value))
            expected = "a string or a list of strings"
        elif self.kind == "int_or_str_list":
            ok = (isinstance(value, int) and not isinstance(value, bool) and value > 0) or (
                isinstance(value, list) and len(value) > 0 and all(isinstance(v, str) for v in value)
            )
            expected = "a positive integer or a list of column names"
        else:  # pragma: no cover - a programming error in a field declaration
            raise ValueError(f"unknown field kind {self.kind!r}")
        if not ok:
            return f"must be {expected}, got {describe_value(value)}"
        if self.choices is not None and value not in self.choices:
            return f"{value!r} is not one of {', '.join(self.choices)}"
        if self.kind == "int" and value < 0:
            return f"must not be negative, got {value}"
        if self.required and self.kind == "str" and not value.strip():
            return f"is empty: give {self.doc or 'a value'}"
        return None

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any]
        if self.kind == "str":
            schema = {"type": "string"}
        elif self.kind == "int":
            schema = {"type": "integer", "minimum": 0}
        elif self.kind == "bool":
            schema = {"type": "boolean"}
        elif self.kind == "scalar":
            schema = {"type": ["string", "number", "boolean"]}
        elif self.kind == "map":
            schema = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}
        elif self.kind == "str_list":
            schema = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
        else:
            schema = {
                "anyOf": [
                    {"type": "integer", "minimum": 1},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1},
                ]
            }
        if self.choices:
            schema["enum"] = list(self.choices)
        if self.doc:
            schema["description"] = self.doc
        return schema


def describe_value(value: Any) -> str:
    """A short, type-first description of a value for error messages."""
    if value is None:
        return "nothing (null)"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    for typ, name in names.items():
        if type(value) is typ:
            text = repr(value)
            return f"{name} {text[:40] + '...' if len(text) > 40 else text}"
    if isinstance(value, Mapping):
        if not value:
            return "an empty mapping {}"
        keys = [repr(k)[:40] for k in list(value)[:3]]
        more = ", ..." if len(value) > 3 else ""
        # A text holding ": " unquoted is read by YAML as a mapping: its key shows which text that was.
        return f"a mapping with key{'s' if len(value) > 1 else ''} {', '.join(keys)}{more} (quote text that holds ': ')"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    return type(value).__name__
