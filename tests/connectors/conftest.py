"""Servers the connector tests reach through Spark's own connector jars, each on 127.0.0.1 and started
once per session: moto's S3 server (hadoop-aws), a Cloud Storage emulator (the GCS connector) and a
MariaDB server (MariaDB Connector/J).

Python 3.9, and only pytest, pyspark and PyYAML at import (the server libraries are imported by the
fixtures): the matrix cells collect this folder's Avro tests. A connector the table
(``spark_job/config/connectors.py``) has no release of for the running Spark is not collected here: the
cells whose Spark has it run it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..support import free_port
from .jars import REPO, available, jars, spark_conf
from .lake_session import LakeSession

collect_ignore = [] if available("avro") else ["test_avro.py"]
if not (available("delta") and available("iceberg")):  # neither is published for Spark 4.3 yet
    collect_ignore += [
        "test_lakehouse.py",
        "test_lakehouse_kill.py",
        "test_incremental_lakehouse.py",
        "test_lakehouse_s3.py",
    ]


@pytest.fixture(scope="session")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakeSession]:
    """A session with the Delta and Iceberg jars, in a child process (``lake_session``), shared by the lakehouse
    modules: its JVM with both formats' jars costs a cell tens of CPU-seconds to start and warm up. Each test
    writes tables of its own (its ``tmp_path``, or a catalog name numbered per session)."""
    session = LakeSession(jars("delta", "iceberg"), str(tmp_path_factory.mktemp("lake")))
    yield session
    session.close()


def wait_for_port(port: int, process: subprocess.Popen[Any], what: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start:\n{log.read_text()[-5000:]}") from None
            time.sleep(0.2)


# -- S3: moto's server, reached by hadoop-aws ------------------------------------------------------

S3_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


@dataclass(frozen=True)
class S3Bucket:
    """A bucket of its own on the session's moto server, with a boto3 client to look at it."""

    endpoint: str
    name: str
    client: Any

    @property
    def root(self) -> str:
        return f"s3a://{self.name}"

    def spark_conf(self) -> dict[str, str]:
        """What a pipeline's spark_conf sets to reach this server through S3A: the jars and the endpoint.
        Credentials come from the driver's environment (:data:`S3_KEYS`), as on a real machine."""
        return {
            **spark_conf("s3"),
            "spark.hadoop.fs.s3a.endpoint": self.endpoint,
            "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        }

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)

    def upload(self, folder: Path, prefix: str) -> None:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.endswith(".crc"):
                self.put(f"{prefix}/{path.relative_to(folder)}", path.read_bytes())

    def list_keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.name, Key=key)["Body"].read())

    def download(self, prefix: str, folder: Path) -> Path:
        """The objects under ``prefix`` as files under ``folder`` (directory markers left out)."""
        for key in self.list_keys(prefix.rstrip("/") + "/"):
            if not key.endswith("/"):
                path = folder / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self.read(key))
        return folder / prefix


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, in this process."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    """A new bucket; the drivers this test starts find the credentials in their environment."""
    import boto3

    for key, value in S3_KEYS.items():
        monkeypatch.setenv(key, value)
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    name = f"lake-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return S3Bucket(s3_endpoint, name, client)


# -- GCS: gcp-storage-emulator, reached by the Cloud Storage connector --------------------------------


@dataclass(frozen=True)
class GcsBucket:
    """A bucket of its own on the session's emulator, with a google-cloud-storage client to look at it."""

    endpoint: str
    name: str
    client: Any

    @property
    def root(self) -> str:
        return f"gs://{self.name}"

    def spark_conf(self) -> dict[str, str]:
        """The jars, the emulator as the connector's root URL, and no credentials (``auth.type`` for the
        connector's 3.x releases, ``auth.null.enable`` for the 2.2 release of the Spark 3.5 line)."""
        return {
            **spark_conf("gcs"),
            "spark.hadoop.fs.gs.storage.root.url": self.endpoint,
            "spark.hadoop.fs.gs.auth.type": "UNAUTHENTICATED",
            "spark.hadoop.fs.gs.auth.null.enable": "true",
            "spark.hadoop.fs.gs.auth.service.account.enable": "false",
            "spark.hadoop.fs.gs.project.id": "sparkpipe-tests",
        }

    def put(self, key: str, body: bytes) -> None:
        self.client.bucket(self.name).blob(key).upload_from_string(body)

    def upload(self, folder: Path, prefix: str) -> None:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.endswith(".crc"):
                self.put(f"{prefix}/{path.relative_to(folder)}", path.read_bytes())

    def list_keys(self, prefix: str = "") -> list[str]:
        return sorted(b.name for b in self.client.list_blobs(self.name, prefix=prefix or None))

    def read(self, key: str) -> bytes:
        return bytes(self.client.bucket(self.name).blob(key).download_as_bytes())

    def download(self, prefix: str, folder: Path) -> Path:
        for key in self.list_keys(prefix.rstrip("/") + "/"):
            if not key.endswith("/"):
                path = folder / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self.read(key))
        return folder / prefix


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The emulator (``tests/connectors/gcs_emulator.py``) in a process of its own on a free loopback port."""
    port = free_port()
    log = tmp_path_factory.mktemp("gcs-emulator") / "emulator.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.connectors.gcs_emulator", str(port)],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_for_port(port, server, "the Cloud Storage emulator", log)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def gcs(gcs_endpoint: str) -> GcsBucket:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="sparkpipe-tests", credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs_endpoint}
    )
    name = f"lake-{uuid.uuid4().hex[:12]}"
    client.create_bucket(name)
    return GcsBucket(gcs_endpoint, name, client)


# -- MariaDB: Debian's server, reached by MariaDB Connector/J ---------------------------------------


@dataclass(frozen=True)
class MariaDB:
    """A MariaDB server of the session: ``user`` owns the databases ``shop`` (the URL's) and ``archive``."""

    port: int
    socket: Path
    user: str = "sparkpipe"
    password: str = "sparkpipe"
    database: str = "shop"

    def jdbc_url(self, host: str = "127.0.0.1", database: str | None = None) -> str:
        return f"jdbc:mariadb://{host}:{self.port}/{database or self.database}"

    def sql(self, statements: str, database: str | None = None) -> list[tuple[str, ...]]:
        """Run SQL as the server's root through the ``mariadb`` client; rows as tuples of text."""
        done = subprocess.run(
            [
                "mariadb",
                "--no-defaults",
                f"--socket={self.socket}",
                "--user=root",
                "--batch",
                "--skip-column-names",
                "--execute",
                statements,
                database or self.database,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"mariadb: {done.stderr.strip()}\n{statements}")
        return [tuple(line.split("\t")) for line in done.stdout.splitlines()]

    def tables(self, database: str | None = None) -> list[str]:
        return sorted(row[0] for row in self.sql("SHOW TABLES", database))


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """A MariaDB server of its own on 127.0.0.1 (a temporary data directory), run as the unprivileged
    ``mysql`` user, with the server's default identifier rules (``lower_case_table_names=0``)."""
    server_bin = shutil.which("mariadbd", path=f"/usr/sbin:{os.environ.get('PATH', '')}")
    install = shutil.which("mariadb-install-db")
    if not server_bin or not install or not shutil.which("mariadb"):
        raise RuntimeError(
            "the MariaDB server is not installed: run scripts/bootstrap.sh (apt-get install mariadb-server)"
        )
    root = Path(tempfile.mkdtemp(prefix="sparkpipe-mariadb-"))
    datadir, sock, log = root / "data", root / "mysqld.sock", root / "server.log"
    as_user = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("mysql")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["--user=mysql"]  # the server drops root itself
    subprocess.run(
        [install, "--no-defaults", f"--datadir={datadir}", *as_user, "--auth-root-authentication-method=normal"],
        check=True,
        capture_output=True,
        cwd=root,
    )
    port = free_port()
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                server_bin,
                "--no-defaults",
                f"--datadir={datadir}",
                f"--socket={sock}",
                f"--port={port}",
                "--bind-address=127.0.0.1",
                f"--pid-file={root / 'mariadbd.pid'}",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
                *as_user,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=root,
        )
    db = MariaDB(port, sock)
    try:
        wait_for_port(port, server, "MariaDB", log)
        db.sql(
            "CREATE DATABASE shop; CREATE DATABASE archive;"
            f"CREATE USER '{db.user}'@'%' IDENTIFIED BY '{db.password}';"
            f"GRANT ALL ON shop.* TO '{db.user}'@'%'; GRANT ALL ON archive.* TO '{db.user}'@'%';",
            database="mysql",
        )
        yield db
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)
