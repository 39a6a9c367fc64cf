"""How JDBC URLs name a server, a database and a schema: the subprotocol, the body after it, hosts and
ports, and each database's URL form (:data:`URL_FORMS`, chosen by a :class:`~spark_job.dialects.Dialect`'s
``url_form``). Standard library only."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spark_job.dialects import Dialect

_LOOPBACK = frozenset({"127.0.0.1", "[::1]", "::1", "localhost.localdomain"})
"""Names of this machine's loopback interface: one server, however a URL spells it."""


def subprotocol(url: str) -> str:
    """``postgresql`` for ``jdbc:postgresql://...``; empty when ``url`` is not a JDBC URL."""
    if not url.lower().startswith("jdbc:"):
        return ""
    return url[5:].split(":", 1)[0].lower()


def url_body(url: str) -> str:
    """What follows ``jdbc:<subprotocol>:`` (the whole text when ``url`` is not a JDBC URL)."""
    sub = subprotocol(url)
    return url[5 + len(sub) + 1 :] if sub else url


def host_port(text: str, default: int | None, fold_loopback: bool = False) -> str:
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


# -- how URLs name the server and the database ----------------------------------------------------
# Each reads the body of a URL (after ``jdbc:<sub>:``) into the canonical ``//hosts/database`` form, or
# returns None when the body names no host (``jdbc:postgresql:shop``, ``jdbc:h2:mem:x``).


def slash_url(dialect: Dialect, body: str, fold: bool) -> str | None:
    """``//host[:port][,host...]/database[?k=v][;k=v]`` (PostgreSQL, MySQL, MariaDB, DB2, H2 over TCP ...)."""
    if not body.startswith("//"):
        return None
    rest = body[2:]
    for cut in "?;":  # parameters (MySQL/PostgreSQL ?k=v, DB2 :k=v;)
        rest = rest.split(cut, 1)[0]
    hosts, _, database = rest.partition("/")
    if dialect.parameters_after_database and ":" in database:
        database = database.split(":", 1)[0]
    hosts = ",".join(host_port(h, dialect.default_port, fold) for h in hosts.split(","))
    if dialect.database_case_insensitive:
        database = database.lower()
    return f"//{hosts}/{database.rstrip('/')}"


def oracle_url(dialect: Dialect, body: str, fold: bool) -> str | None:
    """``thin:[user/pw]@host:port:SID``, ``@//host:port/service`` or ``@(DESCRIPTION=...)``."""
    at = body.split("@", 1)[-1].strip()
    if at.startswith("("):
        return re.sub(r"\s+", "", at).lower()  # a descriptor: compared as written, spaces and case aside
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
    return f"//{host_port(hostport, dialect.default_port, fold)}/{database.lower()}"


def sqlserver_url(dialect: Dialect, body: str, fold: bool) -> str | None:
    """``//host[\\instance][:port][;property=value...]`` with ``databaseName`` among the properties."""
    parts = body.lstrip("/").split(";")
    props = {k.strip().lower(): v.strip() for k, _, v in (p.partition("=") for p in parts[1:]) if k.strip()}
    hostport = parts[0] or props.get("servername", "")
    database = props.get("databasename") or props.get("database") or ""
    return f"//{host_port(hostport, dialect.default_port, fold)}/{database.lower()}"


URL_FORMS: dict[str, Callable[[Dialect, str, bool], str | None]] = {
    "slash": slash_url,
    "oracle": oracle_url,
    "sqlserver": sqlserver_url,
}
"""How a dialect's ``url_form`` reads the body of a URL."""


# -- which schema the connection names -------------------------------------------------------------


def search_path_schema(params: Mapping[str, str]) -> str | None:
    """PostgreSQL: ``currentSchema``, else the first schema of ``options=-c search_path=...``."""
    value = params.get("currentSchema")
    if value is None:
        lowered = {k.lower(): v for k, v in params.items()}
        found = re.search(r"search_path\s*=\s*([^\s]+)", lowered.get("options", ""))
        value = found.group(1) if found else None
    if not value:
        return None
    first = value.split(",")[0].strip()
    return first[1:-1] if first.startswith('"') and first.endswith('"') else first.lower()


def current_schema(params: Mapping[str, str]) -> str | None:
    """DB2: ``currentSchema``, upper-cased as DB2 folds it."""
    value = params.get("currentSchema")
    return value.strip().upper() if value else None


def schema_setting(params: Mapping[str, str]) -> str | None:
    """H2: ``SCHEMA`` (any case), upper-cased as H2 folds it."""
    value = {k.lower(): v for k, v in params.items()}.get("schema")
    return value.strip().upper() if value else None
