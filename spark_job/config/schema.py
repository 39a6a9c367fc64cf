"""The config's JSON Schema, generated from the field declarations of the registered types."""

from __future__ import annotations

from typing import Any

from spark_job.config.expectations import EXPECTATION_FIELDS
from spark_job.config.fields import Field
from spark_job.config.model import LISTED_SOURCE_ID, SEQUENCE_FIELDS, TOP_FIELDS
from spark_job.io import readers, writers


def _object(fields: dict[str, Field], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    nested = ("sources", "sequences", "target", "expectations")
    props = {name: f.json_schema() for name, f in fields.items() if f.kind not in nested}
    props.update(extra or {})
    return {
        "type": "object",
        "properties": props,
        "required": sorted(name for name, f in fields.items() if f.required),
        "additionalProperties": False,
    }


def _first_line(doc: str | None, default: str) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0] if lines else default


def _variants(registry: Any, defs_prefix: str, list_alias: bool = False) -> tuple[dict[str, Any], list[dict]]:
    defs: dict[str, Any] = {}
    refs = []
    for name, cls in registry.items():
        fields = cls.all_fields()
        if list_alias:
            fields = {**fields, "id": LISTED_SOURCE_ID}
        obj = _object(fields)
        obj["properties"]["type"] = {"const": name, "description": _first_line(cls.__doc__, name)}
        key = f"{defs_prefix}_{name}"
        defs[key] = obj
        refs.append({"$ref": f"#/$defs/{key}"})
    return defs, refs


def config_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a sparkpipe config, for editor completion and checks."""
    source_defs, source_refs = _variants(readers, "source")
    list_defs, list_refs = _variants(readers, "listed_source", list_alias=True)
    target_defs, target_refs = _variants(writers, "target")
    rule = _object(EXPECTATION_FIELDS)
    rule["properties"]["max_failed"] = {
        "description": EXPECTATION_FIELDS["max_failed"].doc,
        "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*%\s*$"}],
    }
    sequence = _object(
        SEQUENCE_FIELDS,
        {
            "target": {"oneOf": target_refs},
            "quarantine": {"description": SEQUENCE_FIELDS["quarantine"].doc, "oneOf": target_refs},
            "expectations": {"description": SEQUENCE_FIELDS["expectations"].doc, "type": "array", "items": rule},
        },
    )
    sequence["oneOf"] = [{"required": ["query"]}, {"required": ["query_file"]}]
    top = _object(
        TOP_FIELDS,
        {
            "sources": {
                "description": TOP_FIELDS["sources"].doc,
                "oneOf": [
                    {"type": "object", "additionalProperties": {"oneOf": source_refs}},
                    {"type": "array", "items": {"oneOf": list_refs}},
                ],
            },
            "sequences": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/sequence"}},
        },
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "sparkpipe pipeline",
        **top,
        "$defs": {**source_defs, **list_defs, **target_defs, "sequence": sequence},
    }
