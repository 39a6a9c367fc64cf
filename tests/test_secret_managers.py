"""``${secret:aws:...}`` and ``${secret:gcp:...}``: read by the driver over HTTP with the standard library.

AWS Secrets Manager and STS are moto's, over HTTP on loopback, with moto's IAM enforcement switched on:
moto recomputes every request's Signature Version 4 with botocore's signer and checks the caller's IAM
policy, so a wrong signature or a missing permission fails as on AWS. The Google endpoints and the AWS
metadata endpoints are the fakes of ``secret_manager_fakes``, first checked with Google's and botocore's
own clients.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from moto import settings as moto_settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.server import ThreadedMotoServer

from spark_job.cli import main
from spark_job.config.secret_manager_gcp import crc32c
from spark_job.config.secret_managers import SecretUnavailable, read_secret
from spark_job.config.validation import load_config
from spark_job.errors import ConfigError

from .secret_manager_fakes import (
    CONTAINER_TOKEN,
    GOOGLE_TOKEN,
    REFRESH_TOKEN,
    SecretEndpoints,
    serve,
)
from .support import Postgres

REGION = "eu-west-1"
DB_SECRET = "sparkpipe/orders-db"
DB_USER = "orders_reader"
DB_PASSWORD = "pw-" + secrets.token_hex(10)
PLAIN_SECRET = "sparkpipe/api-token"
PLAIN_VALUE = "tok-" + secrets.token_hex(10)
GCP_SECRET = "projects/sparkpipe-project/secrets/warehouse-password"
GCP_JSON = "projects/sparkpipe-project/secrets/warehouse-login"
GCP_VALUE = "gcp-" + secrets.token_hex(10)
ALLOW_GET_SECRET = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}],
    }
)


@dataclass(frozen=True)
class Aws:
    url: str
    access_key: str
    secret_key: str
    other_access_key: str
    other_secret_key: str
    role_arn: str

    def environ(self, **extra: str) -> dict[str, str]:
        """An environment with nothing but the endpoint, the region and what the test adds."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_REGION": REGION, "HOME": "/nonexistent", **extra}

    def keys(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}


