"""The lease of a Delta Lake table on S3: one run at a time writes it where Delta itself does not serialise
the writers of several drivers.

Delta commits a version by creating the log file ``_delta_log/<version>.json`` only if it is absent.
Delta's default S3 log store (``S3SingleDriverLogStore``) ensures that within one driver only (it checks,
then writes): two drivers committing at once can both write the same version, and one commit is lost.
A DynamoDB log store (``io.delta.storage.S3DynamoDBLogStore``, set with
``spark.delta.logStore.s3a.impl`` and its ``s3``/``s3n`` keys, or ``spark.delta.logStore.class``)
serialises them. Without one, a Delta target on ``s3a://``, ``s3://`` or ``s3n://`` holds the target's
path lease (:class:`~spark_job.io.leases.PathLease`, claims beside the table's folder) from
``begin_write`` to the commit or discard, as path targets do. Iceberg tables take none (their catalogs
serialise commits), nor do Delta tables on other filesystems (their log stores create the log file
atomically).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from spark_job.config.tables import split_identifier
from spark_job.engine.capabilities import capabilities_of
from spark_job.io.base import StagedWrite
from spark_job.io.leases import PathLease

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from spark_job.io.lake_tables import LakeTable

S3_SCHEMES = ("s3", "s3a", "s3n")
CLASS_KEY = "spark.delta.logStore.class"
DELEGATING_LOG_STORE = "org.apache.spark.sql.delta.storage.DelegatingLogStore"
S3_DEFAULT_LOG_STORE = "io.delta.storage.S3SingleDriverLogStore"


def scheme_key(scheme: str) -> str:
    return f"spark.delta.logStore.{scheme.lower()}.impl"


def log_store_keys(scheme: str) -> tuple[str, ...]:
    """The settings Delta chooses the log store of a scheme's paths by, each also without ``spark.``."""
    keys = (CLASS_KEY, scheme_key(scheme))
    return (*keys, *(key[len("spark.") :] for key in keys))


def delta_log_store(scheme: str, settings: Mapping[str, str | None]) -> str | None:
    """The log store class Delta commits tables of ``scheme`` through, resolved from the application's
    ``settings`` as Delta does: ``spark.delta.logStore.class`` for every scheme, else
    ``spark.delta.logStore.<scheme>.impl``, else Delta's default (``S3SingleDriverLogStore`` on S3; None
    for another scheme without a setting). Each key counts without its ``spark.`` prefix too."""

    def setting(key: str) -> str | None:
        value = settings.get(key) or settings.get(key[len("spark.") :])
        if value is None or not str(value).strip():
            return None
        return str(value).strip()

    chosen = setting(CLASS_KEY)
    if chosen is not None and chosen != DELEGATING_LOG_STORE:
        return chosen
    return setting(scheme_key(scheme)) or (S3_DEFAULT_LOG_STORE if scheme.lower() in S3_SCHEMES else None)


def delta_needs_lease(uri: str, settings: Mapping[str, str | None]) -> bool:
    """Whether a Delta table at ``uri`` (qualified: its scheme decides) needs sparkpipe's lease: on S3
    (``s3a``, ``s3``, ``s3n``) unless the log store Delta uses there under ``settings`` is a DynamoDB one,
    which serialises the commits of several drivers."""
    scheme = urlsplit(uri).scheme.lower()
    if scheme not in S3_SCHEMES:
        return False
    store = delta_log_store(scheme, settings) or ""
    return "dynamodb" not in store.rpartition(".")[2].lower()


def log_store_settings(spark: SparkSession, scheme: str) -> dict[str, str | None]:
    """The application's log store settings for ``scheme`` as Delta reads them: from the SparkContext's
    configuration, set when the application started (Delta reads no other: a ``spark.conf.set`` on a
    running session does not change its log store); on Spark Connect from the server's settings."""
    keys = log_store_keys(scheme)
    capabilities = capabilities_of(spark)
    if not capabilities.connect:
        try:
            conf = spark.sparkContext.getConf()
            return {key: conf.get(key) for key in keys}
        except Exception:  # a session without a SparkContext in this process: the session's settings
            pass
    return {key: capabilities.spark_conf(key) for key in keys}


def table_location(spark: SparkSession, table: LakeTable) -> str | None:
    """Where a Delta table's folder is: its ``path``; for a catalog table of the session catalog the
    ``Location`` that ``DESCRIBE TABLE EXTENDED`` gives (the catalog's metadata, no job), or for one not
    created yet ``<database location>/<table>``, where the write creates it. None for a table of another
    catalog (its own commit protocol) or one whose location Spark does not say."""
    if table.path is not None:
        return str(table.path)
    parts = [part for part, _ in split_identifier(str(table.table))]
    if len(parts) > 3 or (len(parts) == 3 and parts[0].lower() != "spark_catalog"):
        return None
    try:
        if table.exists(spark):
            rows = spark.sql(f"DESCRIBE TABLE EXTENDED {table.name}").collect()
            found = [str(r[1]) for r in rows if str(r[0]).strip() == "Location" and r[1]]
            return found[0] if found else None
        database = parts[-2] if len(parts) > 1 else spark.catalog.currentDatabase()
        location = str(spark.catalog.getDatabase(database).locationUri).rstrip("/")
    except Exception:  # a database Spark does not know: the write fails on its own
        return None
    return f"{location}/{parts[-1].lower()}"


def delta_lease(spark: SparkSession, table: LakeTable) -> PathLease | None:
    """The lease a write of the Delta ``table`` holds (module docstring), or None: a table off S3, one
    whose log store serialises drivers, one of another catalog, or a table this client cannot reach (a
    Spark Connect client: Spark's own semantics)."""
    from spark_job.io.writers import place_of

    if table.format != "delta":
        return None
    location = table_location(spark, table)
    if location is None:
        return None
    scheme = urlsplit(location).scheme.lower()
    if scheme and scheme not in S3_SCHEMES:  # a local or HDFS table: nothing to look up
        return None
    if scheme and not delta_needs_lease(location, log_store_settings(spark, scheme)):
        return None
    place = place_of(spark, location)  # a path without a scheme is on the default filesystem
    if place is None:
        return None
    files, target = place
    if not scheme and not delta_needs_lease(target, log_store_settings(spark, urlsplit(target).scheme)):
        return None
    label = f"Delta table {table.table} ({target})" if table.table is not None else f"Delta table {target}"
    return PathLease(files, target, spark, label=label)


def under_lease(lease: PathLease, begin: Callable[[], StagedWrite]) -> StagedWrite:
    """Take ``lease``, begin the write (``begin()``, a :class:`StagedWrite`) under it and hold it until
    the write is committed or discarded, releasing it either way."""
    lease.acquire()
    try:
        staged = begin()
    except BaseException:
        lease.release()
        raise

    def commit() -> Any:
        try:
            staged.commit()
            return staged.changes
        finally:
            lease.release()

    def discard() -> None:
        try:
            staged.discard()
        finally:
            lease.release()

    return StagedWrite(commit, discard)
