"""Credentials inside connection URLs: found for masking, stripped for showing."""

from __future__ import annotations

import pytest

from spark_job.config.urls import is_credential_key, strip_credentials, url_credentials

# (url, what may be shown, the secret values inside it)
CASES = [
    (
        "jdbc:mysql://root:s3cr%40t@db:3306/shop?useSSL=true",
        "jdbc:mysql://db:3306/shop?useSSL=true",
        ["s3cr%40t", "s3cr@t"],
    ),
    ("jdbc:postgresql://app:pw@pg:5432/db", "jdbc:postgresql://pg:5432/db", ["pw"]),
    ("jdbc:postgresql://app:p/w@pg:5432/db", "jdbc:postgresql://pg:5432/db", ["p/w"]),
    ("jdbc:postgresql://app:p@ss@pg/db", "jdbc:postgresql://pg/db", ["p@ss"]),
    ("postgresql://:onlypw@pg/db", "postgresql://pg/db", ["onlypw"]),
    ("mongodb+srv://u:mpw@cluster0/x", "mongodb+srv://cluster0/x", ["mpw"]),
    ("https://user:hpw@example.com/a?b=1", "https://example.com/a?b=1", ["hpw"]),
    ("https://ghp_token123@github.com/org/repo", "https://github.com/org/repo", ["ghp_token123"]),
    ("s3a://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/data", "s3a://bucket/data", ["wJalrXUtnFEMI"]),
    ("jdbc:oracle:thin:scott/tiger@db:1521:ORCL", "jdbc:oracle:thin:@db:1521:ORCL", ["tiger"]),
    ("jdbc:oracle:thin:scott/tiger@//db:1521/svc", "jdbc:oracle:thin:@//db:1521/svc", ["tiger"]),
    ('jdbc:oracle:thin:scott/"t@g/r"@//db/svc', "jdbc:oracle:thin:@//db/svc", ["t@g/r"]),
    ("JDBC:ORACLE:THIN:scott/tiger@db:1521:ORCL", "JDBC:ORACLE:THIN:@db:1521:ORCL", ["tiger"]),
    ("jdbc:sqlserver://h;user=sa;password={a;b};databaseName=db", "jdbc:sqlserver://h;databaseName=db", ["a;b"]),
    ("jdbc:sqlserver://h;password={a}}b;c};x=1", "jdbc:sqlserver://h;x=1", ["a}b;c"]),
    ("jdbc:sqlserver://h:1433;databaseName=db;PWD=xx1;UID=u", "jdbc:sqlserver://h:1433;databaseName=db", ["xx1"]),
    ("jdbc:sqlserver://h;Password={p?w#d};db=x", "jdbc:sqlserver://h;db=x", ["p?w#d"]),
    ("jdbc:db2://host:50000/SAMPLE:user=db2u;password=db2pw;", "jdbc:db2://host:50000/SAMPLE", ["db2pw"]),
    (
        "jdbc:db2://host:50000/SAMPLE:user=u;password=p2;currentSchema=S;",
        "jdbc:db2://host:50000/SAMPLE:currentSchema=S;",
        ["p2"],
    ),
    ("jdbc:mysql://h/db?user=u&password=qp&x=1", "jdbc:mysql://h/db?x=1", ["qp"]),
    ("jdbc:mysql://h/db?USER=u&PASSWORD=qp", "jdbc:mysql://h/db", ["qp"]),
    (
        "jdbc:snowflake://acct.snowflakecomputing.com/?token=tk1&db=d",
        "jdbc:snowflake://acct.snowflakecomputing.com/?db=d",
        ["tk1"],
    ),
    (
        "https://acct.blob.core.windows.net/c?sv=2020&sig=ab%2Fcd",
        "https://acct.blob.core.windows.net/c?sv=2020",
        ["ab%2Fcd", "ab/cd"],
    ),
    (
        "https://s3.amazonaws.com/b/k?X-Amz-Signature=f00&X-Amz-Date=1",
        "https://s3.amazonaws.com/b/k?X-Amz-Date=1",
        ["f00"],
    ),
    ("https://api.example.com/v1?api_key=k3y&q=1", "https://api.example.com/v1?q=1", ["k3y"]),
    ("jdbc:redshift://h:5439/db?AccessKeyID=AK&SecretAccessKey=SK", "jdbc:redshift://h:5439/db", ["AK", "SK"]),
    (
        "jdbc:mysql://(host=h,port=3306,user=u,password=mp)/db",
        "jdbc:mysql://(host=h,port=3306,user=u,password=***)/db",
        ["mp"],
    ),
    ("jdbc:mysql://address=(host=h)(password=pp)/db", "jdbc:mysql://address=(host=h)(password=***)/db", ["pp"]),
    (
        "jdbc:bigquery://https://www.googleapis.com/bigquery/v2:443;OAuthType=0;OAuthPvtKey=pk1;ProjectId=p",
        "jdbc:bigquery://https://www.googleapis.com/bigquery/v2:443;OAuthType=0;ProjectId=p",
        ["pk1"],
    ),
    ("wasbs://c:acctkey@acct.blob.core.windows.net/p", "wasbs://acct.blob.core.windows.net/p", ["acctkey"]),
    (
        "abfss://data@acct.dfs.core.windows.net/raw?sig=sg1",  # the container stays: it names the place
        "abfss://data@acct.dfs.core.windows.net/raw",
        ["sg1"],
    ),
]


