"""Avro through Spark's own spark-avro module (the jar of the running Spark, from the cache that
``scripts/connectors.sh`` fills): one real driver run writes an Avro target, a second reads it as a
source and writes Avro and Parquet again; every type comes back as it was written.

Python 3.9, pytest, pyspark and PyYAML only: the matrix cells run this file on their Spark. It is not
collected where no spark-avro is published for the running Spark (see ``conftest.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .jars import jars
from .runs import run_driver

TYPED = """
SELECT CAST(1 AS BIGINT) AS id, CAST(12.34 AS DECIMAL(10, 2)) AS amount, DATE'2024-01-03' AS day,
       TIMESTAMP'2024-01-03 10:11:12.123456' AS at, TIMESTAMP_NTZ'2024-01-03 10:11:12' AS local_at,
       array(1, 2, NULL) AS numbers, map('a', 1.5D, 'b', CAST(NULL AS DOUBLE)) AS weights,
       'text' AS label, true AS flag, X'CAFE' AS raw, named_struct('x', 1, 'y', 'z') AS point
UNION ALL
SELECT 2, CAST(-0.01 AS DECIMAL(10, 2)), DATE'1969-12-31', TIMESTAMP'1969-12-31 23:59:59', NULL,
       array(), map(), '', false, X'', named_struct('x', -1, 'y', CAST(NULL AS STRING))
UNION ALL
SELECT 3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
"""


def zigzag(data: bytes, at: int) -> tuple[int, int]:
    """An Avro long (zig-zag varint) at ``at``: its value and the position after it."""
    shift = value = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), at


def avro_schema(path: Path) -> dict[str, Any]:
    """The writer's schema of an Avro container file, read from its header (``avro.schema``)."""
    data = path.read_bytes()
    assert data[:4] == b"Obj\x01", path
    at, meta = 4, {}
    while True:
        count, at = zigzag(data, at)
        if count == 0:
            break
        if count < 0:  # a block whose byte size follows
            count = -count
            _, at = zigzag(data, at)
        for _ in range(count):
            size, at = zigzag(data, at)
            key = data[at : at + size].decode()
            at += size
            size, at = zigzag(data, at)
            meta[key] = data[at : at + size]
            at += size
    return dict(json.loads(meta["avro.schema"]))


def non_null(kind: Any) -> Any:
    """An Avro type without the null branches Spark adds to nullable fields, at every depth (Spark
    reads every field of a file source as nullable, so what it writes again differs only there)."""
    if isinstance(kind, list):
        return non_null(next(k for k in kind if k != "null"))
    if isinstance(kind, dict):
        kind = {key: non_null(value) if key in ("items", "values") else value for key, value in kind.items()}
        if "fields" in kind:
            kind["fields"] = [{**field, "type": non_null(field["type"])} for field in kind["fields"]]
    return kind


def field_types(schema: dict[str, Any]) -> dict[str, Any]:
    return {field["name"]: non_null(field["type"]) for field in schema["fields"]}


def test_avro_sources_and_targets_keep_every_type(spark: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    conf = {"spark.jars": jars("avro"), "spark.sql.shuffle.partitions": "1"}
    write = {
        "app_name": "avro_write",
        "spark_conf": conf,
        "sequences": [
            {"name": "typed", "query": TYPED, "target": {"type": "avro", "path": str(out / "typed"), "coalesce": 1}}
        ],
    }
    first = run_driver(tmp_path, write)
    assert first.returncode == 0, first.stderr[-5000:]
    assert first.metrics is not None and first.metrics["sequences"]["typed"]["rows_written"] == 3

    read = {
        "app_name": "avro_read",
        "spark_conf": conf,
        "sources": {"typed": {"type": "file", "format": "avro", "path": str(out / "typed")}},
        "sequences": [
            {"name": "again", "query": "SELECT * FROM typed", "target": {"type": "avro", "path": str(out / "again")}},
            {
                "name": "copied",
                "query": "SELECT * FROM typed",
                "target": {"type": "parquet", "path": str(out / "copied")},
            },
        ],
    }
    second = run_driver(tmp_path, read)
    assert second.returncode == 0, second.stderr[-5000:]

    # Avro's own types, as the files say: logical types for decimals, dates and timestamps
    [written] = sorted((out / "typed").glob("part-*.avro"))
    types = field_types(avro_schema(written))
    amount = types["amount"]
    assert (amount["logicalType"], amount["precision"], amount["scale"]) == ("decimal", 10, 2)
    assert types["day"] == {"type": "int", "logicalType": "date"}
    assert types["at"] == {"type": "long", "logicalType": "timestamp-micros"}
    assert types["local_at"] == {"type": "long", "logicalType": "local-timestamp-micros"}
    assert types["numbers"]["type"] == "array" and types["weights"]["type"] == "map"
    assert types["raw"] == "bytes" and types["flag"] == "boolean" and types["point"]["type"] == "record"
    for again in (out / "again").glob("part-*.avro"):
        assert field_types(avro_schema(again)) == types

    # Read back through Avro, every value and every Spark type is the query's
    expected = spark.sql(TYPED)
    copied = spark.read.parquet(str(out / "copied"))
    assert copied.schema.simpleString() == expected.schema.simpleString()
    assert sorted(copied.collect()) == sorted(expected.collect())
