"""The few filesystem operations a staged write needs, on the local disk (standard library) or on any
Hadoop filesystem through the JVM of a classic Spark session."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from typing import TYPE_CHECKING, Any, Protocol

from spark_job.engine.capabilities import capabilities_of

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class Files(Protocol):
    """Operations on URIs of one filesystem; ``rename`` is atomic where the filesystem's is (local
    disks, HDFS; not object stores, where it copies)."""

    def exists(self, uri: str) -> bool: ...
    def delete(self, uri: str) -> None: ...
    def rename(self, src: str, dst: str) -> bool: ...
    def mkdirs(self, uri: str) -> None: ...
    def replace_text(self, uri: str, text: str) -> None: ...
    def read_text(self, uri: str) -> str | None: ...
    def list_names(self, uri: str) -> list[str]: ...


def local_path(uri: str) -> str:
    """The local path of a ``file:`` URI (or of a path without a scheme)."""
    if uri.startswith("file://"):
        rest = uri[7:]
        return rest if rest.startswith("/") else "/" + rest.split("/", 1)[-1]
    if uri.startswith("file:"):
        return uri[5:]
    return uri


class LocalFiles:
    """The local filesystem through the standard library (``file:`` URIs or plain paths)."""

    def exists(self, uri: str) -> bool:
        return os.path.lexists(local_path(uri))

    def delete(self, uri: str) -> None:
        path = local_path(uri)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def rename(self, src: str, dst: str) -> bool:
        # os.rename replaces an existing file: link + unlink refuses one, as Hadoop's rename does.
        source, target = local_path(src), local_path(dst)
        if os.path.lexists(target) or not os.path.lexists(source):
            return False
        if os.path.isdir(source):
            os.rename(source, target)
            return True
        try:
            os.link(source, target)
        except FileExistsError:
            return False
        os.unlink(source)
        return True

    def mkdirs(self, uri: str) -> None:
        os.makedirs(local_path(uri), exist_ok=True)

    def replace_text(self, uri: str, text: str) -> None:
        path = local_path(uri)
        scratch = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(scratch, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(scratch, path)

    def read_text(self, uri: str) -> str | None:
        try:
            with open(local_path(uri), encoding="utf-8") as src:
                return src.read(1 << 16)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def list_names(self, uri: str) -> list[str]:
        try:
            return sorted(os.listdir(local_path(uri)))
        except (FileNotFoundError, NotADirectoryError):
            return []


class HadoopFiles:
    """Any filesystem Hadoop reaches (``hdfs://``, ``gs://``, ``s3a://`` ...), through the session's JVM."""

    def __init__(self, spark: SparkSession, uri: str) -> None:
        session = capabilities_of(spark)
        jvm = session.jvm()
        if jvm is None:
            raise RuntimeError(f"{uri}: a {session.describe()} does not reach Hadoop's filesystems from this process")
        self.jvm = jvm
        self.conf = session.hadoop_configuration()
        self.fs = self.path(uri).getFileSystem(self.conf)

    def path(self, uri: str) -> Any:
        return self.jvm.org.apache.hadoop.fs.Path(uri)

    def qualify(self, uri: str) -> str:
        return str(self.fs.makeQualified(self.path(uri)).toString())

    def exists(self, uri: str) -> bool:
        return bool(self.fs.exists(self.path(uri)))

    def delete(self, uri: str) -> None:
        self.fs.delete(self.path(uri), True)

    def rename(self, src: str, dst: str) -> bool:
        if self.fs.exists(self.path(dst)):
            return False
        return bool(self.fs.rename(self.path(src), self.path(dst)))

    def mkdirs(self, uri: str) -> None:
        self.fs.mkdirs(self.path(uri))

    def replace_text(self, uri: str, text: str) -> None:
        out = self.fs.create(self.path(uri), True)
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()

    def read_text(self, uri: str) -> str | None:
        path = self.path(uri)
        try:
            stream = self.fs.open(path)
        except Exception:
            return None
        try:
            reader = self.jvm.java.io.BufferedReader(self.jvm.java.io.InputStreamReader(stream, "UTF-8"))
            lines: list[str] = []
            while (line := reader.readLine()) is not None and len(lines) < 1000:
                lines.append(str(line))
            return "\n".join(lines)
        finally:
            stream.close()

    def list_names(self, uri: str) -> list[str]:
        path = self.path(uri)
        if not self.fs.exists(path):
            return []
        return sorted(str(status.getPath().getName()) for status in self.fs.listStatus(path))
