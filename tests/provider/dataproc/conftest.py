"""Fixtures for the Google runtimes: a GCS emulator and a fake Dataproc gRPC server on 127.0.0.1, and
the Airflow connection that points the official provider's hooks at them.

The fake Dataproc serves TLS with a certificate made here; gRPC trusts it through
``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``, so the client runs its ordinary secure channel. The
``google_cloud_platform`` connection uses the provider's own ``is_anonymous`` setting, and the
runtimes' ``api_endpoint`` names the fake: no credential lookup or client is patched. GCSHook
reaches the emulator through ``STORAGE_EMULATOR_HOST``, which google-cloud-storage honours.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.provider.dataproc.fake_dataproc import DRIVER_OUTPUT_BUCKET, FakeDataproc
from tests.support import free_port

STAGING_BUCKET = "sparkpipe-staging"
PROJECT = "sparkpipe-test"
REGION = "europe-west1"
CLUSTER = "test-cluster"
DATAPROC_DAGS = Path(__file__).resolve().parent / "dags"


def _self_signed_certificate() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-dataproc")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, key_pem


# gRPC reads its trusted roots once per process, at the first TLS channel: set them before any test runs.
_CERTIFICATE, _PRIVATE_KEY = _self_signed_certificate()
_CA_FILE = Path(tempfile.mkdtemp(prefix="sparkpipe-fake-dataproc-")) / "ca.pem"
_CA_FILE.write_bytes(_CERTIFICATE)
_GCS_PORT = free_port()
GOOGLE_ENV = {
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(_CA_FILE),
    "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{_GCS_PORT}",
    "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(
        {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": PROJECT}}
    ),
}
os.environ.update(GOOGLE_ENV)


@dataclass
class DataprocFakes:
    """The running fakes: the Dataproc state, its endpoint, and a GCS client on the emulator."""

    dataproc: FakeDataproc
    endpoint: str

    def read(self, uri: str) -> bytes:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        bucket, _, name = uri[len("gs://") :].partition("/")
        client = storage.Client(project="fake", credentials=AnonymousCredentials())
        return bytes(client.bucket(bucket).blob(name).download_as_bytes())

    def list(self, prefix: str = "", bucket: str = STAGING_BUCKET) -> list[str]:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(project="fake", credentials=AnonymousCredentials())
        return [b.name for b in client.list_blobs(bucket, prefix=prefix)]

    def runtime_settings(self, **extra: Any) -> dict[str, Any]:
        return {"project_id": PROJECT, "region": REGION, "staging_uri": f"gs://{STAGING_BUCKET}/sparkpipe", **extra}

    def cluster(self, **extra: Any) -> Any:
        from airflow_provider_sparkpipe.runtimes.dataproc import DataprocCluster

        return DataprocCluster(
            **self.runtime_settings(**{"cluster_name": CLUSTER, "api_endpoint": self.endpoint, **extra})
        )

    def serverless(self, **extra: Any) -> Any:
        from airflow_provider_sparkpipe.runtimes.dataproc import DataprocServerless

        return DataprocServerless(**self.runtime_settings(api_endpoint=self.endpoint, **extra))


@pytest.fixture(scope="session")
def dataproc_fakes() -> Iterator[DataprocFakes]:
    from gcp_storage_emulator.server import create_server
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    gcs = create_server("127.0.0.1", _GCS_PORT, in_memory=True, default_bucket=STAGING_BUCKET)
    gcs.start()
    storage.Client(project="fake", credentials=AnonymousCredentials()).create_bucket(DRIVER_OUTPUT_BUCKET)
    fake = FakeDataproc()
    server, port = fake.serve(_CERTIFICATE, _PRIVATE_KEY)
    try:
        yield DataprocFakes(fake, f"127.0.0.1:{port}")
    finally:
        server.stop(grace=None)
        gcs.stop()


@pytest.fixture
def fakes(dataproc_fakes: DataprocFakes) -> DataprocFakes:
    """The session's fakes with the Dataproc state emptied (GCS keeps the staged bundle)."""
    dataproc_fakes.dataproc.reset()
    return dataproc_fakes
