"""Shared scans (``spark_job.engine.source_cache``): a source several sequences read, parsed row by row or read
remotely, is read once, pruned to the columns its readers use, and released after its last reader; columnar
sources are left alone; ``cache: true|false`` overrides. On real local Spark."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from spark_job.cli import main
from spark_job.config.validation import load_config
from spark_job.engine.runner import PipelineRunner
from spark_job.engine.source_cache import (
    MIN_SHARED_BYTES,
    ScanCost,
    config_cost,
    decide,
    plan_cost,
    plan_size,
    readers_of,
    used_columns,
)
from spark_job.errors import ConfigError

CSV_SCHEMA = "id BIGINT, user_id BIGINT, kind STRING, amount DOUBLE, note STRING"


@pytest.fixture(scope="module")
def big_csv(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CSV folder over ``MIN_SHARED_BYTES`` (what a cache pays for), and the same rows as parquet beside it."""
    folder = tmp_path_factory.mktemp("shared-scans")
    rows = spark.range(0, 400_000).selectExpr(
        "id",
        "id % 1000 AS user_id",
        "CASE WHEN id % 3 = 0 THEN 'buy' ELSE 'view' END AS kind",
        "CAST(id % 97 AS DOUBLE) AS amount",
        "concat('note-', repeat('x', 30), CAST(id AS STRING)) AS note",
    )
    rows.write.csv(str(folder / "csv"))
    rows.write.parquet(str(folder / "parquet"))
    size = sum(p.stat().st_size for p in (folder / "csv").glob("part-*"))
    assert size > MIN_SHARED_BYTES, size
    return folder


