"""Canonical identities of the places a pipeline reads and writes, and the checks that two never overlap.

Standard library only: the Airflow provider validates configs with it at DAG parse time.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import posixpath
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from spark_job.config.urls import CONTAINER_SCHEMES, strip_credentials

# Hadoop resolves a path without a scheme against the cluster's default filesystem (fs.defaultFS):
# file: on a laptop, usually hdfs: on a cluster. Unknown at validation, so such a path is taken to be
# possibly the same place as a file: or hdfs: path with the same segments (see ``PathLocation.same_fs``).
DEFAULT_FS_SCHEMES = frozenset({"file", "hdfs"})
_SCHEME_ALIASES = {"s3n": "s3a", "s3": "s3a", "gcs": "gs"}
STAGING_SUFFIX = ".sparkpipe-staging"
PREVIOUS_SUFFIX = ".sparkpipe-previous"
LEASE_SUFFIX = ".sparkpipe-lease"
"""What staged writes (``spark_job.io.swap``) and leases (``spark_job.io.leases``) name beside a
target: ``.<name><suffix>``."""
_RESERVED = re.compile(r"\..+(?:" + "|".join(map(re.escape, (STAGING_SUFFIX, PREVIOUS_SUFFIX, LEASE_SUFFIX))) + ")")
_HADOOP_DEFAULT_PORTS = {"hdfs": 8020, "webhdfs": 9870, "swebhdfs": 9871}
"""The port a URI without one reaches (the NameNode's RPC and HTTP ports of Hadoop 3)."""
_GLOB_CHARS = re.compile(r"[*?\[\]{}\\]")
FILE_FORMATS = frozenset({"parquet", "csv", "json", "orc", "avro", "text", "binaryfile", "delta", "iceberg", "hudi"})


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


def canonical_path(path: str, cwd: str | None = None) -> PathLocation:
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
        default = _default_fs.get()
        if default is not None:  # the session's fs.defaultFS names the filesystem of such a path
            scheme, authority = default
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
        segments = _resolve_links(segments)
    return PathLocation(scheme, authority, tuple(segments))


_default_fs: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("default_fs", default=None)


@contextlib.contextmanager
def default_filesystem(uri: str | None) -> Iterator[None]:
    """Paths without a scheme are on ``uri`` (the config's ``spark.hadoop.fs.defaultFS``) while this
    lasts; without one, they may be on the local disk or HDFS (see ``PathLocation.same_fs``)."""
    token = None
    if uri and "${" not in uri:
        location = canonical_path(uri)
        if location.scheme:
            token = _default_fs.set((location.scheme, location.authority))
    try:
        yield
    finally:
        if token is not None:
            _default_fs.reset(token)


def _hadoop_home() -> str:
    """Where Hadoop resolves a relative path on a remote default filesystem: ``/user/<user>``."""
    user = os.environ.get("HADOOP_USER_NAME")
    if not user:
        import getpass

        user = getpass.getuser()
    return f"/user/{user}"


_PATH_MAX = 4096
_links: dict[str, tuple[tuple[str, ...], bool]] | None = None
"""Prefixes already resolved (what they lead to, whether they exist), while ``links_remembered``."""


@contextlib.contextmanager
def links_remembered() -> Iterator[None]:
    """Resolve each directory's links once while validating a config or checking a listing: 20,000
    targets under one folder cost one ``lstat`` each, not one per segment. Not kept afterwards, as a
    link may be pointed elsewhere before the next validation."""
    global _links
    outer = _links
    _links = {} if outer is None else outer
    try:
        yield
    finally:
        _links = outer


def _resolve_links(segments: list[str]) -> list[str]:
    """The segments with the symbolic links of the local disk resolved: ``/data/latest/x`` through a
    link ``latest -> 2024`` is ``/data/2024/x``, where the writer's files land. The part of a path
    that does not exist here is kept as it is (on a cluster it may be on the default filesystem)."""
    if not segments or sum(len(segment) + 1 for segment in segments) > _PATH_MAX:
        return segments  # longer than any path the local disk holds
    resolved: tuple[str, ...] = ()
    prefix = ""
    for i, segment in enumerate(segments):
        prefix += "/" + segment
        known = _links.get(prefix) if _links is not None else None
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
            if _links is not None:
                _links[prefix] = known
        resolved, exists = known
        if not exists:
            return [*resolved, *segments[i + 1 :]]
    return list(resolved)


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


# -- JDBC ----------------------------------------------------------------------------------------

_DEFAULT_PORTS = {
    "postgresql": 5432,
    "mysql": 3306,
    "mariadb": 3306,
    "sqlserver": 1433,
    "oracle": 1521,
    "db2": 50000,
    "redshift": 5439,
}
# How unquoted identifiers compare: folded to lower or upper case; "insensitive": all names, quoted too.
_FOLDING = {
    "postgresql": "lower",
    "redshift": "lower",
    "oracle": "upper",
    "db2": "upper",
    "h2": "upper",
    "sqlserver": "insensitive",
    "mysql": "insensitive",
    "mariadb": "insensitive",
}
_DEFAULT_SCHEMA = {"postgresql": "public", "redshift": "public", "sqlserver": "dbo", "h2": "PUBLIC"}
IDENTIFIER_LIMITS = {
    "postgresql": 63,
    "redshift": 127,
    "mysql": 64,
    "mariadb": 64,
    "oracle": 30,  # 128 since 12.2; 30 fits every version
    "sqlserver": 128,
    "db2": 128,
}
UNKNOWN_IDENTIFIER_LIMIT = 30


def jdbc_subprotocol(url: str) -> str:
    """``postgresql`` for ``jdbc:postgresql://...``; empty when ``url`` is not a JDBC URL."""
    if not url.lower().startswith("jdbc:"):
        return ""
    return url[5:].split(":", 1)[0].lower()


def _host_port(text: str, default: int | None, fold_loopback: bool = False) -> str:
    """``host[:port]`` lower-cased with the default port filled in; IPv6 brackets kept; with
    ``fold_loopback``, every name of the loopback interface is ``localhost``."""
    text = text.rsplit("@", 1)[-1].strip().lower()  # user:password@host
    if text.startswith("["):
        host, _, rest = text.partition("]")
        host += "]"
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = text.partition(":")
    if not port and default is not None:
        port = str(default)
    if fold_loopback and host in _LOOPBACK:
        host = "localhost"
    return f"{host}:{port}" if port else host


_LOOPBACK = frozenset({"127.0.0.1", "[::1]", "::1", "localhost.localdomain"})
"""Names of this machine's loopback interface: one server, however a URL spells it."""


def canonical_jdbc_url(url: str, fold_loopback: bool = False) -> str:
    """The database a JDBC URL reaches: subprotocol, hosts and ports (defaults filled in), database;
    credentials and connection parameters left out. ``fold_loopback`` (identities only: names such as
    lineage namespaces keep the host as written) makes every loopback name ``localhost``."""
    sub = jdbc_subprotocol(url)
    body = url[5 + len(sub) + 1 :] if sub else url
    default = _DEFAULT_PORTS.get(sub)
    if sub == "oracle":
        # jdbc:oracle:thin:[user/pw]@host:port:SID, @//host:port/service, or @(DESCRIPTION=...)
        at = body.split("@", 1)[-1].strip()
        if at.startswith("("):
            descriptor = re.sub(r"\s+", "", at).lower()
            return f"jdbc:oracle:{descriptor}"
        at = at.lstrip("/").split("?", 1)[0]
        if "/" in at:
            hostport, _, database = at.partition("/")
        else:
            pieces = at.split(":")
            if len(pieces) >= 3:
                hostport, database = ":".join(pieces[:2]), pieces[2]
            elif len(pieces) == 2 and not (pieces[1].isascii() and pieces[1].isdigit()):
                hostport, database = pieces[0], pieces[1]
            else:
                hostport, database = at, ""
        return f"jdbc:oracle://{_host_port(hostport, default, fold_loopback)}/{database.lower()}"
    if sub == "sqlserver":
        # jdbc:sqlserver://host[\instance][:port][;property=value...]
        parts = body.lstrip("/").split(";")
        props = {k.strip().lower(): v.strip() for k, _, v in (p.partition("=") for p in parts[1:]) if k.strip()}
        hostport = parts[0] or props.get("servername", "")
        database = props.get("databasename") or props.get("database") or ""
        return f"jdbc:sqlserver://{_host_port(hostport, default, fold_loopback)}/{database.lower()}"
    if body.startswith("//"):
        rest = body[2:]
        for cut in "?;":  # parameters (MySQL/PostgreSQL ?k=v, DB2 :k=v;)
            rest = rest.split(cut, 1)[0]
        hosts, _, database = rest.partition("/")
        if sub == "db2" and ":" in database:
            database = database.split(":", 1)[0]
        hosts = ",".join(_host_port(h, default, fold_loopback) for h in hosts.split(","))
        if sub in ("mysql", "mariadb", "sqlserver"):
            database = database.lower()
        return f"jdbc:{sub}://{hosts}/{database.rstrip('/')}"
    # jdbc:postgresql:database (localhost), jdbc:h2:mem:x, ...: no host part
    rest = body.split("?", 1)[0].split(";", 1)[0]
    if sub in _DEFAULT_PORTS:
        return f"jdbc:{sub}://{_host_port('localhost', default, fold_loopback)}/{rest}"
    return f"jdbc:{sub}:{rest}"


def split_identifier(name: str) -> list[tuple[str, bool]]:
    """``a."B c".[d]`` -> ``[("a", False), ("B c", True), ("d", True)]``: (part, quoted)."""
    parts: list[tuple[str, bool]] = []
    closers = {'"': '"', "`": "`", "[": "]"}
    i, n = 0, len(name)
    while True:
        while i < n and name[i] == " ":
            i += 1
        if i < n and name[i] in closers:
            close, i = closers[name[i]], i + 1
            text: list[str] = []
            while i < n:
                if name[i] == close:
                    if i + 1 < n and name[i + 1] == close:  # a doubled quote inside a quoted name
                        text.append(close)
                        i += 2
                        continue
                    i += 1
                    break
                text.append(name[i])
                i += 1
            parts.append(("".join(text), True))
            while i < n and name[i] != ".":  # whatever follows a closing quote up to the next dot
                i += 1
        else:
            j = name.find(".", i)
            j = n if j < 0 else j
            parts.append((name[i:j].strip(), False))
            i = j
        if i >= n:
            return parts
        i += 1  # the dot


def join_identifier(parts: Iterable[str]) -> str:
    """Parts joined by dots; a part holding a dot or a quote is quoted, so the result is unambiguous."""
    return ".".join('"' + p.replace('"', '""') + '"' if ("." in p or '"' in p) else p for p in parts)


def jdbc_parameters(url: str) -> dict[str, str]:
    """The connection parameters of a JDBC URL: ``?k=v&k=v`` (PostgreSQL, MySQL), ``;k=v`` (SQL
    Server, H2), ``:k=v;`` after the database (DB2)."""
    sub = jdbc_subprotocol(url)
    body = url[5 + len(sub) + 1 :] if sub else url
    if sub == "db2":
        tail = body.split("/", 3)[-1].partition(":")[2] if body.startswith("//") else ""
        pairs = tail.split(";")
    elif "?" in body:
        pairs = body.split("?", 1)[1].split("&")
    else:
        pairs = body.split(";")[1:]
    params: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if eq and key.strip():
            params[key.strip()] = unquote(value.strip())
    return params


def _schema_parameter(sub: str, url: str, options: dict[str, Any]) -> str | None:
    """The schema an unqualified table goes to when the connection names one (``currentSchema``,
    PostgreSQL's ``options=-c search_path=...``, H2's ``SCHEMA``); the URL's or the target's options'."""
    params = {**jdbc_parameters(url), **{str(k): str(v) for k, v in options.items()}}
    lowered = {k.lower(): v for k, v in params.items()}
    if sub in ("postgresql", "redshift"):
        value = params.get("currentSchema")
        if value is None:
            found = re.search(r"search_path\s*=\s*([^\s]+)", lowered.get("options", ""))
            value = found.group(1) if found else None
        if value:
            first = value.split(",")[0].strip()
            return first[1:-1] if first.startswith('"') and first.endswith('"') else first.lower()
    if sub == "db2" and params.get("currentSchema"):
        return params["currentSchema"].strip().upper()
    if sub == "h2" and lowered.get("schema"):
        return lowered["schema"].strip().upper()
    return None


def canonical_jdbc_table(url: str, table: str, user: str | None = None, params: dict[str, Any] | None = None) -> str:
    """``[catalog.][schema.]table`` with the database's case rules and its default schema filled in:
    the schema the connection names (``params``: the target's options), else the database's default."""
    sub = jdbc_subprotocol(url)
    folding = _FOLDING.get(sub, "insensitive")  # unknown databases: the conservative comparison
    parts = []
    for part, quoted in split_identifier(table):
        if folding == "insensitive" or (not quoted and folding == "lower"):
            part = part.lower()
        elif not quoted and folding == "upper":
            part = part.upper()
        parts.append(part)
    if len(parts) == 1:
        schema = _schema_parameter(sub, url, params or {}) or _DEFAULT_SCHEMA.get(sub)
        if schema is None and sub in ("oracle", "db2") and user:
            schema = user.upper()  # the user's own schema
        if schema is None and sub in ("mysql", "mariadb"):
            schema = canonical_jdbc_url(url).rsplit("/", 1)[-1]  # the URL's database
        if schema is not None:
            parts.insert(0, schema.lower() if folding == "insensitive" else schema)
    return join_identifier(parts)


def jdbc_table_identity(url: str, table: str, user: str | None = None, params: dict[str, Any] | None = None) -> str:
    """One string per database table, however the URL and the name spell it: the server, then the
    table as :func:`canonical_jdbc_table` folds it. Where a qualified name reaches another database of
    the same server (MySQL's schema is its database; SQL Server's ``db.schema.table``), the URL's
    database gives way to the name's."""
    sub = jdbc_subprotocol(url)
    where = canonical_jdbc_url(url, fold_loopback=True)
    name = canonical_jdbc_table(url, table, user, params)
    if sub in ("mysql", "mariadb"):
        where = where.rsplit("/", 1)[0]  # the table's schema (filled from the URL's database) says which
    elif sub == "sqlserver" and len(split_identifier(table)) == 3:
        database, _, name = name.partition(".")
        where = f"{where.rsplit('/', 1)[0]}/{database}"
    return f"jdbc:{where}/{name}"


def jdbc_identifier_limit(url: str) -> int:
    return IDENTIFIER_LIMITS.get(jdbc_subprotocol(url), UNKNOWN_IDENTIFIER_LIMIT)


def derived_table_name(table: str, url: str, role: str) -> str:
    """A table name beside ``table`` for ``role`` (``stage``, ``prev``) that fits the database's limit.

    The last part of ``table`` keeps as much of its name as fits, followed by a hash of the target's
    canonical identity: two targets never share a staging table, even when their names only differ
    past the limit, and the name is never truncated back to the target's own by the database.
    """
    parts = table.rsplit(".", 1)
    prefix, name = (parts[0] + ".", parts[1]) if len(parts) == 2 else ("", parts[0])
    digest = hashlib.sha256(f"{canonical_jdbc_url(url)}/{canonical_jdbc_table(url, table)}".encode()).hexdigest()[:8]
    suffix = f"__sp{role}_{digest}"
    keep = max(jdbc_identifier_limit(url) - len(suffix), 1)
    return prefix + name.encode()[:keep].decode(errors="ignore") + suffix


# -- catalog tables ------------------------------------------------------------------------------


def canonical_catalog_table(table: str) -> str:
    """``t``, ``default.t``, ``spark_catalog.default.t`` and ```T``` are one table (Spark's default
    case-insensitive analysis; an unqualified name is taken to be in ``default``)."""
    parts = [p.lower() for p, _ in split_identifier(table)]
    if len(parts) == 1:
        parts.insert(0, "default")
    if len(parts) == 2:
        parts.insert(0, "spark_catalog")
    return join_identifier(parts)


# -- overlap ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """A place some entry of the config reads or writes.

    Attributes:
        where: the config path of the entry (``sequences[2].target``, ``sources.events.path``).
        location: the canonical path.
        writes: whether the entry writes it (a target) or reads it (a source, a direct read in SQL).
        sequence: the config path of the sequence writing it, for targets.
    """

    where: str
    location: PathLocation
    writes: bool
    sequence: str = ""
    table: str = ""
    """The catalog table stored at ``location``, for a table target."""
    file: bool = False
    """Whether this is a file the config itself reads (``where`` then says which: the config file...)."""


def overlaps(places: Iterable[Place]) -> list[tuple[Place, str]]:
    """Each place that overlaps an earlier one, with the message saying which and how.

    A target may not lie inside another target, nor hold (or be) a place a source reads, nor lie
    inside a source's location: an overwrite replaces the whole directory. Linear in the number of
    places (times their depth): each is looked up by its own path and by its prefixes.
    """
    # (filesystem group, writes) -> segments -> the first place at exactly those segments / under them
    exact: dict[tuple[str, bool], dict[tuple[str, ...], Place]] = {}
    under: dict[tuple[str, bool], dict[tuple[str, ...], Place]] = {}
    hdfs_groups: set[str] = set()
    found: list[tuple[Place, str]] = []
    for place in places:
        location = place.location
        group = _fs_group(location)
        if location.scheme == "hdfs":
            hdfs_groups.add(group)
        message = None
        for other_group in _groups_to_compare(location, group, hdfs_groups):
            for writes in (True, False) if place.writes else (True,):
                key = (other_group, writes)
                if key not in exact:
                    continue
                segments, seen = location.segments, exact[key]
                candidates = [seen.get(segments[:k]) for k in range(len(segments) + 1)]
                candidates.append(under[key].get(segments))
                for other in candidates:
                    if other is not None and (message := _overlap_message(place, other)):
                        break
                if message:
                    break
            if message:
                found.append((place, message))
                break
        key = (group, place.writes)
        exact.setdefault(key, {}).setdefault(location.segments, place)
        prefixes = under.setdefault(key, {})
        for k in range(len(location.segments) + 1):
            prefixes.setdefault(location.segments[:k], place)
    return found


def _fs_group(location: PathLocation) -> str:
    return f"{location.scheme}://{location.authority}" if location.scheme else ""


def _groups_to_compare(location: PathLocation, group: str, hdfs_groups: set[str]) -> list[str]:
    """The filesystem groups a location may share a filesystem with (see ``PathLocation.same_fs``)."""
    if not location.scheme:
        return ["", "file://", *sorted(hdfs_groups)]
    if location.scheme == "hdfs":  # hdfs:///a may be on any NameNode, hdfs://nn/a on the default one
        return [group, "", *(sorted(hdfs_groups) if not location.authority else ["hdfs://"])]
    if location.scheme in DEFAULT_FS_SCHEMES:
        return [group, ""]
    return [group]


def _overlap_message(place: Place, other: Place) -> str | None:
    a, b = place.location, other.location
    if other.file and place.writes and b.same_fs(a) and b.segments[: len(a.segments)] == a.segments:
        held = "is" if a.segments == b.segments else "holds"
        file = b.uri().removeprefix("file:")
        return f"writes {a.uri()}, which {held} {other.where} {file}: the write would delete it; write elsewhere"
    if a == b or (a.same_fs(b) and a.segments == b.segments):
        if place.table and other.table and _same_table(place.table, other.table) and place.writes != other.writes:
            return None  # a table read and written: the check of table reads decides (append is allowed)
        if place.writes and other.writes:
            if place.table and other.table and _same_table(place.table, other.table):
                return None  # one table spelt two ways: the target-identity check reports it
            if not (place.table or other.table):
                if a.key() == b.key():
                    return None  # the target-identity check of the config already reports it
            else:
                mine = f"stores the catalog table {place.table} in {a.uri()}" if place.table else f"writes {a.uri()}"
                theirs = (
                    f"where the catalog table {other.table} of {_where(other)} keeps its files"
                    if other.table
                    else f"the target of {_where(other)}"
                )
                return f"{mine}, {theirs}: two targets cannot keep their data in one place"
            return f"writes the same target as {other.sequence or other.where}: two sequences cannot write one target"
        if place.writes:
            return f"writes {a.uri()}, which {_where(other)} reads: a target cannot be a place the pipeline reads"
        return f"reads {a.uri()}, the target of {_where(other)}: a target cannot be a place the pipeline reads"
    if b.contains(a):
        if other.writes and place.writes:
            return f"lies inside the target of {_where(other)} ({b.uri()}): overwriting one replaces the other"
        if other.writes:
            return f"reads {a.uri()}, inside the target of {_where(other)} ({b.uri()})"
        return f"writes {a.uri()}, inside {b.uri()} read by {_where(other)}"
    if a.contains(b):
        if other.writes and place.writes:
            return f"holds the target of {_where(other)} ({b.uri()}): overwriting one replaces the other"
        if other.writes:
            return f"reads {a.uri()}, which holds the target of {_where(other)} ({b.uri()})"
        return f"writes {a.uri()}, which holds {b.uri()} read by {_where(other)}"
    return None


def _same_table(first: str, second: str) -> bool:
    return canonical_catalog_table(first) == canonical_catalog_table(second)


def _where(place: Place) -> str:
    return place.sequence or place.where


def catalog_table_location(table: str, options: Any, warehouse: str | None) -> PathLocation | None:
    """Where a table of the session catalog keeps its files: its ``path`` option (an external table),
    else ``<warehouse>/<table>`` in ``default`` and ``<warehouse>/<database>.db/<table>`` elsewhere
    (``spark.sql.warehouse.dir``, by default ``spark-warehouse`` in the working directory). None for
    other catalogs, whose storage Spark does not lay out."""
    if isinstance(options, dict) and isinstance(options.get("path"), str) and options["path"]:
        return canonical_path(options["path"])
    catalog, database, name = canonical_catalog_table(table).split(".") if table.count(".") < 3 else ("", "", "")
    if catalog != "spark_catalog" or not name:
        return None
    root = canonical_path(warehouse or "spark-warehouse")
    extra = (name,) if database == "default" else (f"{database}.db", name)
    return PathLocation(root.scheme, root.authority, root.segments + extra)


def target_places(sequences: Iterable[Any], warehouse: str | None = None) -> list[Place]:
    """The path targets of sequences (``SequenceSpec``s), their quarantine targets included, and the
    files of their catalog table targets."""
    out: list[Place] = []
    for seq in sequences:
        try:
            writer = seq.writer
            location = writer.target_location()
            table = str(writer.spec["table"]) if location is None and writer.type_name == "table" else ""
            if table:
                location = catalog_table_location(table, writer.spec.get("options"), warehouse)
        except (AssertionError, KeyError, TypeError, ValueError):  # an invalid target, already reported
            continue
        if location is not None:
            out.append(Place(f"{seq.path}.target.{'table' if table else 'path'}", location, True, seq.path, table))
        try:
            writer = seq.quarantine_writer
            location = writer.target_location() if writer is not None else None
        except (AssertionError, KeyError, TypeError, ValueError):
            continue
        if location is not None:
            out.append(Place(f"{seq.path}.quarantine.path", location, True, f"{seq.path}.quarantine"))
    return out


def source_places(sources: Iterable[Any], warehouse: str | None = None) -> list[Place]:
    """The path sources (``SourceSpec``s), globs reduced to their fixed prefix, and the files of the
    catalog tables ``table`` sources read (tables of the session catalog, see ``catalog_table_location``)."""
    out: list[Place] = []
    for source in sources:
        try:
            location = source.reader.source_location()
        except (AssertionError, KeyError, TypeError, ValueError):  # an invalid source, already reported
            continue
        if location is not None:
            out.append(Place(f"{source.path}.path", location, False))
            continue
        table = source.spec.get("table")
        if source.spec.get("type") == "table" and isinstance(table, str) and table.strip():
            location = catalog_table_location(table, source.spec.get("options"), warehouse)
            if location is not None and location.segments:
                out.append(Place(f"{source.path}.table", location, False, table=table))
    return out


def query_places(sequences: Iterable[Any]) -> list[Place]:
    """Direct file reads in SQL (``parquet.`/path```) of sequences (``SequenceSpec``s)."""
    from spark_job.config.sql import analyse_query

    out: list[Place] = []
    for seq in sequences:
        for name in sorted(analyse_query(seq.query).qualified):
            path = direct_read_path(name)
            if path:
                out.append(Place(f"{seq.path}.query", canonical_path(glob_prefix(path) or "/"), False))
    return out


def _check_jdbc_reads(sources: list[Any], sequences: list[Any], report: Any) -> None:
    """A JDBC target overwritten while a JDBC source reads the same table: Spark drops or empties the
    table before the rows are read (without staging), so nothing would be left. Reported as for paths."""
    read: dict[str, str] = {}
    for source in sources:
        spec = source.spec
        if spec.get("type") == "jdbc" and isinstance(spec.get("url"), str) and isinstance(spec.get("table"), str):
            read.setdefault(jdbc_table_identity(spec["url"], spec["table"], spec.get("user")), source.path)
    if not read:
        return
    for seq in sequences:
        writes = [(f"{seq.path}.target", seq.target, seq.writer)]
        if seq.quarantine is not None:
            writes.append((f"{seq.path}.quarantine", seq.quarantine, seq.quarantine_writer))
        for where, target, writer in writes:
            if target.get("type") != "jdbc" or target.get("mode", "overwrite") != "overwrite":
                continue
            try:
                key = writer.target_key()
            except (AssertionError, KeyError, TypeError, ValueError):
                continue
            if key in read:
                report(
                    where,
                    f"overwrites {target.get('table')}, which {read[key]} reads: a target cannot be a table the "
                    "pipeline reads (write another table; append is allowed)",
                )


def _check_table_reads(sources: list[Any], sequences: list[Any], report: Any) -> None:
    """A catalog table overwritten while the pipeline reads it (a ``table`` source, or a qualified name in a
    query): Spark refuses such an overwrite when it reads the table in the same query, and otherwise the
    readers see old, partial or new rows depending on the order sequences run in. Names compare as Spark
    resolves them (``t``, ``default.t``, ``spark_catalog.default.t``, backquotes, any case)."""
    from spark_job.config.sql import analyse_query

    read: dict[str, str] = {}
    for source in sources:
        table = source.spec.get("table")
        if source.spec.get("type") == "table" and isinstance(table, str) and table.strip():
            read.setdefault(canonical_catalog_table(table), source.path)
    for seq in sequences:
        for name in sorted(analyse_query(seq.query).qualified):
            if not direct_read_path(name):
                read.setdefault(canonical_catalog_table(name), f"{seq.path}.query")
    if not read:
        return
    for seq in sequences:
        writes = [(f"{seq.path}.target", seq.target)]
        if seq.quarantine is not None:
            writes.append((f"{seq.path}.quarantine", seq.quarantine))
        for where, target in writes:
            table = target.get("table")
            if target.get("type") != "table" or target.get("mode", "overwrite") != "overwrite":
                continue
            if not isinstance(table, str) or not table.strip():
                continue
            reader = read.get(canonical_catalog_table(table))
            if reader is not None:
                report(
                    f"{where}.table",
                    f"overwrites the catalog table {table}, which {reader} reads: a target cannot be a table the "
                    "pipeline reads (write another table; append is allowed)",
                )


def check_overlaps(
    sources: Iterable[Any],
    sequences: Iterable[Any],
    report: Any,
    warehouse: str | None = None,
    read_files: Iterable[tuple[str, str]] = (),
) -> None:
    """Report (``report(config_path, message)``) every target overlapping another target or a read,
    and every target that is a filesystem's root; ``warehouse`` is the session's
    ``spark.sql.warehouse.dir``, where catalog tables keep their files; ``read_files`` are (what,
    file) of the files the config itself reads (the config file, query files): no target may hold one.
    """
    sequences = list(sequences)
    sources = list(sources)
    _check_jdbc_reads(sources, sequences, report)
    _check_table_reads(sources, sequences, report)
    targets = target_places(sequences, warehouse)
    for place in targets:
        if not place.location.segments:
            where = "bucket" if place.location.scheme not in ("", "file", "hdfs") else "filesystem"
            report(
                place.where,
                f"{place.location.uri()} is the root of a {where}: an overwrite would replace everything in it; "
                "give the target a folder of its own",
            )
        elif _RESERVED.match(place.location.segments[-1]):
            report(
                place.where,
                f"{place.location.uri()} has the name of the folders and files sparkpipe keeps beside a target "
                "(.<name>.sparkpipe-staging, -previous, -lease): another target's write would replace it; rename it",
            )
    # Files the config reads are on this machine's disk, whatever the session's default filesystem.
    files = [
        Place(what, canonical_path("file:" + os.path.abspath(file)), False, file=True) for what, file in read_files
    ]
    targets = [place for place in targets if place.location.segments]  # a root is reported above
    for place, message in overlaps([*files, *targets, *source_places(sources, warehouse), *query_places(sequences)]):
        report(place.where, message)
