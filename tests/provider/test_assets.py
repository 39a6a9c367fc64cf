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
        ({"type": "bigquery", "table": "dataset.table"}, None),
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


# Targets of every scheme the Asset code produces, with the spellings Airflow's sanitizer rewrites
# (trailing /, query order, fragments, upper-case schemes, default ports).
SANITIZED_TARGETS = [
    {"type": "parquet", "uri": "/data/out/summary/"},
    {"type": "gcs", "uri": "gs://bucket/path/x/"},
    {"type": "s3", "uri": "S3A://bucket/x?b=2&a=1#part"},
    {"type": "hdfs", "uri": "hdfs://nn:8020/x//"},
    {"type": "parquet", "uri": "abfss://container@account.dfs.core.windows.net/out"},
    {"type": "bigquery", "table": "proj.dataset.table"},
    {"type": "bigquery", "table": "proj:dataset.table"},
    {"type": "table", "table": "warehouse.daily"},
    {"type": "jdbc", "uri": "jdbc:postgresql://db/shop", "table": "sales.revenue"},
    {"type": "jdbc", "uri": "jdbc:postgresql://db:5433/shop?ssl=true&user=u&password=p", "table": "t"},
    {"type": "jdbc", "uri": "jdbc:mysql://u:p@db:3306/shop?useSSL=true", "table": "revenue"},
    {"type": "jdbc", "uri": "jdbc:sqlserver://db:1433;databaseName=shop;password=p", "table": "dbo.t"},
]


@pytest.mark.parametrize("target", SANITIZED_TARGETS, ids=lambda t: str(t.get("uri") or t.get("table")))
def test_asset_uris_are_what_airflows_sanitizer_gives(target: dict) -> None:
    # This process may load every provider's URI normaliser: the Asset built by Airflow's own
    # converter is the reference the parse-time Asset must equal.
    from airflow.sdk import Asset

    (asset,) = assets_for_targets([target])
    expected = Asset(uri=target_uri(target), extra={"sparkpipe_target_type": target["type"]})
    assert asset == expected
    assert (asset.name, asset.uri) == (expected.name, expected.uri)


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("jdbc:mysql://app:s3cretMy@db:3306/shop", "s3cretMy"),
        ("jdbc:mariadb://db:3306/shop?user=app&password=s3cretQ", "s3cretQ"),
        ("jdbc:sqlserver://db:1433;databaseName=shop;user=sa;password=s3cretMs", "s3cretMs"),
        ("jdbc:sqlserver://db;password={s3cret;Brace};databaseName=shop", "s3cret;Brace"),
        ("jdbc:oracle:thin:scott/s3cretOra@//db:1521/orcl", "s3cretOra"),
        ("jdbc:oracle:thin:scott/s3cretOra2@db:1521:orcl", "s3cretOra2"),
        ("jdbc:postgresql://app:s3cretPg@db:5432/shop", "s3cretPg"),
        ("jdbc:postgresql://db/shop?sslpassword=s3cretSsl", "s3cretSsl"),
        ("jdbc:redshift://db:5439/dev;PWD=s3cretRs", "s3cretRs"),
    ],
)
def test_no_credential_reaches_an_asset(url: str, secret: str) -> None:
    (asset,) = assets_for_targets([{"type": "jdbc", "uri": url, "table": "t"}])
    assert secret not in asset.uri and secret not in asset.name
    assert secret not in str(asset.extra)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("abfss://data@acct.dfs.core.windows.net/out?sig=s3cretSig", "abfss://data@acct.dfs.core.windows.net/out"),
        ("s3a://AKIAKEY:s3cretS3@bucket/out", "s3://bucket/out"),
    ],
)
def test_no_credential_of_a_path_reaches_an_asset_and_a_container_stays(uri: str, expected: str) -> None:
    (asset,) = assets_for_targets([{"type": "parquet", "uri": uri}])
    assert asset.uri == expected
    assert "s3cret" not in asset.name and "AKIAKEY" not in asset.uri


@pytest.mark.parametrize(
    "target",
    [
        {"type": "jdbc", "uri": "jdbc:postgresql://db:abc/shop", "table": "t"},
        {"type": "jdbc", "uri": "jdbc:postgresql://db:99999/shop", "table": "t"},
        {"type": "jdbc", "uri": "jdbc:postgresql://app:pw@db:-1/shop", "table": "t"},
        {"type": "s3", "uri": "s3:///no-bucket"},
        {"type": "parquet", "uri": "/" + "x" * 1600},
    ],
)
def test_a_malformed_target_url_gets_no_asset_and_a_warning(target: dict, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="airflow_provider_sparkpipe.assets"):
        assets = assets_for_targets([target, {"type": "parquet", "uri": "/out/kept"}], "SparkPipelineOperator 'x'")
    assert [a.uri for a in assets] == ["file:///out/kept"]
    (record,) = caplog.records
    assert record.getMessage().startswith("SparkPipelineOperator 'x': no Asset for the target ")
    assert ":pw@" not in record.getMessage()
