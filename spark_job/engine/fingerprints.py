"""What determines a sequence's output, as a digest (``Fingerprints``): a retry reuses a committed
sequence only while its fingerprint is the one recorded with the commit.

The fingerprint covers the sequence's query, its data-quality rules, its target's identity and write
settings, the sources it reads (type, path or table, options, schema), the fingerprints of the sequences
it reads (so a change upstream reaches every reader), and the Spark SQL settings that change results.
Values from ``vars`` count through the texts they were substituted into. Credentials never count
and are never part of what is hashed: credential keys are left out, URLs are stripped of user info
and credential parameters, and any secret value left in a text (a query, a rule) is masked first. A
rotated password is therefore the same sequence.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from spark_job.config.urls import is_credential_key, strip_credentials

if TYPE_CHECKING:
    from spark_job.config.validation import PipelineConfig, SequenceSpec

UNHASHED_TARGET_KEYS = frozenset(
    {"description", "coalesce", "repartition", "atomic", "lease", "batchsize", "connection", "user", "cache"}
)
"""Target settings that change how or by whom a target is written, not which rows it holds (the
database user is part of the table's identity, ``target_key``, where it names the default schema)."""
UNHASHED_SOURCE_KEYS = frozenset({"description", "connection", "user", "cache"})
RESULT_NEUTRAL_SQL_CONF = (
    "spark.sql.shuffle.partitions",
    "spark.sql.adaptive.",
    "spark.sql.autoBroadcastJoinThreshold",
    "spark.sql.files.",
    "spark.sql.redaction.",
    "spark.sql.execution.arrow.",
    "spark.sql.codegen.",
    "spark.sql.inMemoryColumnarStorage.",
    "spark.sql.ui.",
    "spark.sql.warehouse.dir",
)
"""``spark.sql.*`` settings that change how fast a query runs, not what it returns."""
DESCRIBED_APART = frozenset(
    {"name", "path", "cache", "writer", "quarantine_writer", "depends_on", "reads_sources", "query", "target"}
    | {"expectations", "quarantine", "min_rows", "max_rows"}
)
"""Fields of a sequence hashed in a form of their own, or not hashed (its name, config path, caching);
every other field (``incremental`` ...) is hashed as it is, credentials left out."""


def without_credentials(value: Any, key: str = "") -> Any:
    """``value`` with every credential key left out and credentials stripped from the URLs it holds."""
    if isinstance(value, Mapping):
        return {str(k): without_credentials(v, str(k)) for k, v in value.items() if not is_credential_key(str(k))}
    if isinstance(value, (list, tuple)):
        return [without_credentials(v, key) for v in value]
    if isinstance(value, str) and ("://" in value or value.startswith("jdbc:") or "@" in value):
        return strip_credentials(value)
    return value


def result_sql_conf(spark_conf: Mapping[str, str]) -> dict[str, str]:
    """The config's ``spark.sql.*`` settings that may change a query's result (ANSI, time zone, case...)."""
    return {
        k: v
        for k, v in spark_conf.items()
        if k.startswith("spark.sql.") and not k.startswith(RESULT_NEUTRAL_SQL_CONF) and not is_credential_key(k)
    }


class Fingerprints:
    """The fingerprints of a pipeline's sequences, each computed once.

    Args:
        config: the validated pipeline (its sources, sequences, Spark settings and secrets).
    """

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.sequences = {s.name: s for s in config.sequences}
        self.sources = {s.alias.lower(): s for s in config.sources}
        self.conf = result_sql_conf(config.spark_conf)
        self._done: dict[str, str] = {}

    def of(self, seq: SequenceSpec) -> str:
        """The fingerprint of ``seq`` (hex SHA-256)."""
        if seq.name not in self._done:
            text = self.config.mask(json.dumps(self.described(seq), sort_keys=True, default=str))
            self._done[seq.name] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return self._done[seq.name]

    def described(self, seq: SequenceSpec) -> dict[str, Any]:
        """What the fingerprint of ``seq`` hashes (no credential in it; secrets masked by ``of``)."""
        target = {k: v for k, v in seq.target.items() if k not in UNHASHED_TARGET_KEYS}
        sources = {}
        for alias in seq.reads_sources:
            source = self.sources.get(alias.lower())
            if source is not None:
                spec = {k: v for k, v in source.spec.items() if k not in UNHASHED_SOURCE_KEYS}
                sources[alias.lower()] = without_credentials(spec)
        return {
            "query": seq.query,
            "target": {"identity": seq.writer.target_key(), "settings": without_credentials(target)},
            "rules": [{k: v for k, v in dataclasses.asdict(rule).items() if k != "path"} for rule in seq.expectations],
            "min_rows": seq.min_rows,
            "max_rows": seq.max_rows,
            "quarantine": None if seq.quarantine is None else without_credentials(seq.quarantine),
            "sources": sources,
            "reads": {name: self.of(self.sequences[name]) for name in seq.depends_on if name in self.sequences},
            "sql_conf": self.conf,
            "settings": {
                f.name: without_credentials(plain(getattr(seq, f.name)))
                for f in dataclasses.fields(seq)
                if f.name not in DESCRIBED_APART
            },
        }


def plain(value: Any) -> Any:
    """``value`` as JSON-able data (a dataclass as its fields)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value
