"""Canonical paths: one form per filesystem place, however a config spells it.

A :class:`PathResolver` says how paths are read for one config (its default filesystem, whether the
local disk's links are remembered while it lasts); it is passed to whatever compares places. Standard
library only: the Airflow provider validates configs with it at DAG parse time.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from spark_job.config.urls import CONTAINER_SCHEMES, strip_credentials

# Hadoop resolves a path without a scheme against the cluster's default filesystem (fs.defaultFS):
# file: on a laptop, usually hdfs: on a cluster. Unknown at validation unless the config sets it, so
# such a path is taken to be possibly the same place as a file: or hdfs: path with the same segments
# (see ``PathLocation.same_fs``).
DEFAULT_FS_SCHEMES = frozenset({"file", "hdfs"})
DEFAULT_FS_KEYS = ("spark.hadoop.fs.defaultFS", "spark.hadoop.fs.default.name")
"""The ``spark_conf`` keys naming the default filesystem, the first one set wins."""
_SCHEME_ALIASES = {"s3n": "s3a", "s3": "s3a", "gcs": "gs"}
_HADOOP_DEFAULT_PORTS = {"hdfs": 8020, "webhdfs": 9870, "swebhdfs": 9871}
"""The port a URI without one reaches (the NameNode's RPC and HTTP ports of Hadoop 3)."""
_GLOB_CHARS = re.compile(r"[*?\[\]{}\\]")
FILE_FORMATS = frozenset({"parquet", "csv", "json", "orc", "avro", "text", "binaryfile", "delta", "iceberg", "hudi"})
_PATH_MAX = 4096


@dataclass(frozen=True)
class PathLocation:
    """A filesystem location in canonical form.

    Attributes:
        scheme: lower case; ``s3``/``s3n`` are ``s3a``; empty when the path had none (default FS).
        authority: host or bucket, lower case; empty for ``file:`` and for no scheme.
        segments: the path's components after resolving ``.``, ``..`` and repeated or trailing ``/``.
    """

    scheme: str
    authority: str
    segments: tuple[str, ...]

    def uri(self) -> str:
        """The location as shown in messages: credential parameters (``?sig=...``) left out."""
        path = "/" + "/".join(self.segments)
        if not self.scheme:
            return path
        if self.scheme == "file":
            return f"file:{path}"
        return strip_credentials(f"{self.scheme}://{self.authority}{path}")

    def same_fs(self, other: PathLocation) -> bool:
        """Whether both may be on one filesystem; a path without a scheme may be on the default FS,
        and ``hdfs:///a`` (no NameNode named) on the default NameNode, whichever it is."""
        if self.scheme == other.scheme:
            if self.scheme == "hdfs" and not (self.authority and other.authority):
                return True
            return self.authority == other.authority or not self.scheme
        if not self.scheme:
            return other.scheme in DEFAULT_FS_SCHEMES
        if not other.scheme:
            return self.scheme in DEFAULT_FS_SCHEMES
        return False

    def contains(self, other: PathLocation) -> bool:
        """Whether ``other`` is this location or lies under it."""
        return self.same_fs(other) and other.segments[: len(self.segments)] == self.segments

    def key(self) -> str:
        """One string per place: paths without a scheme and ``file:`` paths share a key."""
        scheme = "file" if self.scheme in ("", "file") else self.scheme
        return f"path:{scheme}://{self.authority}/" + "/".join(self.segments)


class PathResolver:
    """Puts paths in canonical form, as Hadoop would resolve them for one config.

    Args:
        default_fs: the config's ``spark.hadoop.fs.defaultFS``, the filesystem of a path without a
            scheme (relative ones are under ``/user/<user>`` there). None, or a value still holding a
            ``${`` reference: unknown, such a path may be on the local disk or on HDFS.
        remember_links: resolve each local directory's symbolic links once: 20,000 targets under one
            folder cost one ``lstat`` each, not one per segment. For one validation or one listing
            only: a link may be pointed elsewhere before the next.
    """

    def __init__(self, default_fs: str | None = None, *, remember_links: bool = False) -> None:
        self._links: dict[str, tuple[tuple[str, ...], bool]] | None = {} if remember_links else None
        """Prefixes already resolved: what they lead to, whether they exist."""
        self.default_fs: tuple[str, str] | None = None
        """(scheme, authority) of the filesystem of a path without a scheme, when known."""
        if default_fs and "${" not in default_fs:
            location = self.canonical(default_fs)
            if location.scheme:
                self.default_fs = (location.scheme, location.authority)

    @classmethod
    def for_conf(cls, spark_conf: object, *, remember_links: bool = False) -> PathResolver:
        """The resolver of a config whose ``spark_conf`` (a mapping, or anything else: unknown) may name
        the default filesystem."""
        named = None
        if isinstance(spark_conf, Mapping):
            named = next((spark_conf[k] for k in DEFAULT_FS_KEYS if k in spark_conf), None)
        return cls(named if isinstance(named, str) else None, remember_links=remember_links)

    def canonical(self, path: str, cwd: str | None = None) -> PathLocation:
        """``path`` in canonical form; a relative path is resolved against ``cwd`` (default: the working
        directory), as Hadoop resolves it for ``file:`` and for a local default filesystem."""
        parts = urlsplit(path)
        scheme = parts.scheme.lower()
        if len(scheme) == 1:  # a Windows drive letter, not a scheme
            scheme = ""
        if scheme:
            # User info is a credential (s3a://KEY:SECRET@bucket), not part of the place: dropped, but for
            # ADLS/WASB, where it names the container (abfss://container@account...).
            userinfo, at, host = parts.netloc.rpartition("@")
            if at and scheme in CONTAINER_SCHEMES:
                host = f"{userinfo.partition(':')[0]}@{host}"
            authority = host.lower()
            rest = parts.path
            if parts.query:
                rest += "?" + parts.query
            if parts.fragment:
                rest += "#" + parts.fragment
        else:
            authority, rest = "", path
            if self.default_fs is not None:  # the config's fs.defaultFS names the filesystem of such a path
                scheme, authority = self.default_fs
                if scheme != "file" and not rest.startswith("/"):
                    rest = posixpath.join(_hadoop_home(), rest)
        scheme = _SCHEME_ALIASES.get(scheme, scheme)
        if scheme == "file":
            # file:/a, file:///a and file://localhost/a are one place; a relative file: path is local too.
            authority = "" if authority in ("", "localhost") else authority
        elif scheme in _HADOOP_DEFAULT_PORTS and authority.endswith(f":{_HADOOP_DEFAULT_PORTS[scheme]}"):
            authority = authority.rsplit(":", 1)[0]  # hdfs://nn:8020/a is hdfs://nn/a
        if not rest.startswith("/"):
            rest = posixpath.join(cwd or os.getcwd(), rest) if scheme in ("", "file") else "/" + rest
        segments: list[str] = []
        for segment in rest.split("/"):
            if segment in ("", "."):
                continue
            if segment == "..":
                if segments:
                    segments.pop()
                continue
            segments.append(segment)
        if scheme in ("", "file") and not authority:
            segments = self._resolve_links(segments)
        return PathLocation(scheme, authority, tuple(segments))

    def _resolve_links(self, segments: list[str]) -> list[str]:
        """The segments with the symbolic links of the local disk resolved: ``/data/latest/x`` through a
        link ``latest -> 2024`` is ``/data/2024/x``, where the writer's files land. The part of a path
        that does not exist here is kept as it is (on a cluster it may be on the default filesystem)."""
        if not segments or sum(len(segment) + 1 for segment in segments) > _PATH_MAX:
            return segments  # longer than any path the local disk holds
        links = self._links
        resolved: tuple[str, ...] = ()
        prefix = ""
        for i, segment in enumerate(segments):
            prefix += "/" + segment
            known = links.get(prefix) if links is not None else None
            if known is None:
                here = "/" + "/".join((*resolved, segment))
                try:
                    mode = os.lstat(here).st_mode
                except (OSError, ValueError):
                    known = ((*resolved, segment), False)
                else:
                    if stat.S_ISLNK(mode):
                        real = os.path.realpath(here)
                        known = (tuple(part for part in real.split("/") if part), os.path.exists(real))
                    else:
                        known = ((*resolved, segment), True)
                if links is not None:
                    links[prefix] = known
            resolved, exists = known
            if not exists:
                return [*resolved, *segments[i + 1 :]]
        return list(resolved)


def canonical_path(path: str, cwd: str | None = None, paths: PathResolver | None = None) -> PathLocation:
    """``path`` in canonical form as ``paths`` reads it (default: no default filesystem known, links
    resolved afresh)."""
    return (paths or PathResolver()).canonical(path, cwd)


def _hadoop_home() -> str:
    """Where Hadoop resolves a relative path on a remote default filesystem: ``/user/<user>``."""
    user = os.environ.get("HADOOP_USER_NAME")
    if not user:
        import getpass

        user = getpass.getuser()
    return f"/user/{user}"


def glob_prefix(path: str) -> str:
    """The part of a Hadoop glob before its first pattern segment (``/a/b*/c`` -> ``/a``)."""
    match = _GLOB_CHARS.search(path)
    if match is None:
        return path
    head = path[: match.start()]
    cut = head.rfind("/")
    if cut < 0:
        return "" if "://" not in path else path
    if head[:cut].endswith(":/") or head[:cut].endswith(":"):  # s3a://bucket* -> keep the scheme root
        return head[: cut + 1]
    return head[: cut + 1] if cut == 0 else head[:cut]


def direct_read_path(qualified: str) -> str | None:
    """The path of a direct file read in SQL (``parquet.`/data/x``` is reported as ``parquet./data/x``)."""
    fmt, dot, rest = qualified.partition(".")
    if not dot or fmt.lower() not in FILE_FORMATS:
        return None
    if rest.startswith("/") or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", rest):
        return rest
    return None