class Watched(PipelineRunner):
    """A runner recording, as each sequence starts, what the session has cached, and the Spark jobs of
    the sources; ``on_start`` acts before a named sequence runs."""

    def __init__(self, *args: Any, on_start: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: dict[str, dict[str, Any]] = {}
        self.on_start = on_start or {}

    def before_sequence(self, sequence: Any) -> None:
        assert self.spark is not None
        catalog = self.spark.catalog
        views = {t.name for t in catalog.listTables() if t.isTemporary}
        self.seen[sequence.name] = {
            alias: {"cached": catalog.isCached(alias), "columns": self.spark.table(alias).columns}
            for alias in ("events", "users")
            if alias in views
        }
        if sequence.name in self.on_start:
            self.on_start[sequence.name]()

    def source_jobs(self) -> int:
        assert self.spark is not None
        return len(self.spark.sparkContext.statusTracker().getJobIdsForGroup(self.job_tag("sources")))


def csv_source(folder: Path, **extra: Any) -> dict[str, Any]:
    return {"type": "file", "format": "csv", "path": str(folder), "schema": CSV_SCHEMA, **extra}


def three_sequences(out: Path, sources: dict[str, Any], **top: Any) -> dict[str, Any]:
    """Two readers of ``events`` and, last (one at a time), a sequence reading nothing."""
    return {
        "app_name": "shared-scans",
        "max_parallel": 1,
        "sources": sources,
        "sequences": [
            {
                "name": "by_kind",
                "query": "SELECT kind, count(*) AS n, sum(amount) AS total FROM events GROUP BY kind",
                "target": {"type": "parquet", "path": str(out / "by_kind")},
            },
            {
                "name": "by_user",
                "query": "SELECT user_id, count(*) AS n FROM events WHERE kind = 'buy' GROUP BY user_id",
                "target": {"type": "parquet", "path": str(out / "by_user")},
            },
            {
                "name": "after",
                "query": "SELECT 1 AS done",
                "target": {"type": "parquet", "path": str(out / "after")},
            },
        ],
        **top,
    }


def expected(spark: Any, parquet: Path) -> dict[str, list[tuple]]:
    from pyspark.sql import functions as F

    rows = spark.read.parquet(str(parquet))
    by_kind = rows.groupBy("kind").agg(F.count("*"), F.sum("amount")).collect()
    by_user = rows.where("kind = 'buy'").groupBy("user_id").count().collect()
    return {"by_kind": sorted(tuple(r) for r in by_kind), "by_user": sorted(tuple(r) for r in by_user)}


def written(spark: Any, out: Path) -> dict[str, list[tuple]]:
    return {
        name: sorted(tuple(r) for r in spark.read.parquet(str(out / name)).collect()) for name in ("by_kind", "by_user")
    }


def jobs_of(spark: Any, work: Any) -> int:
    """The Spark jobs ``work()`` runs."""
    context, group = spark.sparkContext, f"handwritten-{uuid.uuid4().hex}"
    context.setJobGroup(group, "by hand")
    try:
        work()
        return len(context.statusTracker().getJobIdsForGroup(group))
    finally:
        context.setJobGroup("rest", "rest")


def fill_by_hand(spark: Any, folder: Path, columns: list[str]) -> None:
    cached = spark.read.schema(CSV_SCHEMA).csv(str(folder)).select(*columns).persist()
    cached.count()
    cached.unpersist()


def test_a_csv_read_by_two_sequences_is_scanned_once_pruned_and_released(
    spark: Any, big_csv: Path, tmp_path: Path
) -> None:
    """The CSV is read in one job at registration: its files removed before the first reader starts, both
    readers still write the right rows (they never scan it); only the columns they name are kept; the
    cache is gone when the sequence after the last reader starts."""
    folder = tmp_path / "events"
    shutil.copytree(big_csv / "csv", folder)
    out = tmp_path / "out"
    config = load_config(three_sequences(out, {"events": csv_source(folder)}))
    runner = Watched(config, spark=spark, on_start={"by_kind": lambda: shutil.rmtree(folder)})
    metrics = runner.run()

    assert metrics["status"] == "succeeded", metrics
    assert not folder.exists()
    assert written(spark, out) == expected(spark, big_csv / "parquet")
    # the sources' jobs are those of filling a cache of the three columns by hand (one scan; AQE makes
    # the count's stages jobs of their own)
    assert runner.source_jobs() == jobs_of(
        spark, lambda: fill_by_hand(spark, big_csv / "csv", ["user_id", "kind", "amount"])
    )
    first, second, after = (runner.seen[n]["events"] for n in ("by_kind", "by_user", "after"))
    assert first["cached"] and second["cached"]
    assert first["columns"] == ["user_id", "kind", "amount"]  # id and note are named by no reader
    assert not after["cached"]  # released when by_user, its last reader, finished


def test_a_parquet_source_is_left_alone(spark: Any, big_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = load_config(three_sequences(out, {"events": {"type": "file", "path": str(big_csv / "parquet")}}))
    runner = Watched(config, spark=spark)
    metrics = runner.run()

    assert metrics["status"] == "succeeded", metrics
    assert written(spark, out) == expected(spark, big_csv / "parquet")
    assert not any(seen["events"]["cached"] for seen in runner.seen.values())
    assert runner.seen["by_kind"]["events"]["columns"] == ["id", "user_id", "kind", "amount", "note"]
    assert runner.source_jobs() == jobs_of(spark, lambda: spark.read.parquet(str(big_csv / "parquet")))  # its footers


def test_cache_false_reads_a_large_csv_per_reader(spark: Any, big_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = load_config(three_sequences(out, {"events": csv_source(big_csv / "csv", cache=False)}))
    runner = Watched(config, spark=spark)
    metrics = runner.run()

    assert metrics["status"] == "succeeded", metrics
    assert written(spark, out) == expected(spark, big_csv / "parquet")
    assert not any(seen["events"]["cached"] for seen in runner.seen.values())
    assert runner.source_jobs() == 0


def test_a_small_csv_is_read_per_reader_unless_cache_true(spark: Any, tmp_path: Path) -> None:
    """Under MIN_SHARED_BYTES a fill job costs more than parsing again; ``cache: true`` shares it anyway,
    and a star in a reader keeps every column."""
    small = tmp_path / "small"
    spark.range(0, 1000).selectExpr(
        "id", "id % 10 AS user_id", "'buy' AS kind", "1.0D AS amount", "'n' AS note"
    ).write.csv(str(small))
    out = tmp_path / "out"
    runner = Watched(load_config(three_sequences(out, {"events": csv_source(small)})), spark=spark)
    assert runner.run()["status"] == "succeeded"
    assert not runner.seen["by_kind"]["events"]["cached"] and runner.source_jobs() == 0

    forced = three_sequences(tmp_path / "forced", {"events": csv_source(small, cache=True)})
    forced["sequences"][1]["query"] = "SELECT * FROM events WHERE kind = 'buy'"
    runner = Watched(load_config(forced), spark=spark)
    assert runner.run()["status"] == "succeeded"
    assert runner.seen["by_kind"]["events"]["cached"] and runner.source_jobs() > 0
    assert runner.seen["by_kind"]["events"]["columns"] == ["id", "user_id", "kind", "amount", "note"]
    assert not runner.seen["after"]["events"]["cached"]
    assert spark.read.parquet(str(tmp_path / "forced" / "by_user")).count() == 1000


def test_a_source_read_through_a_python_udf_is_read_once(spark: Any, tmp_path: Path) -> None:
    """A catalog view computed by a Python UDF: the config cannot tell, Spark's plan shows the Python
    evaluation; the UDF runs once per row for both readers (an accumulator counts its calls)."""
    from pyspark.sql.functions import udf

    calls = spark.sparkContext.accumulator(0)

    @udf("double")
    def score(x: int) -> float:
        calls.add(1)
        return x * 0.5

    spark.range(0, 500).select("id", score("id").alias("score")).createOrReplaceTempView("scored")
    out = tmp_path / "out"
    config = three_sequences(out, {"events": {"type": "table", "table": "scored"}})
    config["sequences"][0]["query"] = "SELECT count(*) AS n, sum(score) AS total FROM events"
    config["sequences"][1]["query"] = "SELECT id FROM events WHERE score > 100"
    runner = Watched(load_config(config), spark=spark)
    assert runner.run()["status"] == "succeeded"

    assert runner.seen["by_kind"]["events"]["cached"] and not runner.seen["after"]["events"]["cached"]
    assert calls.value == 500
    total = spark.read.parquet(str(out / "by_kind")).first()
    assert (total.n, total.total) == (500, sum(i * 0.5 for i in range(500)))
    assert spark.read.parquet(str(out / "by_user")).count() == 299


def test_a_resumed_run_counts_only_the_readers_that_run(big_csv: Path, tmp_path: Path) -> None:
    """One reader left to run: nothing to share (no plan is asked, no job runs)."""
    config = load_config(three_sequences(tmp_path / "out", {"events": csv_source(big_csv / "csv")}))
    assert readers_of(config, "events") == ("by_kind", "by_user")
    assert readers_of(config, "EVENTS", running={"by_user", "after"}) == ("by_user",)
    source = config.sources[0]
    assert decide(source, ("by_user",)).shared is False
    assert decide(source, ("by_kind", "by_user")).shared is True


def test_decisions_from_the_config() -> None:
    def source(**spec: Any) -> Any:
        config = load_config(
            {
                "app_name": "t",
                "sources": {"s": spec},
                "sequences": [{"name": "q", "query": "SELECT 1 FROM s", "target": {"type": "parquet", "path": "/t/q"}}],
            }
        )
        return config.sources[0]

    two = ("a", "b")
    assert config_cost(source(type="file", format="csv", path="/d")).cost is ScanCost.EXPENSIVE
    assert config_cost(source(type="file", format="JSON", path="/d")).cost is ScanCost.EXPENSIVE
    assert config_cost(source(type="file", path="/d")).cost is ScanCost.COLUMNAR  # parquet by default
    assert config_cost(source(type="file", format="orc", path="/d")).cost is ScanCost.COLUMNAR
    assert config_cost(source(type="table", table="db.t")).cost is ScanCost.UNKNOWN
    jdbc = source(type="jdbc", url="jdbc:postgresql://h/db", table="t")
    assert config_cost(jdbc).cost is ScanCost.EXPENSIVE and not config_cost(jdbc).by_size
    assert decide(jdbc, two).describe() == "read once (a database query per read; 2 readers)"
    csv = source(type="file", format="csv", path="/d")
    assert decide(csv, two).describe() == "read once if over 16.0 MiB (csv is parsed row by row; 2 readers)"
    assert decide(csv, ("a",)).describe() == ""
    assert decide(source(type="table", table="db.t"), two).shared is None
    assert decide(source(type="file", path="/d"), two).describe().startswith("read by each reader (parquet")
    assert decide(source(type="file", path="/d", cache=True), two).describe() == "read once (cache: true)"
    assert decide(source(type="file", path="/d", cache=True), ()).shared is False
    assert decide(csv, two).shared and not decide(source(type="file", format="csv", path="/d", cache=False), two).shared


def test_cache_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(
            {
                "app_name": "t",
                "sources": {"events": {"type": "file", "path": "/d", "cache": "sometimes"}},
                "sequences": [
                    {"name": "q", "query": "SELECT 1 FROM events", "target": {"type": "parquet", "path": "/q"}}
                ],
            }
        )
    assert "sources.events.cache" in str(err.value)


def test_used_columns_is_a_superset_of_what_queries_read() -> None:
    columns = ["id", "user_id", "kind", "amount", "note"]
    assert used_columns(["SELECT kind, count(*) FROM events GROUP BY kind"], columns) == ["kind"]
    assert used_columns(["SELECT amount * 2 AS a, `user_id` FROM e -- note"], columns) == ["user_id", "amount"]
    assert used_columns(["SELECT KIND, 2 * Amount FROM events"], columns) == ["kind", "amount"]
    for star in (
        "SELECT * FROM events",
        "SELECT e.* FROM events e",
        "SELECT DISTINCT * FROM events",
        "SELECT kind, * FROM events",
        "SELECT hash(*) FROM events",
        "SELECT a FROM events NATURAL JOIN users",
        "SELECT 'unclosed FROM events",
    ):
        assert used_columns([star], columns) == columns, star
    assert used_columns(["SELECT `.*` FROM events"], columns, setting_regex=True) == columns


def test_plan_cost_and_size_from_spark_plans(spark: Any, big_csv: Path) -> None:
    """What Spark's own plans of these reads show (not hand-written plan text)."""
    from spark_job.engine.source_cache import explained

    csv = explained(spark.read.schema(CSV_SCHEMA).csv(str(big_csv / "csv")))
    assert plan_cost(csv).cost is ScanCost.EXPENSIVE and plan_cost(csv).by_size
    size = plan_size(csv)
    assert size is not None and size > MIN_SHARED_BYTES
    parquet = explained(spark.read.parquet(str(big_csv / "parquet")))
    assert plan_cost(parquet).cost is ScanCost.COLUMNAR
    assert plan_cost(explained(spark.range(3))).cost is ScanCost.UNKNOWN


def test_the_plan_says_which_sources_are_read_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = three_sequences(tmp_path / "out", {"events": csv_source(tmp_path / "e")})
    path = tmp_path / "p.json"
    path.write_text(json.dumps(config))
    assert main(["plan", "--config", str(path)]) == 0
    text = capsys.readouterr().out
    assert "read once if over 16.0 MiB (csv is parsed row by row; 2 readers)" in text
    assert main(["plan", "--config", str(path), "--format", "json"]) == 0
    (source,) = json.loads(capsys.readouterr().out)["sources"]
    assert source["read_once"] is None and source["sharing"].startswith("read once if over")  # the run decides
