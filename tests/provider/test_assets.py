"""Pipeline targets become Airflow Assets with stable URIs."""

from __future__ import annotations

import pytest

from airflow_provider_sparkpipe.assets import assets_for_targets, target_uri


@pytest.mark.parametrize(
    ("target", "uri"),
    [
        ({"type": "parquet", "uri": "/data/out/summary/"}, "file:///data/out/summary"),
        ({"type": "csv", "uri": "file:/data/out/../out/x"}, "file:///data/out/x"),
        ({"type": "gcs", "uri": "gs://bucket/path/x"}, "gs://bucket/path/x"),
        ({"type": "s3", "uri": "s3a://bucket/x"}, "s3://bucket/x"),
        ({"type": "hdfs", "uri": "hdfs://nn:8020/x"}, "hdfs://nn:8020/x"),
        ({"type": "bigquery", "table": "proj.dataset.table"}, "bigquery://proj/dataset/table"),
        ({"type": "bigquery", "table": "proj:dataset.table"}, "bigquery://proj/dataset/table"),
        ({"type": "table", "table": "warehouse.daily"}, "table:warehouse.daily"),
        (
            {"type": "jdbc", "uri": "jdbc:postgresql://db:5433/shop", "table": "sales.revenue"},
            "postgres://db:5433/shop/sales/revenue",
        ),
        (
            {"type": "jdbc", "uri": "jdbc:postgresql://db/shop", "table": "revenue"},
            "postgres://db:5432/shop/public/revenue",
        ),
        ({"type": "jdbc", "uri": "jdbc:mysql://db/shop", "table": "revenue"}, "jdbc:mysql://db/shop/revenue"),
        ({"type": "parquet", "uri": "relative/out"}, None),
        ({"type": "csv", "uri": "/out/{{ ds }}"}, None),
    ],
)
def test_target_uri(target: dict, uri: str | None) -> None:
    assert target_uri(target) == uri


def test_assets_are_deduplicated_and_tagged_with_the_target_type() -> None:
    assets = assets_for_targets(
        [{"type": "parquet", "uri": "/out/a"}, {"type": "parquet", "uri": "/out/a/"}, {"type": "json", "uri": "x"}]
    )
    assert [(a.uri, a.extra) for a in assets] == [("file:///out/a", {"sparkpipe_target_type": "parquet"})]
