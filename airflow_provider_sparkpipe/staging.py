"""Where a run's files go, for every runtime: one layout, one implementation, a store per storage.

Under a runtime's staging root (``s3://bucket/prefix``, ``gs://bucket/prefix``, a local work dir, any
``ObjectStoragePath`` URI)::

    bundles/<digest>/sparkpipe_main.py        the driver's entry file   } once per driver version,
    bundles/<digest>/sparkpipe-<digest>.zip   its --py-files bundle     } content-hashed
    runs/<run path>/config.json               the run's config (private)
    runs/<run path>/config.zip                the same, as an archive a cluster unpacks (EMR)
    runs/<run path>/metrics.json              written by the driver (--metrics-out)
    runs/<task path>/commits/                 the task instance's commit log (--state-dir), kept
                                              across its tries: a retry reuses what a try committed

``<run path>`` is the runtime's name of one run (a job id, ``<task key>/<n>``, an attempt's run key);
``<task path>`` its name of the task instance all those runs belong to (the task key, the job id stem,
the application name). Nothing here deletes a commit log: the local runtime removes a task's folder
once the task succeeded (a cleared task gets a new run key), the others leave it to the bucket's
lifecycle rules.
A :class:`Store` is the only part that differs between storages: S3 through the Amazon provider's
``S3Hook``, GCS through the Google provider's ``GCSHook``, the local file system, and Airflow's
``ObjectStoragePath`` for any other URI.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.google.cloud.hooks.gcs import GCSHook

CONFIG_NAME = "config.json"
CONFIG_ARCHIVE_NAME = "config.zip"
METRICS_NAME = "metrics.json"
STATE_NAME = "commits"

log = logging.getLogger(__name__)


class Store(Protocol):
    """The five operations staging needs of a storage, on absolute URIs (or paths, for local files)."""

    def exists(self, uri: str) -> bool: ...

    def upload(self, uri: str, path: Path) -> None:
        """Copy a local file to ``uri`` (whole or not at all)."""

    def write(self, uri: str, data: bytes) -> None:
        """Write ``data`` to ``uri``, readable only by the run's identity where the storage allows."""

    def read(self, uri: str) -> bytes | None:
        """The object's bytes, None when it does not exist."""

    def delete(self, uris: Iterable[str]) -> None:
        """Delete the objects; missing ones are fine."""


@dataclass(frozen=True)
class StagedBundle:
    """The driver bundle in the store."""

    main_uri: str
    py_files_uri: str
    digest: str


@dataclass(frozen=True)
class StagedRun:
    """Where one run's files are in the store, and the bundle it runs."""

    bundle: StagedBundle
    run_uri: str
    config_uri: str
    config_archive_uri: str | None
    metrics_uri: str


class Staging:
    """Stages the bundle and a run's config under ``root`` of ``store``, and reads its metrics back."""

    def __init__(self, store: Store, root: str, logger: Any = None) -> None:
        self.store = store
        self.root = root.rstrip("/")
        self.log = logger or log

    def uri(self, *parts: str) -> str:
        return "/".join((self.root, *(p.strip("/") for p in parts if p)))

    def run_uri(self, run_path: str, name: str = "") -> str:
        return self.uri("runs", run_path, name)

    def metrics_uri(self, run_path: str) -> str:
        return self.run_uri(run_path, METRICS_NAME)

    def state_uri(self, task_path: str) -> str:
        """The driver's ``--state-dir`` for every try of one task instance: ``runs/<task path>/commits``
        (a run path of its own is per try, and a try's files are replaced when it is submitted again)."""
        return self.run_uri(task_path, STATE_NAME)

    def stage_bundle(self) -> StagedBundle:
        """Upload the driver bundle unless this version is staged already (each file is checked)."""
        from spark_job.bundle import build_bundle

        bundle = build_bundle(Path(tempfile.gettempdir()) / "sparkpipe" / "bundle-build")
        uris = []
        for path in (bundle.main_file, bundle.py_files):
            uri = self.uri("bundles", bundle.digest, path.name)
            if self.store.exists(uri):
                self.log.info("Driver bundle %s already staged", uri)
            else:
                self.store.upload(uri, path)
                self.log.info("Staged %s", uri)
            uris.append(uri)
        return StagedBundle(main_uri=uris[0], py_files_uri=uris[1], digest=bundle.digest)

    def stage(self, run_path: str, document: Mapping[str, Any], *, archive: bool = False) -> StagedRun:
        """Stage the bundle (once per version) and write the run's ``config.json`` (and ``config.zip``
        with ``archive``).

        A ``metrics.json`` already there (the same run path used again: a deleted job's id, a
        resubmitted attempt) is deleted first: a run never reads metrics another one left.
        """
        bundle = self.stage_bundle()
        metrics_uri = self.metrics_uri(run_path)
        self.store.delete([metrics_uri])
        config = (json.dumps(document, indent=2) + "\n").encode()
        config_uri = self.run_uri(run_path, CONFIG_NAME)
        self.store.write(config_uri, config)
        archive_uri = None
        if archive:
            archive_uri = self.run_uri(run_path, CONFIG_ARCHIVE_NAME)
            self.store.write(archive_uri, config_archive(config))
        return StagedRun(bundle, self.run_uri(run_path), config_uri, archive_uri, metrics_uri)

    def discard_config(self, run_uri: str) -> None:
        """Delete a finished run's config files (``run_uri``: :attr:`StagedRun.run_uri`); ``metrics.json``
        stays: a re-attaching retry reads it."""
        self.store.delete([f"{run_uri}/{CONFIG_NAME}", f"{run_uri}/{CONFIG_ARCHIVE_NAME}"])

    def read_metrics(self, uri: str) -> dict[str, Any] | None:
        """The metrics document at ``uri``; None when there is none or it cannot be read (logged)."""
        return read_metrics(self.store, uri, self.log)


