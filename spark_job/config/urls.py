"""Credentials written inside connection URLs: find them (to mask them) and strip them (to show a URL).

Standard library only: the driver, the Airflow provider and the Asset code share these two functions.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import unquote

__all__ = ["is_credential_key", "port_problem", "strip_credentials", "url_credentials"]

# Parameter names whose value is a secret, compared case-insensitively after removing "_", "-" and ".":
# JDBC drivers (password, PWD, trustStorePassword, sslpassword, oauthToken ...), cloud signed URLs
# (X-Amz-Signature, sig, AccessKey, SharedAccessSignature) and the generic token/secret/key spellings.
_SECRET_WORDS = ("password", "passwd", "passphrase", "secret", "token", "signature", "credential", "apikey")
_SECRET_KEYS = frozenset(
    {"pwd", "pass", "pw", "sig", "accesskey", "accesskeyid", "secretkey", "privatekey", "key", "auth", "authorization"}
)
# ``OAuthPvtKey`` (BigQuery), ``AccountKey``, ``SharedKey``, ``sasKey``, ``MasterKey``: keys that are values.
_SECRET_KEY_ENDINGS = (
    "accesskey",
    "secretkey",
    "accountkey",
    "pvtkey",
    "privkey",
    "privatekey",
    "saskey",
    "sharedkey",
    "masterkey",
    "encryptionkey",
    "signingkey",
    "clientkey",
)
# Parameters naming the user: not secret, but user info is stripped from what is shown all the same.
_USER_KEYS = frozenset({"user", "username", "uid", "userid", "usr", "login"})

# ``scheme://`` (``jdbc:mysql://``, ``s3a://``, ``https://``) then the authority up to / ? # ; or the end.
_AUTHORITY = re.compile(r"(?P<prefix>[A-Za-z][A-Za-z0-9+.\-]*(?::[A-Za-z][A-Za-z0-9+.\-]*)*://)(?P<authority>[^/?#;]*)")
# Oracle thin: ``jdbc:oracle:thin:user/password@host...`` (also ``@//host/svc`` and ``@(DESCRIPTION=...)``).
_ORACLE = re.compile(
    r'(?P<prefix>jdbc:oracle:[A-Za-z0-9]+:)(?P<userinfo>(?:"[^"]*"|[^@/"]*)(?:/(?:"[^"]*"|[^@"]*))?)@', re.IGNORECASE
)
# An unresolved ``${env:NAME}`` reference is not a secret value: its text names where the value is.
_REFERENCE = re.compile(r"\$\{[^}]*\}")
# Storage and HTTP URLs put a key or token alone in the user part (``s3a://KEY@bucket``, ``https://TOKEN@host``).
# Any other ``key=value`` (MySQL ``(host=h,password=p)``, drivers not known here): the catch-all pass.
_ANY_PAIR = re.compile(
    r"(?<![A-Za-z0-9_.\-])(?P<key>[A-Za-z][A-Za-z0-9_.\-]*)\s*=\s*(?P<value>\{(?:[^}]|\}\})*\}|[^;&(),\s]+)"
)
_LONE_USER_IS_SECRET = ("s3", "gs", "http", "git", "ftp")
CONTAINER_SCHEMES = frozenset({"wasb", "wasbs", "abfs", "abfss"})
"""``abfss://container@account.dfs.core.windows.net/path``: the user info names a container, part of the place."""
_CONTAINER_IN_USERINFO = re.compile(rf"(?:{'|'.join(sorted(CONTAINER_SCHEMES))})://", re.IGNORECASE)


def _normalised(key: str) -> str:
    return re.sub(r"[\s_.\-]", "", unquote(key)).lower()


@functools.lru_cache(maxsize=4096)
def is_credential_key(key: str) -> bool:
    """True when a parameter or configuration key names a secret value (``password``, ``PWD``, ``sas.token``)."""
    norm = _normalised(key)
    if norm in _SECRET_KEYS:
        return True
    if any(word in norm for word in _SECRET_WORDS) or norm.endswith(_SECRET_KEY_ENDINGS):
        return True
    # Hadoop/Spark configuration keys: ``fs.azure.account.key.<account>``, ``fs.s3a.session.key``,
    # ``google.cloud.auth.service.account.json.keyfile.content``.
    segments = [_normalised(part) for part in re.split(r"[.:/]", key)]
    return len(segments) > 1 and any(part in _SECRET_KEYS or part == "keyfile" for part in segments)


