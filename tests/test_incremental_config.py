"""Incremental loads as the config declares them: each mistake a clear error naming its config path and
what to do, before any Spark starts (``spark_job.config.incremental``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spark_job.config.incremental import NewFiles, NewFilesFeed, Watermark, declared_columns, parse_lookback
from spark_job.config.validation import load_config
from spark_job.errors import ConfigError

JDBC_APPEND = {"type": "jdbc", "url": "jdbc:postgresql://db:5432/shop", "table": "orders", "mode": "append"}
PARTITIONED = {"type": "parquet", "path": "/lake/daily", "partition_by": ["day"], "dynamic_partition_overwrite": True}


def config(incremental: Any, target: dict[str, Any], source: dict[str, Any] | None = None, **top: Any) -> dict:
    src = {"type": "file", "path": "/data/changes", "schema": "order_id BIGINT, updated_at TIMESTAMP, day DATE"}
    merged = {k: v for k, v in {**src, **(source or {})}.items() if v is not None}
    return {
        "app_name": "inc",
        "sources": {"changes": merged},
        "sequences": [
            {"name": "orders", "query": "SELECT * FROM changes", "incremental": incremental, "target": target}
        ],
        **top,
    }


def problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(data)
    return [f"{p.path}: {p.message}" for p in err.value.problems]


WATERMARK = {"source": "changes", "column": "updated_at"}

MISTAKES = {
    "overwrite of a whole target": (
        config(WATERMARK, {"type": "parquet", "path": "/lake/orders"}),
        "sequences[0].target.mode: overwrite replaces the whole target with the new rows only, deleting its history",
    ),
    "static partition overwrite": (
        config(WATERMARK, {"type": "parquet", "path": "/lake/orders", "partition_by": "day"}),
        "sequences[0].target.dynamic_partition_overwrite: a static overwrite replaces the whole target",
    ),
    "partition overwrite on another column": (
        config(WATERMARK, PARTITIONED),
        "sequences[0].incremental: 'updated_at' is not a partition column of the target (day)",
    ),
    "append to files": (
        config(WATERMARK, {"type": "parquet", "path": "/lake/orders", "mode": "append"}),
        "sequences[0].target.mode: append with incremental needs a target that commits the rows in one transaction",
    ),
    "append to a JDBC table without its transaction": (
        config(WATERMARK, {**JDBC_APPEND, "atomic": False}),
        "sequences[0].target.mode: append with incremental needs a target that commits the rows in one "
        "transaction (atomic: false)",
    ),
    "append with a lookback": (
        config({**WATERMARK, "lookback": "2 hours"}, JDBC_APPEND),
        "sequences[0].incremental.lookback: with mode append the rows read again would be written twice",
    ),
    "mode error": (
        config(WATERMARK, {**JDBC_APPEND, "mode": "error"}),
        "sequences[0].target.mode: mode error writes a target once",
    ),
    "unknown source": (
        config({"source": "chnages", "column": "updated_at"}, JDBC_APPEND),
        "sequences[0].incremental.source: 'chnages' is no source's alias (sources: changes)",
    ),
    "column not in the schema": (
        config({"source": "changes", "column": "updated"}, JDBC_APPEND),
        "sequences[0].incremental.column: 'updated' is not a column of 'changes''s schema (order_id, updated_at, day)",
    ),
    "bad lookback": (
        config({**WATERMARK, "lookback": "2 fortnights"}, JDBC_APPEND),
        "sequences[0].incremental: lookback '2 fortnights' is not an interval",
    ),
    "number as the lookback of a timestamp": (
        config({**WATERMARK, "lookback": 5}, {**JDBC_APPEND, "mode": "overwrite", "partition_by": None}),
        "sequences[0].incremental.lookback: 'updated_at' is a timestamp: give an interval, e.g. '2 hours'",
    ),
    "missing column": (
        config({"source": "changes"}, JDBC_APPEND),
        "sequences[0].incremental: missing column (the watermark column)",
    ),
    "unknown key": (
        config({**WATERMARK, "lookbak": "1 hour"}, JDBC_APPEND),
        "sequences[0].incremental: unknown key 'lookbak': the keys are source, column, lookback, target_column",
    ),
    "files on the sequence": (
        config({"files": True}, JDBC_APPEND),
        "sequences[0].incremental: files: true belongs on the file source read new files only",
    ),
    "query not reading the source": (
        {
            **config(WATERMARK, JDBC_APPEND),
            "sources": {
                "changes": {"type": "file", "path": "/data/changes"},
                "other": {"type": "file", "path": "/data/other"},
            },
            "sequences": [
                {"name": "o", "query": "SELECT * FROM other", "incremental": WATERMARK, "target": JDBC_APPEND}
            ],
        },
        "sequences[0].incremental.source: the query does not read 'changes'",
    ),
}


@pytest.mark.parametrize("data, expected", MISTAKES.values(), ids=MISTAKES.keys())
def test_a_mistake_is_named_with_its_path_and_what_to_do(data: dict, expected: str) -> None:
    found = problems(data)
    assert any(p.startswith(expected) for p in found), found


def test_the_allowed_forms_build_a_watermark() -> None:
    merge_like = load_config(config(WATERMARK, JDBC_APPEND)).sequences[0].incremental
    assert isinstance(merge_like, Watermark) and merge_like.target_column == "updated_at"
    assert merge_like.lookback is None and merge_like.source_spec["path"] == "/data/changes"
    daily = load_config(config({**WATERMARK, "target_column": "day", "lookback": "1 day"}, PARTITIONED)).sequences[0]
    assert daily.incremental.lookback.seconds == 86400 and daily.incremental.lookback.sql() == "INTERVAL 86400 SECONDS"
    # without a declared schema the column is the run's to check; a delta path is transactional
    delta_path = {"type": "file", "format": "delta", "path": "/lake/o", "mode": "append"}
    assert load_config(config(WATERMARK, delta_path, {"schema": None})).sequences[0].incremental is not None


def test_full_refresh_reaches_every_incremental_sequence() -> None:
    refreshed = load_config(config(WATERMARK, JDBC_APPEND, full_refresh=True))
    assert refreshed.full_refresh and refreshed.sequences[0].incremental.full_refresh
    plain = load_config(config(WATERMARK, JDBC_APPEND))
    assert not plain.sequences[0].incremental.full_refresh
    assert plain.refreshed().sequences[0].incremental.full_refresh


def new_files(target: dict[str, Any], incremental: Any = None, **source: Any) -> dict:
    inc = {"files": True, **(incremental or {})}
    return {
        "app_name": "files",
        "sources": {
            "drops": {"type": "file", "format": "json", "path": "/in/drops", "schema": "id INT", "incremental": inc}
            | source
        },
        "sequences": [{"name": "taken", "query": "SELECT * FROM drops", "target": target}],
    }


FILE_MISTAKES = {
    "no schema": (
        new_files(JDBC_APPEND, {"checkpoint": "/ck"}, schema=None),
        "sources.drops.schema: a source read new",
    ),
    "a parquet target": (
        new_files({"type": "parquet", "path": "/o", "mode": "append"}),
        "sequences[0].target: reads 'drops' new files only: each batch is written exactly once to a jdbc table",
    ),
    "a table target without checkpoint": (
        new_files(JDBC_APPEND),
        "sequences[0].target: reads 'drops' new files only and its target is a table: give the source's "
        "incremental.checkpoint",
    ),
    "files false": (new_files(JDBC_APPEND, {"files": False}), "sources.drops.incremental: files must be true"),
    "a zero bound": (
        new_files(JDBC_APPEND, {"checkpoint": "/ck", "max_files_per_trigger": 0}),
        "sources.drops.incremental: max_files_per_trigger must be a whole number of at least 1",
    ),
    "archive without a folder": (
        new_files(JDBC_APPEND, {"checkpoint": "/ck", "clean_source": "archive"}),
        "sources.drops.incremental: clean_source: archive needs archive_dir",
    ),
    "archive inside the source": (
        new_files(JDBC_APPEND, {"checkpoint": "/ck", "clean_source": "archive", "archive_dir": "/in/drops/done"}),
        "sources.drops.incremental.archive_dir: /in/drops/done is inside the source path",
    ),
    "a watermark key on the source": (
        new_files(JDBC_APPEND, {"column": "id"}),
        "sources.drops.incremental: column belongs on the sequence's incremental key",
    ),
}


@pytest.mark.parametrize("data, expected", FILE_MISTAKES.values(), ids=FILE_MISTAKES.keys())
def test_a_new_files_mistake_is_named(data: dict, expected: str) -> None:
    data["sources"]["drops"] = {k: v for k, v in data["sources"]["drops"].items() if v is not None}
    found = problems(data)
    assert any(p.startswith(expected) for p in found), found


def test_a_new_files_sequence_read_by_another_or_with_rules_is_refused() -> None:
    data = new_files(JDBC_APPEND, {"checkpoint": "/ck"})
    data["sequences"][0]["expectations"] = [{"name": "positive", "condition": "id > 0"}]
    data["sequences"].append(
        {"name": "later", "query": "SELECT * FROM taken", "target": {"type": "parquet", "path": "/o"}}
    )
    found = problems(data)
    assert any(p.startswith("sequences[0].expectations: a sequence reading new files only") for p in found), found
    assert any(p.startswith("sequences[0].name: taken reads new files only and is read by later") for p in found)


def test_new_files_settings_become_stream_options() -> None:
    settings = {"checkpoint": "/ck", "max_files_per_trigger": 2, "clean_source": "archive", "archive_dir": "/done"}
    feed = load_config(new_files(JDBC_APPEND, settings)).sequences[0].incremental
    assert isinstance(feed, NewFilesFeed) and feed.source == "drops"
    files = NewFiles.of(feed.source_spec)
    assert files is not None and files.stream_options() == {
        "maxFilesPerTrigger": "2",
        "cleanSource": "archive",
        "sourceArchiveDir": "/done",
    }


def test_lookbacks_and_declared_columns() -> None:
    assert parse_lookback("2 hours").seconds == 7200  # type: ignore[union-attr]
    assert parse_lookback("1 Week").seconds == 604800  # type: ignore[union-attr]
    assert parse_lookback(100).amount == 100  # type: ignore[union-attr]
    assert parse_lookback("2.5").amount == 2.5  # type: ignore[union-attr]
    assert isinstance(parse_lookback(-1), str) and isinstance(parse_lookback(True), str)
    assert declared_columns("a INT, `b c` STRUCT<x: INT, y: MAP<STRING, INT>>, d DECIMAL(10, 2)") == {
        "a": "int",
        "b c": "struct<x: int, y: map<string, int>>",
        "d": "decimal(10, 2)",
    }


def test_a_config_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "app_name: a\nsources:\n  c: {type: file, path: /d, schema: 'id INT'}\nsequences:\n"
        "  - name: s\n    query: SELECT * FROM c\n    incremental: {source: c, column: idd}\n"
        "    target: {type: jdbc, url: 'jdbc:postgresql://h/db', table: t, mode: append}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    (problem,) = err.value.problems
    assert problem.line == 7 and "'idd' is not a column" in problem.message


def test_the_benchmark_configs_validate(tmp_path: Path) -> None:
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "incremental.py"
    spec = importlib.util.spec_from_file_location("sparkpipe_bench_incremental", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    incremental = load_config(module.config(tmp_path / "events", tmp_path / "daily", True)).sequences[0]
    assert isinstance(incremental.incremental, Watermark) and incremental.incremental.column == "day"
    assert load_config(module.config(tmp_path / "events", tmp_path / "full", False)).sequences[0].incremental is None


def test_the_plan_says_what_an_incremental_sequence_reads() -> None:
    from spark_job.plan import build_plan, render_text

    daily = config({**WATERMARK, "target_column": "day", "lookback": "1 day"}, PARTITIONED)
    shown = build_plan(load_config(daily)).sequences[0].options["incremental"]
    assert shown == "changes.updated_at beyond the target's highest day, lookback 1 day"
    refreshed = build_plan(load_config(config(WATERMARK, JDBC_APPEND, full_refresh=True)))
    assert refreshed.sequences[0].options["incremental"] == (
        "changes.updated_at beyond the target's highest updated_at (full refresh: everything)"
    )
    files = build_plan(load_config(new_files(JDBC_APPEND, {"checkpoint": "/ck"})))
    assert files.sequences[0].options["incremental"] == "new files of drops"
    assert "incremental new files of drops" in render_text(files)
