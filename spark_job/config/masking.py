"""Secrets kept out of what sparkpipe and Spark show: the values to mask, masking a text, and the
``spark_conf`` that makes Spark redact them in its UI, event log and plans.

A secret is a value resolved from ``${env:}``, ``${file:}`` or ``${secret:}``, or a credential the
config holds literally (``password: ...``, the user info of a URL, ``;password=`` parameters).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from spark_job.config.urls import is_credential_key, url_credentials
from spark_job.errors import Problem

KEY_REDACTION = "spark.redaction.regex"
"""Spark hides the value of every configuration key (or value) this pattern matches (UI, event log)."""
SPARK_REDACTION_DEFAULT = "(?i)secret|password|token|access[.]?key"
"""Spark's own default for ``spark.redaction.regex``: kept in what the driver sets, then extended."""
STRING_REDACTION = "spark.sql.redaction.string.regex"
"""Spark replaces the parts of the texts it produces (plans, ``explain()``, the SQL tab and the event log
of a query) that this pattern matches."""
MIN_SECRET_CHARS = 4
"""Shorter values are not masked: they would mask ordinary text (``1``, ``true``, ``dev``)."""


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` (longest first, so none is left half shown) replaced by ``***``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class MaskedRecords(logging.Filter):
    """A filter for the ``sparkpipe`` logger while a run goes: every line it emits has its secrets
    replaced by ``***`` (``mask``), whatever code formatted it.

    Args:
        mask: the run's ``PipelineConfig.mask``.
    """

    def __init__(self, mask: Callable[[str], str]) -> None:
        super().__init__()
        self.mask = mask

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not format: logging reports it itself
            return True
        masked = self.mask(text)
        if masked != text:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:  # a traceback's messages may quote a secret too
            record.exc_text = self.mask(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        return True


def maskable(values: Iterable[str]) -> list[str]:
    """The values worth masking, longest first: long enough, and not a reference kept for the driver."""
    return sorted({v for v in values if len(v) >= MIN_SECRET_CHARS and "${" not in v}, key=len, reverse=True)


def credentials_in(roots: Iterable[tuple[str, Any]], skip: frozenset[str] = frozenset()) -> set[str]:
    """The secret values written in config data: values of credential keys (``password: ...``, numbers
    too) and credentials inside URLs (user info, Oracle ``user/password@``, ``key=value`` parameters).
    ``roots`` are (key, value) pairs to walk; values under a key in ``skip`` are not scanned for URLs."""
    found: set[str] = set()
    stack = list(roots)
    while stack:
        key, value = stack.pop()
        if type(value) is dict or isinstance(value, Mapping):
            stack.extend((str(k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((key, v) for v in value)
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            text = str(value)
            if is_credential_key(key):
                found.add(text)
            if isinstance(value, str) and key not in skip and ("@" in text or "=" in text):
                found.update(url_credentials(text))
    return {f for f in found if len(f) >= MIN_SECRET_CHARS and "${" not in f}


def masked_problems(problems: list[Problem], resolved: Iterable[str], data: Any) -> list[Problem]:
    """``problems`` with every secret value a message quotes replaced by ``***``: the ``resolved`` values
    of secret references, values of credential keys the config ``data`` holds literally
    (``password: ...``), and credentials inside the URLs the config or the message holds."""
    # Queries are not scanned for URLs: a SQL text is long and its "=" are comparisons.
    known = maskable({*resolved, *credentials_in([("", data)], frozenset({"query"}))})
    out = []
    for problem in problems:
        message = problem.message
        found = known
        if "@" in message or "://" in message:  # a URL quoted with its credentials
            extra = maskable(url_credentials(message))
            found = maskable({*known, *extra}) if extra else known
        message = mask_text(message, found)
        out.append(problem if message == problem.message else dataclasses.replace(problem, message=message))
    return out


def literal_secrets(
    resolved: Iterable[str], entries: Iterable[Mapping[str, Any]], spark_conf: Mapping[str, Any]
) -> set[str]:
    """Every value to mask in a validated pipeline: the ``resolved`` values of references, and the
    credentials its sources and targets (``entries``) and its ``spark_conf`` hold: credential keys
    (``password:``), credentials inside URLs, values of sensitive ``spark_conf`` keys."""
    roots: list[tuple[str, Any]] = [("", entry) for entry in entries]
    roots.extend((str(k), v) for k, v in spark_conf.items())
    return set(resolved) | credentials_in(roots)


def redacted_conf(conf: dict[str, str], referenced: Collection[str], secrets: Collection[str]) -> dict[str, str]:
    """``conf`` with Spark told to hide every secret.

    ``spark.sql.redaction.string.regex`` is extended (a pattern the user gave is kept first) with every
    value of ``secrets``, so that a secret the SQL holds is redacted in plans, ``explain()`` and the
    event log. ``spark.redaction.regex`` (Spark's default pattern kept first) is extended with every key
    whose value is a secret: it came from a reference (``referenced`` keys), the key or the value is a
    credential, or the value lists secrets (the string pattern itself); so the Spark UI and the event
    log show such keys with a redacted value.
    """
    conf = dict(conf)
    if secrets:
        patterns = "|".join(_java_literal(s) for s in sorted(secrets, key=len, reverse=True))
        current = conf.get(STRING_REDACTION)
        conf[STRING_REDACTION] = f"{current}|{patterns}" if current else patterns
    keys = [
        key
        for key, value in conf.items()
        if key != KEY_REDACTION
        and (
            key in referenced
            or is_credential_key(key)
            or bool(url_credentials(value))
            or (key == STRING_REDACTION and bool(secrets))
        )
    ]
    if not keys:
        return conf
    current = conf.get(KEY_REDACTION) or SPARK_REDACTION_DEFAULT
    # ``spark.hadoop.X`` is shown as ``X`` among the Hadoop properties too: the unanchored pattern of
    # ``X`` covers both.
    extra = dict.fromkeys(_java_literal(k.removeprefix("spark.hadoop.")) for k in keys)
    return {**conf, KEY_REDACTION: current + "|" + "|".join(extra)}


def _java_literal(text: str) -> str:
    """``text`` as a Java regular expression matching it literally (ASCII punctuation escaped)."""
    return "".join("\\" + c if c.isascii() and not (c.isalnum() or c == "_") else c for c in text)
