"""Declarative field specifications: what keys a source or target accepts and of which type.

Readers and writers declare their fields with these; validation and the JSON Schema export read them,
so adding a type never means touching the validator.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spark_job.config.urls import port_problem, strip_credentials

SCALAR = (str, int, float, bool)


@dataclass(frozen=True)
class Field:
    """One accepted key.

    Attributes:
        kind: ``str``, ``int``, ``bool``, ``map`` (string keys, scalar values), ``object`` (string keys,
            any values: its ``rule`` checks them), ``str_list`` (a string or a list of strings),
            ``int_or_str_list`` or ``scalar``.
        required: whether the key must be present.
        choices: the allowed values, for enumerations.
        doc: one line for the JSON Schema description.
        sql: ``spark`` when the text is Spark SQL, ``database`` when it is the SQL of the database read or
            written (JDBC, BigQuery): a value passed in (``--var``) may only be a literal or name there.
        rule: a check of the value once its type is right, returning what is wrong or None
            (:func:`at_least`, :func:`url_port`).
        advice: said after a value that is not one of ``choices`` (what to do instead).
    """

    kind: str = "str"
    required: bool = False
    choices: tuple[str, ...] | None = None
    doc: str = ""
    sql: str | None = None
    rule: Callable[[Any], str | None] | None = field(default=None, compare=False)
    advice: str = ""

    def coerce(self, value: Any) -> Any:
        """Integers and booleans written as text (``coalesce: ${n}`` after substitution) become typed;
        only the digits 0-9 make a number (``"²"``, Arabic-Indic digits stay text, which the type check refuses)."""
        if isinstance(value, str):
            text = value.strip()
            if self.kind == "int" and (number := parse_int(text)) is not None:
                return number
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
            digits = isinstance(value, str) and any(c.isdigit() and not c.isascii() for c in value)
            expected = "an integer written with the digits 0-9" if digits else "an integer"
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
        elif self.kind == "object":
            ok = isinstance(value, Mapping) and all(isinstance(k, str) for k in value)
            expected = "a mapping"
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
            advice = f" ({self.advice})" if self.advice else ""
            return f"{value!r} is not one of {', '.join(self.choices)}{advice}"
        if self.kind == "int" and value < 0:
            return f"must not be negative, got {value}"
        if self.required and self.kind == "str" and not value.strip():
            return f"is empty: give {self.doc or 'a value'}"
        return self.rule(value) if self.rule is not None else None

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
        elif self.kind == "object":
            schema = {"type": "object"}
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


def at_least(minimum: int, advice: str) -> Callable[[Any], str | None]:
    """A rule: an integer below ``minimum`` is refused (``advice`` says what to do instead), for keys whose
    0 would silently mean "not set" at run time."""

    def rule(value: Any) -> str | None:
        if isinstance(value, int) and value < minimum:
            return f"must be at least {minimum}, got {value} ({advice})"
        return None

    return rule


def url_port(value: Any) -> str | None:
    """A rule: a URL whose port is not a number from 1 to 65535 (shown without its credentials)."""
    if isinstance(value, str) and (problem := port_problem(value)):
        return f"{problem}: {strip_credentials(value)}"
    return None


_INTEGER = re.compile(r"-?[0-9]{1,1000}\Z")  # longer texts stay text (int() refuses 4,300 digits and more)


def parse_int(text: str) -> int | None:
    """``text`` as an integer when it is one written with the digits 0-9 (an optional ``-``), else None.

    ``str.isdigit()`` also accepts ``²`` and ``①``, which ``int()`` refuses, and ``int()`` accepts other
    scripts' digits (Arabic-Indic digits), spaces and ``_``: config numbers are plain ASCII, as Spark reads them."""
    return int(text) if _INTEGER.match(text) else None


# Keys of the built-in sources and targets whose text is SQL: "<role>:<type>" ("*": every type) -> key ->
# dialect. A type of another package marks its own fields with ``Field(sql=...)``.
SQL_KEYS: dict[str, dict[str, str]] = {
    "source:*": {"schema": "spark"},
    "source:table": {"table": "spark"},
    "source:jdbc": {"query": "database", "table": "database", "partition_column": "database"},
    "source:bigquery": {"query": "database", "filter": "database"},
    "target:table": {"table": "spark"},
    "target:jdbc": {"table": "database", "merge_condition": "database"},
}
# Options (lower-cased names) whose text is SQL, by type: Spark's JDBC options and the BigQuery connector's.
SQL_OPTIONS: dict[str, dict[str, str]] = {
    "jdbc": {
        "query": "database",
        "dbtable": "database",
        "sessioninitstatement": "database",
        "preparequery": "database",
        "partitioncolumn": "database",
        "createtableoptions": "database",
        "createtablecolumntypes": "database",
        "customschema": "spark",
    },
    "bigquery": {"query": "database", "filter": "database"},
}


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