@pytest.fixture(scope="module")
def aws_server() -> Iterator[Aws]:
    """Moto with an IAM user allowed GetSecretValue, one that is not, a role for web identities and secrets."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    setup = {"endpoint_url": url, "region_name": REGION, "aws_access_key_id": "x", "aws_secret_access_key": "x"}
    iam, sm = boto3.client("iam", **setup), boto3.client("secretsmanager", **setup)
    iam.create_user(UserName="sparkpipe-driver")
    iam.put_user_policy(UserName="sparkpipe-driver", PolicyName="read-secrets", PolicyDocument=ALLOW_GET_SECRET)
    key = iam.create_access_key(UserName="sparkpipe-driver")["AccessKey"]
    iam.create_user(UserName="sparkpipe-nobody")
    other = iam.create_access_key(UserName="sparkpipe-nobody")["AccessKey"]
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Federated": "oidc"}, "Action": "sts:AssumeRoleWithWebIdentity"}
        ],
    }
    role = iam.create_role(RoleName="sparkpipe-irsa", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName="sparkpipe-irsa", PolicyName="read-secrets", PolicyDocument=ALLOW_GET_SECRET)
    sm.create_secret(Name=DB_SECRET, SecretString=json.dumps({"username": DB_USER, "password": DB_PASSWORD}))
    sm.create_secret(Name=PLAIN_SECRET, SecretString=PLAIN_VALUE)
    sm.create_secret(Name="sparkpipe/binary", SecretBinary=b"\xff\xfe not text")
    try:
        yield Aws(
            url,
            key["AccessKeyId"],
            key["SecretAccessKey"],
            other["AccessKeyId"],
            other["SecretAccessKey"],
            role,
        )
    finally:
        server.stop()


@pytest.fixture
def aws(aws_server: Aws, monkeypatch: pytest.MonkeyPatch) -> Aws:
    """The server with IAM enforced: signatures and policies are checked from the next request on."""
    monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    check = ActionAuthenticatorMixin._authenticate_and_authorize_normal_action

    def check_signed_calls(self: ActionAuthenticatorMixin, resource: str = "*") -> None:
        # AssumeRoleWithWebIdentity is an unsigned call on AWS (the web identity token is the proof).
        if self._get_action() != "AssumeRoleWithWebIdentity":  # type: ignore[attr-defined]
            check(self, resource)

    monkeypatch.setattr(ActionAuthenticatorMixin, "_authenticate_and_authorize_normal_action", check_signed_calls)
    return aws_server


@pytest.fixture(scope="module")
def endpoints_server() -> Iterator[SecretEndpoints]:
    with serve() as endpoints:
        endpoints.google_secrets[GCP_SECRET] = [b"old-password", GCP_VALUE.encode()]
        endpoints.google_secrets[GCP_JSON] = [json.dumps({"user": "wh", "password": GCP_VALUE}).encode()]
        endpoints.google_secrets["projects/sparkpipe-project/secrets/latin1"] = ["café".encode("latin-1")]
        endpoints.google_secrets["projects/sparkpipe-project/secrets/damaged"] = [b"bits"]
        endpoints.corrupt.add("projects/sparkpipe-project/secrets/damaged")
        yield endpoints


@pytest.fixture
def endpoints(endpoints_server: SecretEndpoints, aws_server: Aws) -> SecretEndpoints:
    endpoints_server.requests.clear()
    endpoints_server.aws_credentials = {
        "AccessKeyId": aws_server.access_key,
        "SecretAccessKey": aws_server.secret_key,
        "Token": "",
    }
    return endpoints_server


def google_environ(endpoints: SecretEndpoints, **extra: str) -> dict[str, str]:
    return {"GCE_METADATA_HOST": endpoints.host, "SPARKPIPE_GCP_SECRET_MANAGER_ENDPOINT": endpoints.url, **extra}


# The fakes speak the real protocols. ------------------------------------------------------------------


def test_googles_own_clients_read_a_secret_from_the_fakes(
    endpoints: SecretEndpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    import google.auth.transport.requests
    from google.auth import compute_engine
    from google.auth.compute_engine import _metadata
    from google.cloud import secretmanager_v1
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports.rest import (
        SecretManagerServiceRestTransport,
    )

    # google-auth reads GCE_METADATA_HOST when it is imported: set what it read.
    monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", endpoints.host)
    credentials = compute_engine.Credentials()
    credentials.refresh(google.auth.transport.requests.Request())
    assert credentials.token == GOOGLE_TOKEN
    transport = SecretManagerServiceRestTransport(host=endpoints.host, credentials=credentials, url_scheme="http")
    client = secretmanager_v1.SecretManagerServiceClient(transport=transport)
    answer = client.access_secret_version(name=f"{GCP_SECRET}/versions/latest")
    assert answer.payload.data == GCP_VALUE.encode()
    assert answer.payload.data_crc32c == crc32c(GCP_VALUE.encode())
    assert answer.name.endswith("/secrets/warehouse-password/versions/2")


def test_botocores_metadata_fetchers_read_credentials_from_the_fakes(endpoints: SecretEndpoints, aws: Aws) -> None:
    from botocore.utils import ContainerMetadataFetcher, InstanceMetadataFetcher

    from_imds = InstanceMetadataFetcher(base_url=endpoints.url, timeout=2).retrieve_iam_role_credentials()
    assert from_imds["access_key"] == aws.access_key
    assert from_imds["role_name"] == "sparkpipe-emr-ec2-role"
    from_container = ContainerMetadataFetcher().retrieve_full_uri(
        f"{endpoints.url}/container-credentials", headers={"Authorization": CONTAINER_TOKEN}
    )
    assert from_container["SecretAccessKey"] == aws.secret_key


# AWS Secrets Manager. ------------------------------------------------------------------------------


def test_an_aws_secret_is_read_with_a_signature_moto_verifies(aws: Aws) -> None:
    environ = aws.environ(**aws.keys())
    assert read_secret(f"aws:{PLAIN_SECRET}", environ) == PLAIN_VALUE
    assert read_secret(f"aws:{DB_SECRET}#password", environ) == DB_PASSWORD
    arn = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:{PLAIN_SECRET}"
    without_region = {k: v for k, v in environ.items() if k != "AWS_REGION"}
    assert read_secret(f"aws:{arn}", without_region) == PLAIN_VALUE  # the region comes from the ARN

    with pytest.raises(SecretUnavailable, match="HTTP 403 SignatureDoesNotMatch"):
        wrong = aws.secret_key[:-1] + ("y" if aws.secret_key.endswith("x") else "x")  # the key is random
        read_secret(f"aws:{PLAIN_SECRET}", {**environ, "AWS_SECRET_ACCESS_KEY": wrong})
    nobody = aws.environ(AWS_ACCESS_KEY_ID=aws.other_access_key, AWS_SECRET_ACCESS_KEY=aws.other_secret_key)
    with pytest.raises(SecretUnavailable, match=r"HTTP 403 AccessDenied.*credentials: environment variables"):
        read_secret(f"aws:{PLAIN_SECRET}", nobody)
    with pytest.raises(SecretUnavailable, match="HTTP 404 ResourceNotFoundException"):
        read_secret("aws:sparkpipe/no-such-secret", environ)


def test_aws_credentials_come_from_a_web_identity(aws: Aws, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.e30.sig\n")
    environ = aws.environ(AWS_WEB_IDENTITY_TOKEN_FILE=str(token), AWS_ROLE_ARN=aws.role_arn)
    assert read_secret(f"aws:{DB_SECRET}#username", environ) == DB_USER
    with pytest.raises(SecretUnavailable, match="cannot read the web identity token file"):
        read_secret(f"aws:{PLAIN_SECRET}", {**environ, "AWS_WEB_IDENTITY_TOKEN_FILE": str(tmp_path / "none")})


def test_aws_credentials_come_from_the_shared_credentials_file(aws: Aws, tmp_path: Path) -> None:
    shared = tmp_path / "credentials"
    shared.write_text(
        f"[default]\naws_access_key_id = {aws.other_access_key}\naws_secret_access_key = {aws.other_secret_key}\n"
        f"[etl]\naws_access_key_id = {aws.access_key}\naws_secret_access_key = {aws.secret_key}\n"
    )
    environ = aws.environ(AWS_SHARED_CREDENTIALS_FILE=str(shared), AWS_PROFILE="etl")
    assert read_secret(f"aws:{PLAIN_SECRET}", environ) == PLAIN_VALUE
    with pytest.raises(SecretUnavailable, match="shared credentials file, profile default"):
        read_secret(f"aws:{PLAIN_SECRET}", {**environ, "AWS_PROFILE": "default"})


def test_aws_credentials_come_from_the_container_endpoint(aws: Aws, endpoints: SecretEndpoints, tmp_path: Path) -> None:
    token_file = tmp_path / "eks-pod-identity-token"
    token_file.write_text(CONTAINER_TOKEN)
    environ = aws.environ(
        AWS_CONTAINER_CREDENTIALS_FULL_URI=f"{endpoints.url}/container-credentials",
        AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=str(token_file),
    )
    assert read_secret(f"aws:{PLAIN_SECRET}", environ) == PLAIN_VALUE
    token_file.write_text("wrong")
    with pytest.raises(SecretUnavailable, match="container credentials endpoint answered HTTP 401"):
        read_secret(f"aws:{PLAIN_SECRET}", environ)


def test_aws_credentials_and_region_come_from_instance_metadata(aws: Aws, endpoints: SecretEndpoints) -> None:
    environ = {"AWS_ENDPOINT_URL": aws.url, "AWS_EC2_METADATA_SERVICE_ENDPOINT": endpoints.url, "HOME": "/nonexistent"}
    assert read_secret(f"aws:{PLAIN_SECRET}", environ) == PLAIN_VALUE
    assert endpoints.requests.count("PUT /latest/api/token") == 1  # IMDSv2: one session token for every read
    assert "GET /latest/meta-data/placement/region" in endpoints.requests
    # Credentials in the environment come first, as in the SDKs' chain.
    wrong = {"AWS_ACCESS_KEY_ID": aws.other_access_key, "AWS_SECRET_ACCESS_KEY": aws.other_secret_key}
    with pytest.raises(SecretUnavailable, match="AccessDenied"):
        read_secret(f"aws:{PLAIN_SECRET}", {**environ, **wrong})


def test_no_aws_credentials_or_region_is_a_clear_error(aws: Aws) -> None:
    with pytest.raises(SecretUnavailable, match=r"no AWS credentials found.*secretsmanager:GetSecretValue"):
        read_secret(f"aws:{PLAIN_SECRET}", aws.environ(AWS_EC2_METADATA_DISABLED="true"))
    with pytest.raises(SecretUnavailable, match="no AWS region: set AWS_REGION"):
        read_secret(f"aws:{PLAIN_SECRET}", {"AWS_EC2_METADATA_DISABLED": "true", **aws.keys()})


def test_binary_and_non_json_aws_secrets(aws: Aws) -> None:
    environ = aws.environ(**aws.keys())
    with pytest.raises(SecretUnavailable, match="neither a string nor a UTF-8 binary"):
        read_secret("aws:sparkpipe/binary", environ)
    with pytest.raises(SecretUnavailable, match="#password reads a JSON field, but the secret is not JSON") as info:
        read_secret(f"aws:{PLAIN_SECRET}#password", environ)
    with pytest.raises(SecretUnavailable, match="has no field 'pass' \\(it has 2 fields\\)") as missing:
        read_secret(f"aws:{DB_SECRET}#pass", environ)
    assert PLAIN_VALUE not in str(info.value) and DB_PASSWORD not in str(missing.value)


# Google Secret Manager. ----------------------------------------------------------------------------


def test_a_google_secret_is_read_with_the_metadata_servers_token(endpoints: SecretEndpoints) -> None:
    environ = google_environ(endpoints)
    assert read_secret(f"gcp:{GCP_SECRET}", environ) == GCP_VALUE  # latest
    assert read_secret(f"gcp:{GCP_SECRET}/versions/1", environ) == "old-password"
    assert read_secret(f"gcp:{GCP_JSON}#password", environ) == GCP_VALUE
    assert "GET /computeMetadata/v1/instance/service-accounts/default/token" in endpoints.requests


def test_google_tokens_from_the_environment_or_an_authorized_user_file(
    endpoints: SecretEndpoints, tmp_path: Path
) -> None:
    assert read_secret(f"gcp:{GCP_SECRET}", google_environ(endpoints, GOOGLE_OAUTH_ACCESS_TOKEN=GOOGLE_TOKEN)) == (
        GCP_VALUE
    )
    user_file = tmp_path / "adc.json"
    user_file.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "c",
                "client_secret": "s",
                "refresh_token": REFRESH_TOKEN,
                "token_uri": f"{endpoints.url}/token",
            }
        )
    )
    environ = google_environ(endpoints, GOOGLE_APPLICATION_CREDENTIALS=str(user_file), GCE_METADATA_HOST="0.0.0.0:9")
    assert read_secret(f"gcp:{GCP_SECRET}", environ) == GCP_VALUE
    assert "POST /token" in endpoints.requests
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps({"type": "service_account", "private_key": "..."}))
    with pytest.raises(SecretUnavailable, match="service_account credentials file: the driver reads authorized_user"):
        read_secret(f"gcp:{GCP_SECRET}", {**environ, "GOOGLE_APPLICATION_CREDENTIALS": str(key_file)})


def test_google_errors_are_reported_without_the_payload(endpoints: SecretEndpoints) -> None:
    environ = google_environ(endpoints)
    with pytest.raises(SecretUnavailable, match="HTTP 403 PERMISSION_DENIED"):
        read_secret("gcp:projects/sparkpipe-project/secrets/nope", environ)
    with pytest.raises(SecretUnavailable, match=r"HTTP 404 NOT_FOUND.*metadata server's default service account"):
        read_secret(f"gcp:{GCP_SECRET}/versions/9", environ)
    with pytest.raises(SecretUnavailable, match=r"HTTP 401 UNAUTHENTICATED.*GOOGLE_OAUTH_ACCESS_TOKEN"):
        read_secret(f"gcp:{GCP_SECRET}", {**environ, "GOOGLE_OAUTH_ACCESS_TOKEN": "expired"})
    with pytest.raises(SecretUnavailable, match="does not match its CRC32C checksum"):
        read_secret("gcp:projects/sparkpipe-project/secrets/damaged", environ)
    with pytest.raises(SecretUnavailable, match="not UTF-8 text"):
        read_secret("gcp:projects/sparkpipe-project/secrets/latin1", environ)
    with pytest.raises(SecretUnavailable, match="cannot reach the metadata server"):
        read_secret(f"gcp:{GCP_SECRET}", {**environ, "GCE_METADATA_HOST": "127.0.0.1:9"})


def test_crc32c_matches_the_published_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # RFC 3720, B.4
    assert crc32c(b"") == 0


# In configs. ---------------------------------------------------------------------------------------


def jdbc_config(user: str, password: str, url: str = "jdbc:postgresql://db/shop") -> dict:
    return {
        "app_name": "secrets",
        "sources": {"orders": {"type": "jdbc", "url": url, "table": "orders", "user": user, "password": password}},
        "sequences": [{"name": "copy", "query": "SELECT * FROM orders", "target": {"type": "parquet", "path": "/o"}}],
    }


def test_a_config_reads_each_secret_once_and_masks_its_values(endpoints: SecretEndpoints) -> None:
    config = load_config(
        jdbc_config(f"${{secret:gcp:{GCP_JSON}#user}}", f"${{secret:gcp:{GCP_JSON}#password}}"),
        environ=google_environ(endpoints),
    )
    source = config.sources[0].spec
    assert (source["user"], source["password"]) == ("wh", GCP_VALUE)
    assert sum(r.endswith(":access") for r in endpoints.requests) == 1
    assert config.mask(f"login failed for {GCP_VALUE}") == "login failed for ***"
    assert GCP_VALUE not in json.dumps(config.mask(json.dumps(config.to_document())))


def test_without_resolving_references_stay_and_nothing_is_read(endpoints: SecretEndpoints) -> None:
    reference = f"${{secret:gcp:{GCP_SECRET}}}"
    config = load_config(jdbc_config("u", reference), environ=google_environ(endpoints), resolve_env=False)
    assert config.to_document()["sources"]["orders"]["password"] == reference
    assert endpoints.requests == []


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (
            "${secret:vault:kv/db}",
            "unknown secret manager 'vault': a reference is MANAGER:NAME, one of ${secret:aws:...}, ${secret:gcp:...}",
        ),
        ("${secret:gcp:warehouse-password}", "a Google secret is named projects/PROJECT/secrets/SECRET"),
        ("${secret:aws:prod db}", "an AWS secret name is 1-512 letters"),
        ("${secret:aws:arn:aws:s3:::bucket}", "not a Secrets Manager secret ARN"),
        ("${secret:aws:prod/db#}", "nothing after '#'"),
    ],
)
def test_malformed_references_are_config_errors_at_their_line(
    reference: str, message: str, endpoints: SecretEndpoints, tmp_path: Path
) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "app_name: secrets\n"
        "sources:\n"
        "  orders:\n"
        "    type: jdbc\n"
        "    url: jdbc:postgresql://db/shop\n"
        "    table: orders\n"
        f"    password: '{reference}'\n"
        "sequences:\n"
        "  - {name: copy, query: SELECT * FROM orders, target: {type: parquet, path: /o}}\n"
    )
    for resolve in (False, True):  # at DAG parse time (the operator) and on the driver
        with pytest.raises(ConfigError) as info:
            load_config(path, resolve_env=resolve, environ=google_environ(endpoints))
        assert len(info.value.problems) == 1
        assert str(info.value.problems[0]).startswith(f"{path}:7: sources.orders.password: {reference}: {message}")
    assert endpoints.requests == []


def test_an_unreadable_secret_stops_the_cli_before_spark(
    aws: Aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in aws.environ(
        AWS_ACCESS_KEY_ID=aws.other_access_key, AWS_SECRET_ACCESS_KEY=aws.other_secret_key
    ).items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(jdbc_config("u", f"${{secret:aws:{DB_SECRET}#password}}"), indent=1))
    out = tmp_path / "o"
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if '"password"' in text)
    assert f"{path}:{line}: sources.orders.password: cannot read the secret ${{secret:aws:{DB_SECRET}#password}}" in err
    assert "AccessDenied" in err and "Traceback" not in err
    assert not out.exists()


def test_a_pipeline_reads_postgres_with_credentials_from_secrets_manager(
    spark: object,
    postgres: Postgres,
    aws: Aws,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with postgres.connect() as conn:
        conn.execute(f"DROP ROLE IF EXISTS {DB_USER}")
        conn.execute(f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{DB_PASSWORD}'")
        conn.execute("DROP TABLE IF EXISTS secret_orders")
        conn.execute("CREATE TABLE secret_orders AS SELECT g AS id, g * 3 AS amount FROM generate_series(1, 40) g")
        conn.execute(f"GRANT SELECT ON secret_orders TO {DB_USER}")
    for name, value in aws.environ(**aws.keys()).items():
        monkeypatch.setenv(name, value)
    creds = {"user": f"${{secret:aws:{DB_SECRET}#username}}", "password": f"${{secret:aws:{DB_SECRET}#password}}"}
    out, metrics_file = tmp_path / "totals", tmp_path / "metrics.json"
    config = {
        "app_name": "secrets_manager_jdbc",
        "sources": {"orders": {"type": "jdbc", "url": postgres.jdbc_url, "table": "secret_orders", **creds}},
        "sequences": [
            {
                "name": "totals",
                "query": "SELECT count(*) AS n, sum(amount) AS total FROM orders",
                "target": {"type": "json", "path": str(out), "mode": "overwrite"},
            },
            {
                "name": "denied",  # the role may not write: its error must not show the password
                "query": "SELECT * FROM orders",
                "target": {"type": "jdbc", "url": postgres.jdbc_url, "table": "pg_catalog.pg_class", **creds},
            },
        ],
    }
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(config))
    code = main(["run", "--config", str(path), "--metrics-out", str(metrics_file)])
    assert code == 1
    rows = [json.loads(line) for f in sorted(out.glob("part-*.json")) for line in f.read_text().splitlines()]
    assert rows == [{"n": 40, "total": 3 * 40 * 41 // 2}]
    metrics = json.loads(metrics_file.read_text())
    assert metrics["sequences"]["totals"]["status"] == "succeeded"
    assert metrics["sequences"]["denied"]["status"] == "failed"
    captured = capsys.readouterr()
    outputs = {
        "stdout": captured.out,
        "stderr": captured.err,
        "log": caplog.text,
        "metrics": metrics_file.read_text(),
        "config": path.read_text(),
        **{str(p): p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()},
    }
    assert [name for name, text in outputs.items() if DB_PASSWORD in text] == []
