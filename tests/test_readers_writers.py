"""What each reader and writer hands to Spark, and adding a type through an entry point."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from spark_job.config.schema import config_schema
from spark_job.config.validation import load_config
from spark_job.engine.runner import PipelineRunner
from spark_job.errors import ConfigError
from spark_job.io import BaseReader, BaseWriter, ReadPlan, WritePlan, readers, writers

from .support import REPO


def read_plan(spec: dict) -> ReadPlan:
    cls = readers.get(spec["type"])
    assert cls is not None
    return cls(spec).plan()


def write_plan(spec: dict) -> WritePlan:
    cls = writers.get(spec["type"])
    assert cls is not None
    return cls(spec).plan()


def test_bigquery_table_read_options() -> None:
    plan = read_plan({"type": "bigquery", "table": "proj.ds.events", "project": "billing", "filter": "day > '2024'"})
    assert plan == ReadPlan(
        format="bigquery",
        options={"parentProject": "billing", "filter": "day > '2024'"},
        path="proj.ds.events",
    )


def test_bigquery_query_read_options() -> None:
    plan = read_plan(
        {"type": "bigquery", "query": "SELECT 1", "materialization_dataset": "tmp", "options": {"maxParallelism": 8}}
    )
    assert plan == ReadPlan(
        format="bigquery",
        options={"query": "SELECT 1", "viewsEnabled": "true", "materializationDataset": "tmp", "maxParallelism": "8"},
    )


def test_bigquery_write_direct_and_indirect() -> None:
    direct = write_plan({"type": "bigquery", "table": "p.d.t", "mode": "append"})
    assert direct == WritePlan(
        format="bigquery", mode="append", options={"table": "p.d.t", "writeMethod": "direct"}, table="p.d.t"
    )
    indirect = write_plan(
        {"type": "bigquery", "table": "p.d.t", "temporary_gcs_bucket": "tmp-bucket", "partition_by": ["day"]}
    )
    assert indirect.options == {
        "table": "p.d.t",
        "writeMethod": "indirect",
        "temporaryGcsBucket": "tmp-bucket",
        "partitionField": "day",
    }
    assert indirect.mode == "overwrite"


def test_jdbc_options() -> None:
    plan = read_plan(
        {
            "type": "jdbc",
            "url": "jdbc:postgresql://h/db",
            "table": "t",
            "user": "u",
            "password": "p",
            "partition_column": "id",
            "lower_bound": 0,
            "upper_bound": 10,
            "num_partitions": 2,
            "fetchsize": 1000,
        }
    )
    assert plan.format == "jdbc"
    assert plan.options == {
        "url": "jdbc:postgresql://h/db",
        "dbtable": "t",
        "user": "u",
        "password": "p",
        "partitionColumn": "id",
        "lowerBound": "0",
        "upperBound": "10",
        "numPartitions": "2",
        "fetchsize": "1000",
        "driver": "org.postgresql.Driver",  # derived from the URL
    }
    out = write_plan(
        {"type": "jdbc", "url": "jdbc:postgresql://h/db", "table": "t", "truncate": True, "batchsize": 500}
    )
    assert out.options == {
        "url": "jdbc:postgresql://h/db",
        "dbtable": "t",
        "truncate": "true",
        "batchsize": "500",
        "driver": "org.postgresql.Driver",
    }


def test_path_writers_and_dynamic_partition_overwrite() -> None:
    plan = write_plan({"type": "avro", "path": "s3a://b/x", "partition_by": "day", "dynamic_partition_overwrite": True})
    assert plan == WritePlan(
        format="avro",
        mode="overwrite",
        options={"partitionOverwriteMode": "dynamic"},
        path="s3a://b/x",
        partition_by=("day",),
    )
    assert write_plan({"type": "s3", "path": "s3://b/y", "format": "delta"}).format == "delta"
    assert write_plan({"type": "table", "table": "db.t", "insert_into": True}).method == "insertInto"


def test_json_schema_accepts_the_example_and_rejects_a_typo() -> None:
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    example = yaml.safe_load((REPO / "examples" / "pipeline.yaml").read_text())
    jsonschema.validate(example, schema)
    example["sequences"][0]["target"]["mdoe"] = "overwrite"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(example, schema)


def test_schema_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from spark_job.cli import main

    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "sparkpipe pipeline"


PLUGIN = '''
"""A third-party reader and writer living outside spark_job."""
from spark_job.io import BaseReader, BaseWriter, ReadPlan, WritePlan
from spark_job.config.fields import Field


class NumbersReader(BaseReader):
    type_name = "numbers"
    fields = {"count": Field("int", required=True, doc="how many numbers")}

    def plan(self):
        return ReadPlan(format=None)

    def read(self, spark):
        return spark.range(self.spec["count"]).withColumnRenamed("id", "n")


class MemoryWriter(BaseWriter):
    type_name = "memory"
    fields = {"view": Field("str", required=True)}
    written = {}

    def plan(self):
        return WritePlan(format=None, mode=self.mode, table=self.spec["view"])

    def write(self, df):
        MemoryWriter.written[self.spec["view"]] = sorted(r.n for r in df.collect())
'''


@pytest.fixture()
def plugin(tmp_path: Path):
    (tmp_path / "sparkpipe_numbers.py").write_text(textwrap.dedent(PLUGIN))
    dist = tmp_path / "sparkpipe_numbers-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sparkpipe-numbers\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[sparkpipe.readers]\nnumbers = sparkpipe_numbers:NumbersReader\n\n"
        "[sparkpipe.writers]\nmemory = sparkpipe_numbers:MemoryWriter\n"
    )
    sys.path.insert(0, str(tmp_path))
    readers.reload_plugins()
    writers.reload_plugins()
    yield sys.modules.get("sparkpipe_numbers")
    sys.path.remove(str(tmp_path))
    readers.reload_plugins()
    writers.reload_plugins()


def test_third_party_types_through_entry_points(plugin: Any, spark: Any) -> None:
    assert "numbers" in readers.names() and "memory" in writers.names()
    assert issubclass(readers.get("numbers"), BaseReader) and issubclass(writers.get("memory"), BaseWriter)
    config = load_config(
        {
            "app_name": "plugin",
            "sources": {"nums": {"type": "numbers", "count": 5}},
            "sequences": [
                {
                    "name": "odd",
                    "query": "SELECT n FROM nums WHERE n % 2 = 1",
                    "target": {"type": "memory", "view": "odd_numbers"},
                }
            ],
        }
    )
    metrics = PipelineRunner(config, spark=spark).run()
    assert metrics["sequences"]["odd"] == {**metrics["sequences"]["odd"], "status": "succeeded", "rows_written": 2}
    assert sys.modules["sparkpipe_numbers"].MemoryWriter.written == {"odd_numbers": [1, 3]}
    assert "source_numbers" in config_schema()["$defs"]
    with pytest.raises(ConfigError, match=r"sources\.nums: missing required key 'count'"):
        load_config(
            {
                "app_name": "p",
                "sources": {"nums": {"type": "numbers"}},
                "sequences": [{"name": "s", "query": "SELECT 1", "target": {"type": "memory", "view": "v"}}],
            }
        )
