"""One Delta Lake or Apache Iceberg table as Spark SQL reaches it (``LakeTable``): its SQL name, whether it
exists, its current version, its columns and partitioning, rolling back to an earlier version, and the row
counts its last commit recorded. Only Spark SQL: the same on classic and Spark Connect sessions.

Delta path tables are ``delta.`<path>```. Iceberg path tables are reached through a Hadoop catalog over
the path's grandparent folder (``sparkpipe_iceberg_<digest>``), where the table is ``<parent>.<name>``:
Spark SQL has no other name for them, and MERGE, time travel and rollback need one.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spark_job.config.connectors import how_to_add
from spark_job.config.lakehouse import FORMAT_NAMES, ICEBERG_CATALOG, path_catalog
from spark_job.config.tables import split_identifier

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("sparkpipe")

MISSING_CLASS_MARKS = ("DATA_SOURCE_NOT_FOUND", "ClassNotFoundException", "NoClassDefFoundError", "CATALOG_NOT_FOUND")


class LakeConnectorMissing(RuntimeError):
    """The session lacks the jar of a table format a config uses."""


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def require_format(spark: SparkSession, fmt: str, where: str) -> None:
    """Raise :class:`LakeConnectorMissing` naming the artifact to add for this Spark version when the
    session cannot read ``fmt`` (``delta``, ``iceberg``): an analysis only, no job."""
    version = spark.version
    probe = f"/nonexistent-sparkpipe-probe-{fmt}"
    try:
        spark.read.format(fmt).load(probe).schema  # noqa: B018 (the analysis is the probe)
    except Exception as exc:
        text = str(exc)
        if not any(mark in text for mark in MISSING_CLASS_MARKS):
            return  # found the format: the path is just not there
        per_runtime = (
            "with sparkpipe run or LocalSpark, in the config's spark_conf; on Dataproc in the cluster's or "
            "batch's properties; on EMR in the step's or job's sparkSubmitParameters (--packages); on "
            "Kubernetes in the image's jars or the SparkApplication's deps.packages"
        )
        raise LakeConnectorMissing(
            f"{where} is a {FORMAT_NAMES[fmt]} table, but this Spark {version} session has no {fmt} connector: "
            f"{how_to_add(fmt, version)}; {per_runtime} (nothing was run)"
        ) from None


@dataclass(frozen=True)
class LakeTable:
    """A Delta or Iceberg table named by a path or by a catalog table name.

    Attributes:
        format: ``delta`` or ``iceberg``.
        path: the table's folder (a path table), else None.
        table: the catalog table's name (a catalog table), else None.
    """

    format: str
    path: str | None = None
    table: str | None = None

    # -- names -----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The table's Spark SQL name."""
        if self.table is not None:
            return self.table
        path = str(self.path)
        if self.format == "delta":
            return f"delta.{quote(path)}"
        parent, leaf = posixpath.split(path.rstrip("/"))
        grand, ns = posixpath.split(parent)
        return f"{path_catalog(grand)}.{quote(ns)}.{quote(leaf)}"

    def describe(self) -> str:
        return f"{self.format} table {self.table or self.path}"

    def catalog_and_name(self) -> tuple[str, str]:
        """The catalog of an Iceberg table and its name inside it (for ``CALL <catalog>.system...``)."""
        if self.table is None:
            parent, leaf = posixpath.split(str(self.path).rstrip("/"))
            grand, ns = posixpath.split(parent)
            return path_catalog(grand), f"{quote(ns)}.{quote(leaf)}"
        parts = [p for p, _ in split_identifier(self.table)]
        if len(parts) >= 3:
            return parts[0], ".".join(quote(p) for p in parts[1:])
        return "spark_catalog", ".".join(quote(p) for p in parts)

    def prepare(self, spark: SparkSession) -> None:
        """Give an Iceberg path table its catalog (runtime settings: any session may set them)."""
        if self.format != "iceberg" or self.table is not None:
            return
        parent = posixpath.dirname(str(self.path).rstrip("/"))
        grand, ns = posixpath.split(parent)
        if not grand or not ns:
            raise ValueError(
                f"the Iceberg path table {self.path} must be at least two folders deep (<warehouse>/<folder>/<table>)"
            )
        key = f"spark.sql.catalog.{path_catalog(grand)}"
        spark.conf.set(key, ICEBERG_CATALOG)
        spark.conf.set(f"{key}.type", "hadoop")
        spark.conf.set(f"{key}.warehouse", grand)

    # -- state -----------------------------------------------------------------------------------
    def exists(self, spark: SparkSession) -> bool:
        try:
            spark.sql(f"SELECT * FROM {self.name} LIMIT 0").schema  # noqa: B018 (analysis only)
        except Exception as exc:
            text = str(exc)
            if any(mark in text for mark in MISSING_CLASS_MARKS):
                raise
            return False
        return True

    def version(self, spark: SparkSession) -> int | None:
        """The current version (Delta) or snapshot id (Iceberg); None when the table does not exist."""
        if not self.exists(spark):
            return None
        if self.format == "delta":
            rows = spark.sql(f"DESCRIBE HISTORY {self.name} LIMIT 1").select("version").collect()
        else:
            rows = spark.sql(
                f"SELECT snapshot_id FROM {self.name}.history WHERE is_current_ancestor "
                "ORDER BY made_current_at DESC LIMIT 1"
            ).collect()
        return int(rows[0][0]) if rows else -1

    def columns(self, spark: SparkSession) -> list[str]:
        return list(spark.sql(f"SELECT * FROM {self.name} LIMIT 0").columns)

    def partition_columns(self, spark: SparkSession) -> list[str]:
        """The columns the table is partitioned by (identity partitions only, for Iceberg)."""
        # DESCRIBE TABLE's partition rows: no job (Delta's DESCRIBE DETAIL runs one)
        rows = [(str(r[0]), str(r[1])) for r in spark.sql(f"DESCRIBE TABLE {self.name}").collect()]
        names = [name for name, _ in rows]
        taken: list[str] = []
        if "# Partition Information" in names:  # its column rows follow a "# col_name" header
            for name, _ in rows[names.index("# Partition Information") + 1 :]:
                if not name.strip() or (name.startswith("#") and name != "# col_name"):
                    break
                if name != "# col_name":
                    taken.append(name)
        elif "# Partitioning" in names:  # "Part 0 | <column>"
            parts = rows[names.index("# Partitioning") + 1 :]
            taken = [value for name, value in parts if name.startswith("Part ")]
        columns = {c.lower(): c for c in self.columns(spark)}
        # an Iceberg transform (days(ts), bucket(16, id)) is no column: not pruned by value
        return [columns[c.lower()] for c in taken if c.lower() in columns]

    # -- changes ---------------------------------------------------------------------------------
    def rollback(self, spark: SparkSession, before: int | None, written: int | None) -> None:
        """Put the table back at version ``before`` (None: it did not exist, drop it), if the version
        ``written`` is still the current one; another writer's later commit is never undone."""
        current = self.version(spark)
        if written is not None and current != written:
            raise RuntimeError(
                f"{self.describe()}: another writer committed after this write (version {current}): its "
                f"version {written} was left in place; restore version {before} by hand if it must go"
            )
        if before is None:
            spark.sql(f"DROP TABLE IF EXISTS {self.name}" + (" PURGE" if self.format == "iceberg" else ""))
            if self.format == "delta" and self.path is not None:
                self._delete_folder(spark, self.path)
        elif self.format == "delta":
            spark.sql(f"RESTORE TABLE {self.name} TO VERSION AS OF {before}")
        elif before >= 0:
            catalog, name = self.catalog_and_name()
            spark.sql(f"CALL {catalog}.system.rollback_to_snapshot('{name}', {before})")
        log.warning("sparkpipe: %s: rolled back to version %s", self.describe(), before)

    @staticmethod
    def _delete_folder(spark: SparkSession, path: str) -> None:
        from spark_job.io.writers import place_of

        place = place_of(spark, path)
        if place is not None:
            files, uri = place
            files.delete(uri)

    def commit_counts(self, spark: SparkSession, result: list[Any] | None) -> dict[str, int | None]:
        """The rows the last MERGE inserted, updated and deleted, from the format's own records: Delta's
        MERGE result row, Iceberg's snapshot summary (``added-records``, ``deleted-records``...)."""
        if self.format == "delta":
            row = result[0].asDict() if result else {}
            return {
                "rows_inserted": row.get("num_inserted_rows"),
                "rows_updated": row.get("num_updated_rows"),
                "rows_deleted": row.get("num_deleted_rows"),
            }
        summary = self.last_summary(spark)
        return {k: int(v) for k, v in summary.items() if v is not None}

    def last_summary(self, spark: SparkSession) -> dict[str, str]:
        rows = spark.sql(f"SELECT summary FROM {self.name}.snapshots ORDER BY committed_at DESC LIMIT 1").collect()
        return dict(rows[0][0]) if rows else {}


def require_formats(spark: SparkSession, config: Any) -> None:
    """Before any job of a run: every table format ``config`` (a ``PipelineConfig``) reads or writes has its
    connector on ``spark``, else :class:`LakeConnectorMissing` naming the first place using it."""
    from spark_job.config.lakehouse import pipeline_entries, table_uses

    first: dict[str, str] = {}
    for use in table_uses(pipeline_entries(config.sources, config.sequences)):
        first.setdefault(use.format, use.where)
    for fmt, where in first.items():
        require_format(spark, fmt, where)
