"""Delta Lake and Apache Iceberg tables in a config: which formats it uses, and the Spark settings a session
needs for them (SQL extensions, the Delta catalog, Iceberg catalogs over a warehouse path), computed at
validation so that the static ones are set when the session is built. Nothing here imports pyspark.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from spark_job.config.tables import split_identifier

LAKEHOUSE_FORMATS = ("delta", "iceberg")

EXTENSIONS_CONF = "spark.sql.extensions"
SESSION_CATALOG_CONF = "spark.sql.catalog.spark_catalog"

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
ICEBERG_EXTENSION = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
ICEBERG_CATALOG = "org.apache.iceberg.spark.SparkCatalog"

FORMAT_NAMES = {"delta": "Delta Lake", "iceberg": "Apache Iceberg"}
PATH_CATALOG_PREFIX = "sparkpipe_iceberg_"
"""Iceberg path tables are reached through a Hadoop catalog over the path's grandparent folder, named
after this prefix and a digest of that folder (``spark_job.io.lake_tables``)."""


@dataclass(frozen=True)
class TableUse:
    """One Delta or Iceberg table a config reads or writes.

    Attributes:
        format: ``delta`` or ``iceberg``.
        where: the config path of the entry (``sequences[0].target``, ``sources.orders``).
        table: the catalog table's name, or None for a path table.
        warehouse: with Iceberg, the warehouse path of the table's catalog the config names (else None).
    """

    format: str
    where: str
    table: str | None = None
    warehouse: str | None = None

    @property
    def catalog(self) -> str | None:
        """The catalog a three-part table name starts with, lower-cased (None otherwise)."""
        if self.table is None:
            return None
        parts = [p for p, _ in split_identifier(self.table)]
        return parts[0].lower() if len(parts) >= 3 else None


def table_uses(entries: Iterable[tuple[str, Mapping[str, Any]]]) -> list[TableUse]:
    """The Delta and Iceberg tables among ``(config path, source or target spec)`` pairs."""
    out = []
    for where, spec in entries:
        kind = spec.get("type")
        if kind not in LAKEHOUSE_FORMATS:
            continue
        table = spec.get("table")
        warehouse = spec.get("warehouse")
        out.append(
            TableUse(
                str(kind),
                where,
                str(table) if isinstance(table, str) else None,
                str(warehouse) if isinstance(warehouse, str) else None,
            )
        )
    return out


def merged_list(current: str | None, wanted: Iterable[str]) -> str:
    """A comma-separated class list (``spark.sql.extensions``) with ``wanted`` added after what is there."""
    items = [c.strip() for c in (current or "").split(",") if c.strip()]
    items.extend(w for w in wanted if w not in items)
    return ",".join(items)


def session_conf(uses: Iterable[TableUse], conf: Mapping[str, str]) -> dict[str, str]:
    """The settings to add to ``conf`` (the user's ``spark_conf``) for these tables: only what it lacks.

    The extensions are merged into a ``spark.sql.extensions`` the user gave; the session catalog becomes
    Delta's unless the user named another; an Iceberg ``warehouse`` makes its table's catalog a Hadoop
    catalog over that path unless ``spark_conf`` configures that catalog.
    """
    uses = list(uses)
    formats = {u.format for u in uses}
    added: dict[str, str] = {}
    wanted = [e for f, e in (("delta", DELTA_EXTENSION), ("iceberg", ICEBERG_EXTENSION)) if f in formats]
    if wanted:
        merged = merged_list(conf.get(EXTENSIONS_CONF), wanted)
        if merged != conf.get(EXTENSIONS_CONF):
            added[EXTENSIONS_CONF] = merged
    if "delta" in formats and SESSION_CATALOG_CONF not in conf:
        added[SESSION_CATALOG_CONF] = DELTA_CATALOG
    for use in uses:
        if use.format == "iceberg" and use.warehouse and use.catalog:
            key = f"spark.sql.catalog.{use.catalog}"
            if key not in conf:
                added[key] = ICEBERG_CATALOG
                added[f"{key}.type"] = "hadoop"
                added[f"{key}.warehouse"] = use.warehouse
    return added


def check_uses(uses: Iterable[TableUse], conf: Mapping[str, Any], report: Any) -> None:
    """Report ``report(config path, message)`` for catalogs named twice with different warehouses and
    warehouses given for a catalog ``spark_conf`` already configures."""
    seen: dict[str, TableUse] = {}
    for use in uses:
        if use.format != "iceberg" or not use.warehouse:
            continue
        catalog = use.catalog
        if catalog is None:
            report(
                f"{use.where}.table",
                "with warehouse, name the table as <catalog>.<namespace>.<table> (e.g. lake.crm.customers): "
                "sparkpipe makes <catalog> an Iceberg catalog over the warehouse",
            )
            continue
        if catalog == "spark_catalog":
            report(f"{use.where}.warehouse", "spark_catalog is Spark's session catalog: name another catalog")
            continue
        if f"spark.sql.catalog.{catalog}" in conf:
            report(
                f"{use.where}.warehouse",
                f"spark_conf already configures the catalog {catalog!r} (spark.sql.catalog.{catalog}): "
                "remove warehouse, or the catalog's settings from spark_conf",
            )
        other = seen.setdefault(catalog, use)
        if other is not use and other.warehouse != use.warehouse:
            report(
                f"{use.where}.warehouse",
                f"the catalog {catalog!r} is over {other.warehouse!r} at {other.where}.warehouse: "
                "one catalog has one warehouse",
            )


def path_catalog(parent: str) -> str:
    """The name of the Hadoop catalog over ``parent`` (the grandparent folder of Iceberg path tables)."""
    return PATH_CATALOG_PREFIX + hashlib.sha256(parent.encode()).hexdigest()[:10]


def pipeline_entries(sources: Iterable[Any], sequences: Iterable[Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """``(config path, spec)`` of every source and target (``SourceSpec``, ``SequenceSpec``) of a pipeline."""
    out: list[tuple[str, Mapping[str, Any]]] = [(s.path, s.spec) for s in sources]
    for seq in sequences:
        out.append((f"{seq.path}.target", seq.target))
        if seq.quarantine is not None:
            out.append((f"{seq.path}.quarantine", seq.quarantine))
    return out
