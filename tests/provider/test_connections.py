"""Airflow connections named by a config (``connection: ID``): the JDBC URL of a connection, and the
credentials handed to the driver as environment references or secret-manager references."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize(
    ("uri", "url"),
    [
        ("postgres://u:p@db.example:6543/shop", "jdbc:postgresql://db.example:6543/shop"),
        ("mysql://u:p@db.example/shop", "jdbc:mysql://db.example:3306/shop"),
        ("mssql://u:p@sql.example:1433/shop", "jdbc:sqlserver://sql.example:1433;databaseName=shop"),
        ("generic://u:p@h/x?jdbc_url=jdbc%3Ah2%3Amem%3Ashop", "jdbc:h2:mem:shop"),
    ],
)
def test_jdbc_url_of_a_connection(uri: str, url: str) -> None:
    from airflow.sdk import Connection

    from airflow_provider_sparkpipe.connections import ConnectionCredentials, jdbc_url

    conn = Connection.from_uri(uri, conn_id="shop")
    assert jdbc_url(conn) == url
    credentials = ConnectionCredentials(lambda conn_id: conn)
    assert credentials("shop") == {
        "url": url,
        "user": "${env:SPARKPIPE_CONN_SHOP_USER}",
        "password": "${env:SPARKPIPE_CONN_SHOP_PASSWORD}",
    }
    assert credentials.environment == {"SPARKPIPE_CONN_SHOP_USER": "u", "SPARKPIPE_CONN_SHOP_PASSWORD": "p"}


def test_a_connection_naming_a_secret_gives_secret_references_and_no_environment() -> None:
    from airflow.sdk import Connection

    from airflow_provider_sparkpipe.connections import ConnectionCredentials

    conn = Connection.from_uri(
        "postgres://reporter:ignored@db.internal:5432/shop?password_secret=aws%3Aprod%2Fshop-db%23password",
        conn_id="shop",
    )
    credentials = ConnectionCredentials(lambda conn_id: conn)
    assert credentials("shop") == {
        "url": "jdbc:postgresql://db.internal:5432/shop",
        "user": "reporter",
        "password": "${secret:aws:prod/shop-db#password}",
    }
    assert credentials.environment == {}
    conn = Connection(
        conn_id="wh",
        conn_type="postgres",
        host="wh",
        extra=json.dumps(
            {
                "password_secret": "${secret:gcp:projects/p/secrets/wh-pw}",
                "user_secret": "gcp:projects/p/secrets/wh-user",
            }
        ),
    )
    settings = ConnectionCredentials(lambda conn_id: conn)("wh")
    assert (settings["user"], settings["password"]) == (
        "${secret:gcp:projects/p/secrets/wh-user}",
        "${secret:gcp:projects/p/secrets/wh-pw}",
    )
    broken = Connection(conn_id="b", conn_type="postgres", host="h", extra='{"password_secret": "vault:kv/db"}')
    with pytest.raises(ValueError, match="extra 'password_secret' \\('vault:kv/db'\\): unknown secret manager"):
        ConnectionCredentials(lambda conn_id: broken)("b")