def _is_user_key(key: str) -> bool:
    return _normalised(key) in _USER_KEYS


def _split_params(text: str, separator: str) -> list[tuple[str, str | None, str]]:
    """``key=value`` items split on ``separator``; a ``{...}`` value (SQL Server quoting) may hold it.

    Each item is (key, value or None, raw text of the item).
    """
    items: list[tuple[str, str | None, str]] = []
    i, n = 0, len(text)
    while i < n:
        start = i
        eq = -1
        while i < n and text[i] != separator:
            if text[i] == "=" and eq < 0:
                eq = i
                if i + 1 < n and text[i + 1] == "{":
                    close = text.find("}", i + 2)
                    # ``}}`` is an escaped brace inside a braced value.
                    while close >= 0 and text.startswith("}}", close):
                        close = text.find("}", close + 2)
                    i = close if close >= 0 else n - 1
            i += 1
        raw = text[start:i]
        if eq >= 0:
            items.append((text[start:eq], text[eq + 1 : i], raw))
        else:
            items.append((raw, None, raw))
        i += 1
    return items


def _unbrace(value: str) -> str:
    if len(value) >= 2 and value.startswith("{") and value.endswith("}"):
        return value[1:-1].replace("}}", "}")
    return value


def _split_url(url: str) -> tuple[str, str, str]:
    """(everything before the query, the query without ``?``, the fragment with ``#``).

    ``?`` and ``#`` inside a ``{...}`` value (SQL Server quoting) or a ``${...}`` reference do not count.
    """
    depth = 0
    query_at = fragment_at = -1
    for i, char in enumerate(url):
        if char == "{":
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        elif depth == 0 and char == "?" and query_at < 0 and fragment_at < 0:
            query_at = i
        elif depth == 0 and char == "#" and fragment_at < 0:
            fragment_at = i
            break
    end = fragment_at if fragment_at >= 0 else len(url)
    fragment = url[end:]
    if query_at >= 0:
        return url[:query_at], url[query_at + 1 : end], fragment
    return url[:end], "", fragment


def _userinfo(head: str) -> tuple[int, int] | None:
    """The span of the user info of ``scheme://user:password@host...``, or None.

    Users write passwords unencoded, so a ``/`` in the password does not end the authority when the
    text before the last ``@`` reads as ``user:password`` with no ``/`` in the user.
    """
    match = _AUTHORITY.search(head)
    if not match:
        return None
    start = match.end("prefix")
    authority = match.group("authority")
    last_at = head.rfind("@", start)
    if last_at >= 0:
        candidate = head[start:last_at]
        user, colon, _password = candidate.partition(":")
        if colon and "/" not in user and "?" not in candidate:
            return start, last_at
    at = authority.rfind("@")
    if at >= 0:
        return start, start + at
    return None


def _add(found: list[str], value: str) -> None:
    for candidate in (value, unquote(value)):
        if candidate.startswith('"') and candidate.endswith('"') and len(candidate) > 1:
            candidate = candidate[1:-1]
        if candidate and not _REFERENCE.fullmatch(candidate) and candidate not in found:
            found.append(candidate)