def read_metrics(store: Store, uri: str, logger: Any = None) -> dict[str, Any] | None:
    """The metrics document the driver wrote at ``uri``, None when it wrote none or it is unreadable."""
    try:
        data = store.read(uri)
        if data is None:
            return None
        document = json.loads(data)
    except (OSError, ValueError) as exc:
        (logger or log).warning("Cannot read %s: %s", uri, exc)
        return None
    if not isinstance(document, dict):
        (logger or log).warning("Cannot read %s: not a metrics document", uri)
        return None
    return document


def config_archive(config: bytes) -> bytes:
    """``config.zip`` holding ``config.json``, byte-identical for identical configs."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(CONFIG_NAME, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        archive.writestr(info, config, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


# Stores. ------------------------------------------------------------------------------------------


class LocalStore:
    """The local file system (a runtime's work dir); ``write`` makes files only their owner reads."""

    @staticmethod
    def _path(uri: str) -> Path:
        return Path(uri[len("file://") :] if uri.startswith("file://") else uri)

    def exists(self, uri: str) -> bool:
        return self._path(uri).is_file()

    def upload(self, uri: str, path: Path) -> None:
        self._replace(self._path(uri), path.read_bytes(), 0o644)

    def write(self, uri: str, data: bytes) -> None:
        # vars may carry values the DAG author considers private: only this user reads the config.
        self._replace(self._path(uri), data, 0o600)

    def read(self, uri: str) -> bytes | None:
        try:
            return self._path(uri).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, uris: Iterable[str]) -> None:
        for uri in uris:
            with contextlib.suppress(FileNotFoundError):
                self._path(uri).unlink()

    @staticmethod
    def _replace(target: Path, data: bytes, mode: int) -> None:
        """Write a whole file into place: concurrent writers (tasks sharing a work dir) never mix."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class S3Store:
    """S3 through the Amazon provider's ``S3Hook`` (its connection's credentials, region, endpoint)."""

    def __init__(self, hook: S3Hook) -> None:
        self.hook = hook

    def _split(self, uri: str) -> tuple[str, str]:
        bucket, key = self.hook.parse_s3_url(uri)
        return str(bucket), str(key)

    def exists(self, uri: str) -> bool:
        bucket, key = self._split(uri)
        return bool(self.hook.check_for_key(key, bucket))

    def upload(self, uri: str, path: Path) -> None:
        bucket, key = self._split(uri)
        self.hook.load_file(str(path), key, bucket, replace=True)

    def write(self, uri: str, data: bytes) -> None:
        bucket, key = self._split(uri)
        self.hook.load_bytes(data, key, bucket, replace=True)

    def read(self, uri: str) -> bytes | None:
        bucket, key = self._split(uri)
        if not self.hook.check_for_key(key, bucket):
            return None
        return bytes(self.hook.get_key(key, bucket).get()["Body"].read())

    def delete(self, uris: Iterable[str]) -> None:
        by_bucket: dict[str, list[str]] = {}
        for uri in uris:
            bucket, key = self._split(uri)
            by_bucket.setdefault(bucket, []).append(key)
        for bucket, keys in by_bucket.items():
            self.hook.delete_objects(bucket, keys)


class GCSStore:
    """Cloud Storage through the Google provider's ``GCSHook``."""

    def __init__(self, hook: GCSHook) -> None:
        self.hook = hook

    @staticmethod
    def _split(uri: str) -> tuple[str, str]:
        if not uri.startswith("gs://"):
            raise ValueError(f"not a gs:// URI: {uri!r}")
        bucket, _, name = uri[len("gs://") :].partition("/")
        return bucket, name

    def exists(self, uri: str) -> bool:
        return bool(self.hook.exists(*self._split(uri)))

    def upload(self, uri: str, path: Path) -> None:
        bucket, name = self._split(uri)
        self.hook.upload(bucket, name, filename=str(path))

    def write(self, uri: str, data: bytes) -> None:
        bucket, name = self._split(uri)
        self.hook.upload(bucket, name, data=data, mime_type="application/json" if name.endswith(".json") else None)

    def read(self, uri: str) -> bytes | None:
        bucket, name = self._split(uri)
        if not self.hook.exists(bucket, name):
            return None
        return bytes(self.hook.download(bucket, name))

    def delete(self, uris: Iterable[str]) -> None:
        for uri in uris:
            bucket, name = self._split(uri)
            if self.hook.exists(bucket, name):
                self.hook.delete(bucket, name)


class ObjectStorageStore:
    """Any URI Airflow's ``ObjectStoragePath`` reads (``s3://``, ``gs://``, ``file://``, ...), with a connection."""

    def __init__(self, conn_id: str | None = None) -> None:
        self.conn_id = conn_id

    def _path(self, uri: str) -> Any:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(uri, conn_id=self.conn_id)

    def exists(self, uri: str) -> bool:
        return bool(self._path(uri).exists())

    def upload(self, uri: str, path: Path) -> None:
        self._path(uri).write_bytes(path.read_bytes())

    def write(self, uri: str, data: bytes) -> None:
        self._path(uri).write_bytes(data)

    def read(self, uri: str) -> bytes | None:
        path = self._path(uri)
        if not path.exists():
            return None
        return bytes(path.read_bytes())

    def delete(self, uris: Iterable[str]) -> None:
        for uri in uris:
            path = self._path(uri)
            if path.exists():
                path.unlink()
