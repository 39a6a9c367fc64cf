"""What of a connection or runtime is secret, handed to Airflow's secrets masker: no more, no less.

Airflow's ``Connection.extra_dejson`` registers every extra value and warns for each short one
(``"1g"``, ``"2"``) that it is too short to mask; the extras are read here without it, and only
passwords, ``env`` values, values of sensitive keys and credentials inside URLs are masked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from spark_job.config.urls import is_credential_key, url_credentials

if TYPE_CHECKING:
    from airflow.sdk import Connection

log = logging.getLogger(__name__)

# Keys whose every value is secret (a runtime's environment: secrets read by ${env:NAME}).
_SECRET_MAPPINGS = frozenset({"env"})


def connection_extras(conn: Connection) -> dict[str, Any]:
    """The connection's extras as a dict, their secret values masked; ValueError when not a JSON object."""
    text = conn.extra or ""
    if not text.strip():
        return {}
    try:
        extras = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"connection {conn.conn_id!r}: the extra is not JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(extras, dict):
        raise ValueError(f"connection {conn.conn_id!r}: the extra must be a JSON object, not {type(extras).__name__}")
    mask_values(secret_values(extras))
    return extras


def secret_values(data: Any, key: str = "") -> list[str]:
    """The secret strings in ``data``: values of sensitive keys, of ``env`` mappings, and the
    credentials written inside URL values (``jdbc:...;password=x``). Iterative, any depth."""
    found: list[str] = []
    stack: list[tuple[Any, str, bool]] = [(data, key, False)]
    while stack:
        value, name, secret = stack.pop()
        if isinstance(value, Mapping):
            whole = secret or name in _SECRET_MAPPINGS
            stack.extend((v, str(k), whole or is_credential_key(str(k))) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, name, secret) for v in value)
        elif isinstance(value, str) and value:
            if secret or (name and is_credential_key(name)):
                found.append(value)
            elif "://" in value or value.startswith("jdbc:"):
                found.extend(url_credentials(value))
    return found


def mask_values(values: Iterable[str]) -> None:
    """Register each value with Airflow's secrets masker; one too short to be masked is not registered
    (Airflow would only warn about it) but named here, as it will show in logs."""
    from airflow.sdk import conf
    from airflow.sdk.log import mask_secret

    shortest = conf.getint("logging", "min_length_masked_secret", fallback=5)
    short = 0
    for value in dict.fromkeys(values):
        if len(value) >= shortest:
            mask_secret(value)
        else:
            short += 1
    if short:
        log.warning(
            "%d secret value(s) shorter than %d characters cannot be masked in logs: use longer secrets",
            short,
            shortest,
        )


class _ShortSecretNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Skipping masking for a secret as it's too short")


def get_connection(conn_id: str) -> Connection:
    """``BaseHook.get_connection`` without Airflow's notice about short extras.

    Reading a connection makes Airflow register every extra value with the masker, warning that a
    ``"1g"`` or ``"2"`` is too short to mask; a sparkpipe connection's extras are settings, and
    :func:`connection_extras` masks what of them is secret (naming short secrets itself).
    """
    from airflow.sdk import BaseHook

    masker_log = logging.getLogger("airflow.sdk._shared.secrets_masker.secrets_masker")
    notice = _ShortSecretNotice()
    masker_log.addFilter(notice)
    try:
        return BaseHook.get_connection(conn_id)
    finally:
        masker_log.removeFilter(notice)
