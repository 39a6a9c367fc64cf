"""The rows a pipeline test gives its sources (``Fixture``): inline rows, or a small file read at once and
FAILFAST, and the one line that blames a fixture its SQL cannot run on."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spark_job.engine.capabilities import capabilities_of

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

FIXTURE_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
MAX_FIXTURE_ROWS = 100_000


@dataclass(frozen=True)
class Fixture:
    """Rows standing in for one source: inline ``rows`` or a ``file`` (csv with a header, json lines, parquet)."""

    source_id: str
    path: str
    rows: list[dict[str, Any]] | None = None
    file: Path | None = None
    format: str | None = None


def fixture_frame(spark: SparkSession, fixture: Fixture, schema: str | None) -> DataFrame:
    if fixture.file is not None:
        # Read now and FAILFAST: a line that does not fit the declared schema is the fixture's problem,
        # never rows of NULLs for the SQL to run on.
        df = _file_reader(spark, fixture, schema, "FAILFAST").load(str(fixture.file))
        return spark.createDataFrame(df.collect(), df.schema)
    rows = fixture.rows or []
    if schema:
        struct = capabilities_of(spark).ddl_schema(schema)
        columns = [f.name for f in struct.fields]
        unknown = sorted({k for row in rows for k in row} - set(columns))
        if unknown:
            raise ValueError(f"column {', '.join(unknown)} is not in the source's schema ({schema})")
        return spark.createDataFrame([tuple(row.get(c) for c in columns) for row in rows], struct)
    if not rows:
        raise ValueError("no rows and no declared schema: give at least one row, or a 'schema' on the source")
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return spark.createDataFrame([tuple(row.get(c) for c in columns) for row in rows], columns)


def _file_reader(spark: SparkSession, fixture: Fixture, schema: str | None, mode: str) -> Any:
    reader = spark.read.format(str(fixture.format))
    if fixture.format == "csv":
        # With a schema, the header must name its columns (not only count them).
        reader = reader.option("header", "true").option("enforceSchema", "false" if schema else "true")
        if not schema:
            reader = reader.option("inferSchema", "true")
    if fixture.format in ("csv", "json"):
        reader = reader.option("mode", mode)
    return reader.schema(schema) if schema else reader


def fixture_error(spark: SparkSession, fixture: Fixture, schema: str | None, exc: BaseException) -> str:
    """One line blaming the fixture: its place in the test file, its file and the line that does not fit."""
    why = reason(exc)
    if fixture.file is None:
        return f"fixture {fixture.path}: {why}"
    where = f"{fixture.file}"
    line = _bad_line(spark, fixture, schema) if schema else None
    if line is not None:
        where += f" line {line}"
    fits = f" does not fit the source's schema ({schema})" if schema else " cannot be read"
    return f"fixture {fixture.path}: {where}{fits}: {why}"


def _bad_line(spark: SparkSession, fixture: Fixture, schema: str) -> int | None:
    """The line of a csv or json fixture file holding the first record that does not fit ``schema``."""
    if fixture.format not in ("csv", "json") or fixture.file is None or "_corrupt_record" in schema:
        return None
    try:
        reader = _file_reader(spark, fixture, f"{schema}, _corrupt_record STRING", "PERMISSIVE")
        rows = reader.option("columnNameOfCorruptRecord", "_corrupt_record").load(str(fixture.file)).collect()
        bad = next((r["_corrupt_record"] for r in rows if r["_corrupt_record"] is not None), None)
        if bad is None:
            return None
        lines = fixture.file.read_text(encoding="utf-8", errors="replace").splitlines()
        return next((i for i, text in enumerate(lines, start=1) if text == bad), None)
    except Exception:  # the line is a help, the error is reported without it
        return None


def reason(exc: BaseException) -> str:
    """Spark's message without its stack, on one line: the innermost two of the JVM's chain of causes
    (``[MALFORMED_RECORD_IN_PARSING...] ... <- NumberFormatException: For input string: "abc"``)."""
    text = str(exc).split("JVM stacktrace:", 1)[0]
    chain = [_short_cause(c) for c in _CAUSE.findall(text)]
    if chain:
        return " <- ".join(dict.fromkeys(chain[-2:]))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


_CAUSE = re.compile(r"^(?:: |Caused by: )(.+)$", re.MULTILINE)


def _short_cause(cause: str) -> str:
    """``org.apache.spark.SparkException: [X] ...`` → ``[X] ...``; ``java.lang.Y: ...`` → ``Y: ...``."""
    name, sep, message = cause.strip().partition(": ")
    if not sep or " " in name:
        return cause.strip()
    return message if message.startswith("[") else f"{name.rsplit('.', 1)[-1]}: {message}"