def url_credentials(url: str) -> list[str]:
    """The secret values written inside a URL (passwords, tokens, keys), raw and percent-decoded."""
    found: list[str] = []
    if not isinstance(url, str) or not url:
        return found
    head, query, _ = _split_url(url)
    span = _userinfo(head)
    if span:
        userinfo = head[span[0] : span[1]]
        _user, colon, password = userinfo.partition(":")
        if colon:
            _add(found, password)
        elif head.lower().startswith(_LONE_USER_IS_SECRET):
            _add(found, userinfo)
    oracle = _ORACLE.search(head)
    if oracle:
        _user, slash, password = oracle.group("userinfo").partition("/")
        if slash:
            _add(found, password)
    # ``;key=value`` parameters (SQL Server, DB2, Informix, Snowflake-style): after the first ``;``.
    semi = head.find(";")
    if semi >= 0:
        for key, value, _raw in _split_params(head[semi + 1 :], ";"):
            if value is not None and is_credential_key(key):
                _add(found, _unbrace(value))
    # DB2 writes properties after the database name as ``:user=x;password=y;``.
    for key, value, _raw in _db2_params(head):
        if value is not None and is_credential_key(key):
            _add(found, value)
    for key, value, _raw in _split_params(query, "&"):
        if value is not None and is_credential_key(key):
            _add(found, _unbrace(value))
    for pair in _ANY_PAIR.finditer(url):
        if is_credential_key(pair.group("key")):
            _add(found, _unbrace(pair.group("value")))
    return found


_DB2_PROPS = re.compile(r"(?<=[A-Za-z0-9_])[:](?P<props>[A-Za-z][A-Za-z0-9_.\-]*=[^?#]*;)\s*$")


def _db2_params(head: str) -> list[tuple[str, str | None, str]]:
    match = _DB2_PROPS.search(head)
    if not match or ";" in head[: match.start()]:
        return []
    return _split_params(match.group("props"), ";")


def _keep_params(text: str, separator: str) -> str:
    kept = [
        raw
        for key, value, raw in _split_params(text, separator)
        if raw and not (value is not None and (is_credential_key(key) or _is_user_key(key)))
    ]
    return separator.join(kept)


def _drop_userinfo(head: str, keep_container: bool = False) -> str:
    """``head`` without the user info of its authority; with ``keep_container``, an ADLS/WASB
    container (``abfss://container@account...``) stays: it names a place, not a user."""
    span = _userinfo(head)
    if not span:
        return head
    if keep_container and _CONTAINER_IN_USERINFO.match(head) and ":" not in head[span[0] : span[1]]:
        return head
    return head[: span[0]] + head[span[1] + 1 :]


def strip_credentials(url: str) -> str:
    """The URL without user info and without credential parameters: what may be shown, stored or made an Asset."""
    if not isinstance(url, str) or not url:
        return url
    head, query, fragment = _split_url(url)
    head = _drop_userinfo(head, keep_container=True)
    oracle = _ORACLE.search(head)
    if oracle:
        head = head[: oracle.start("userinfo")] + head[oracle.end("userinfo") :]
    db2 = _DB2_PROPS.search(head)
    if db2 and ";" not in head[: db2.start()]:
        props = _keep_params(db2.group("props"), ";")
        head = head[: db2.start()] + (":" + props + ";" if props else "")
    else:
        semi = head.find(";")
        if semi >= 0:
            params = _keep_params(head[semi + 1 :], ";")
            head = head[:semi] + (";" + params if params else "")
    if query:
        query = _keep_params(query, "&")
    out = head + ("?" + query if query else "") + fragment
    return _ANY_PAIR.sub(_mask_pair, out)


def _mask_pair(pair: re.Match[str]) -> str:
    if is_credential_key(pair.group("key")):
        return pair.group("key") + "=***"
    return pair.group(0)


# ``host:port`` after ``//`` or ``@`` (Oracle), up to the path, parameters or the end.
_HOST_PORT = re.compile(r"(?://|@)(?P<host>\[[^\]]*\]|[^/:;?#@,()\[\]]*):(?P<port>[^/;?#,():]*)(?=[/;?#,():]|$)")


def port_problem(url: str) -> str | None:
    """Why the port of a connection URL cannot be right (not a number from 1 to 65535), or None."""
    if not isinstance(url, str) or "${" in url:
        return None
    head, _, _ = _split_url(url)
    head = _drop_userinfo(head)
    oracle = _ORACLE.search(head)
    if oracle:
        head = head[: oracle.start("userinfo")] + head[oracle.end("userinfo") :]
    for match in _HOST_PORT.finditer(head):
        port = match.group("port")
        if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:  # "²".isdigit() is True
            return f"port {port!r} of host {match.group('host')!r} is not a number from 1 to 65535"
    return None