@pytest.mark.parametrize(("url", "shown", "secrets"), CASES)
def test_credentials_are_found_and_stripped(url: str, shown: str, secrets: list[str]) -> None:
    assert strip_credentials(url) == shown
    assert url_credentials(url) == secrets
    for secret in secrets:
        assert secret not in strip_credentials(url)


@pytest.mark.parametrize(
    "url",
    [
        "jdbc:postgresql://pg:5432/db",
        "jdbc:oracle:thin:@//db:1521/svc",
        "jdbc:sqlserver://h:1433;databaseName=db;encrypt=true",
        "s3a://bucket/path@v1/part",
        "gs://bucket/a/b",
        "file:///tmp/out",
        "/data/out",
        "relative/dir",
        "https://example.com/?page=2#top",
        "abfss://data@acct.dfs.core.windows.net/raw/x",
        "wasbs://logs@acct.blob.core.windows.net/2024",
    ],
)
def test_urls_without_credentials_are_unchanged(url: str) -> None:
    assert strip_credentials(url) == url
    assert url_credentials(url) == []


@pytest.mark.parametrize(
    "url",
    [
        "jdbc:sqlserver://h;user=sa;password=${env:PW}",
        "jdbc:postgresql://app:${env:PG_PASSWORD}@pg/db",
        "jdbc:postgresql://app:${file:/run/secrets/pw}@pg/db",
        "jdbc:mysql://h/db?password=${secret:aws:db#password}",
    ],
)
def test_unresolved_references_are_stripped_but_are_not_secret_values(url: str) -> None:
    shown = strip_credentials(url)
    assert "${" not in shown
    # The reference names where the secret is; its text is not a value to mask in messages.
    assert url_credentials(url) == []


def test_user_names_are_stripped_from_parameters() -> None:
    assert strip_credentials("jdbc:sqlserver://h;UID=admin;PWD=x") == "jdbc:sqlserver://h"
    assert strip_credentials("jdbc:mysql://h/db?username=admin") == "jdbc:mysql://h/db"


def test_a_password_user_is_not_taken_for_a_lone_secret_on_jdbc() -> None:
    # ``user@host`` on a database URL names a user, not a key: stripped, not a value to mask.
    assert strip_credentials("jdbc:postgresql://app@pg/db") == "jdbc:postgresql://pg/db"
    assert url_credentials("jdbc:postgresql://app@pg/db") == []


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("PWD", True),
        ("trustStorePassword", True),
        ("fs.azure.account.key.acct.dfs.core.windows.net", True),
        ("fs.s3a.session.key", True),
        ("fs.s3a.secret.key", True),
        ("spark.hadoop.google.cloud.auth.service.account.json.keyfile.content", True),
        ("access_token", True),
        ("sig", True),
        ("OAuthPvtKey", True),
        ("sasKey", True),
        ("SharedKey", True),
        ("user", False),
        ("databaseName", False),
        ("keyspace", False),
        ("spark.ssl.keyStore", False),
        ("spark.sql.shuffle.partitions", False),
    ],
)
def test_credential_keys(key: str, secret: bool) -> None:
    assert is_credential_key(key) is secret


def test_non_strings_pass_through() -> None:
    assert strip_credentials("") == ""
    assert url_credentials("") == []
