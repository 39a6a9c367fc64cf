"""The JDBC writer: a database table written through Spark's JDBC source, staged beside the target and
swapped in (``spark_job.io.swap``) under a lease (``spark_job.io.leases``); ``mode: merge`` upserts in one
transaction (``spark_job.io.jdbc_merge``)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from spark_job.config.fields import Field, url_port
from spark_job.config.merge import MERGE_FIELDS, MergeSpec, check_merge
from spark_job.config.targets import (
    canonical_jdbc_table,
    jdbc_subprotocol,
    jdbc_table_identity,
)
from spark_job.dialects import dialect_of
from spark_job.engine.capabilities import capabilities_of
from spark_job.io.base import (
    ATOMIC_FIELD,
    SAVE_MODES,
    Report,
    StagedWrite,
    StagingWriter,
    WritePlan,
    check_jdbc_url,
    stringify,
    writers,
)
from spark_job.io.incoming import MergeError, check_columns, prepare_incoming
from spark_job.io.jdbc_merge import CommitStep, JdbcMerge
from spark_job.io.leases import LEASE_TABLE, Lease, PostgresLease, TableLease
from spark_job.io.swap import JdbcSwap, jdbc_driver, plain_table_name, spark_jdbc_url
from spark_job.io.writers import leased_write

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


JDBC_MERGE_FIELDS: dict[str, Field] = {
    **{k: f for k, f in MERGE_FIELDS.items() if k != "scd2"},
    "merge_condition": Field(
        "str",
        sql="database",
        doc="with mode merge: an extra condition for updating or deleting a matched row, in the database's SQL over "
        "t (target) and s (incoming), e.g. t.updated_at < s.updated_at",
    ),
}


@writers.register
class JdbcWriter(StagingWriter):
    """A database table through JDBC; ``mode: merge`` upserts in one transaction (``spark_job.io.jdbc_merge``)."""

    type_name = "jdbc"
    modes: ClassVar[tuple[str, ...]] = (*SAVE_MODES, "merge")
    fields: ClassVar[dict[str, Field]] = {
        "url": Field("str", doc="JDBC URL (or give 'connection')", rule=url_port),
        "connection": Field("str", doc="an Airflow connection id; SparkPipelineOperator fills url, user, password"),
        "table": Field("str", required=True, doc="table to write"),
        "user": Field("str", doc="user name (use ${env:NAME})"),
        "password": Field("str", doc="password (use ${env:NAME}, never a literal)"),
        "driver": Field("str", doc="JDBC driver class"),
        "batchsize": Field("int", doc="rows per insert batch"),
        "truncate": Field("bool", doc="with overwrite, keep the table's definition: replace its rows only"),
        "atomic": ATOMIC_FIELD,
        "lease": Field(
            "str",
            choices=("advisory", "table"),
            doc="how a staged write keeps other runs out: a PostgreSQL advisory lock (its default) or a row "
            "of the sparkpipe_leases table (every other database; on PostgreSQL behind a transaction pooler)",
        ),
        **JDBC_MERGE_FIELDS,
    }

    @classmethod
    def check(cls, spec: Mapping[str, Any], report: Report) -> None:
        check_jdbc_url(spec, report)
        if spec.get("partition_by"):
            report("partition_by", "a JDBC target cannot be partitioned: remove partition_by")
        url = spec.get("url")
        known = isinstance(url, str) and "${" not in url
        if spec.get("lease") == "advisory" and known and jdbc_subprotocol(str(url)) != "postgresql":
            report("lease", "advisory locks are PostgreSQL's: use lease: table (the default elsewhere)")
        table = spec.get("table")
        if isinstance(table, str) and table.rsplit(".", 1)[-1].strip('"`[]').lower() == LEASE_TABLE:
            report("table", f"{LEASE_TABLE} holds the leases of JDBC targets: write another table")
        check_merge(spec, report)
        if spec.get("mode") == "merge":
            if isinstance(table, str) and "${" not in table and not plain_table_name(table):
                report("table", "mode merge needs a plain [schema.]table name (letters, digits, _ and $)")
            for key in ("truncate", "atomic"):
                if key in spec:
                    report(
                        key,
                        "applies to mode overwrite or append: a merge always runs in one transaction "
                        "from a staging table",
                    )

    def plan(self) -> WritePlan:
        spec = self.spec
        opts = {"url": spark_jdbc_url(str(spec["url"])), "dbtable": str(spec["table"])}
        for key in ("user", "password", "driver", "batchsize", "truncate"):
            if key in spec:
                opts[key] = stringify(spec[key])
        driver = jdbc_driver(opts["url"], opts.get("driver"))
        if driver:  # a driver jar given through spark.jars is invisible to DriverManager's lookup by URL
            opts["driver"] = driver
        opts.update(self.options())
        return WritePlan(format="jdbc", mode=self.mode, options=opts, table=str(spec["table"]))

    def add_commit_step(self, step: CommitStep) -> None:
        """Run ``step`` on the connection of the transaction that ends a staged write (overwrite, append, merge),
        just before it commits: what it writes commits with the rows or not at all."""
        self._commit_steps = [*getattr(self, "_commit_steps", []), step]

    def _lease(self, swap: JdbcSwap, conn: Any, spark: SparkSession) -> Lease | PostgresLease:
        table = str(self.spec["table"])
        default = "advisory" if dialect_of(str(self.spec["url"])).advisory_locks else "table"
        if self.spec.get("lease", default) == "advisory":
            return PostgresLease(conn, self.target_key(), table, spark)
        return TableLease(swap.connect(), self.target_key(), table, spark)

    def begin_write(self, df: DataFrame) -> StagedWrite:
        """overwrite and append go through a staging table and end in one transaction.

        The write holds the target's lease from here to the commit: on PostgreSQL an advisory lock
        on the connection that runs the commit, elsewhere (or with ``lease: table``) a row of the
        ``sparkpipe_leases`` table in the target's schema, kept on a connection of its own. A Spark
        Connect client has no JVM to run the transaction: Spark writes the target directly.
        """
        plan = self.plan()
        spark = df.sparkSession
        if self.mode == "merge":
            return self.begin_merge(df)
        if not self.holds_lease(spark):
            return StagedWrite(lambda: self.save(df, plan))
        swap = JdbcSwap(spark, plan.options)
        conn = swap.connect()
        lease: Lease | PostgresLease | None = None
        try:
            lease = self._lease(swap, conn, spark)
            lease.acquire()
            if not self.can_stage(spark):  # Spark writes the table itself (atomic: false, error, ignore)
                held = lease
                return leased_write(held, lambda: self.save(df, plan), lambda: self._end(swap, conn, held, drop=False))
            staged_options = {k: v for k, v in plan.options.items() if k != "truncate"}
            staged_options["dbtable"] = swap.staging
            self.save(df, dataclasses.replace(plan, mode="overwrite", options=staged_options))
        except BaseException:
            self._end(swap, conn, lease)
            raise

        def commit() -> None:
            if lease is not None:
                lease.verify()
            swap.commit(conn, plan.mode, keep_definition=bool(self.spec.get("truncate")), steps=self.commit_steps)
            self._end(swap, conn, lease, drop=False)

        return StagedWrite(commit, lambda: self._end(swap, conn, lease))

    @property
    def commit_steps(self) -> list[CommitStep]:
        return list(getattr(self, "_commit_steps", []))

    def begin_merge(self, df: DataFrame) -> StagedWrite:
        """``mode: merge``: under the target's lease, check the target (columns, unique keys) and the incoming
        rows (duplicate keys), stage the rows, and merge them in one transaction at the commit."""
        plan = self.plan()
        spark = df.sparkSession
        sequence = self.sequence or str(self.spec["table"])
        if not self.holds_lease(spark):
            raise MergeError(
                f"sequence {sequence}: mode merge into {self.spec['table']} runs its transaction through the JDBC "
                "driver in the Spark driver's JVM, which this session does not have (a Spark Connect client): "
                "run it with spark-submit or sparkpipe run"
            )
        merge = MergeSpec.of(self.spec)
        assert merge is not None
        swap = JdbcSwap(spark, plan.options)
        conn = swap.connect()
        lease: Lease | PostgresLease | None = None
        try:
            lease = self._lease(swap, conn, spark)
            lease.acquire()
            merging = JdbcMerge(
                plan.options["dbtable"], swap.staging, dialect_of(str(self.spec["url"])), merge, sequence
            )
            check_columns(df.columns, merge, sequence)  # the settings' columns, named before the target's
            merging.prepare(conn, df.columns)
            incoming = prepare_incoming(df, merge, sequence, check_duplicates=False)
            staged_options = {**plan.options, "dbtable": swap.staging}
            typed = merging.staging_types(incoming.schema)
            if typed:
                given = staged_options.get("createTableColumnTypes")
                staged_options["createTableColumnTypes"] = f"{given}, {typed}" if given else typed
            self.save(incoming, dataclasses.replace(plan, mode="overwrite", options=staged_options))
            merging.check_staged_keys(conn, incoming.columns)
        except BaseException:
            self._end(swap, conn, lease)
            raise
        columns = incoming.columns

        def commit() -> dict[str, int]:
            assert lease is not None
            lease.verify()
            counts = merging.commit(conn, columns, self.commit_steps)
            self._end(swap, conn, lease)
            return counts

        return StagedWrite(commit, lambda: self._end(swap, conn, lease))

    def can_stage(self, spark: SparkSession) -> bool:
        if self.mode == "merge":
            return self.holds_lease(spark)
        return self.holds_lease(spark) and self.mode in ("overwrite", "append") and self.spec.get("atomic") is not False

    def holds_lease(self, spark: SparkSession) -> bool:
        """Whether a lease guards the write: a plain table name (its lease table's schema is known)
        written through this session's JVM (a Spark Connect client has none)."""
        return plain_table_name(str(self.spec["table"])) and capabilities_of(spark).reaches_hadoop

    @staticmethod
    def _end(swap: JdbcSwap, conn: Any, lease: Lease | PostgresLease | None, drop: bool = True) -> None:
        # The database may be what failed; the next run replaces a staging table left behind anyway.
        try:
            if drop:
                with contextlib.suppress(Exception):
                    swap.drop_staging(conn)
            if lease is not None:
                lease.release()
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def target_key(self) -> str:
        url = self.spec.get("url")
        user = self.spec.get("user")
        options = self.spec.get("options") if isinstance(self.spec.get("options"), dict) else {}
        if isinstance(url, str):
            return jdbc_table_identity(url, str(self.spec["table"]), user, options)
        table = canonical_jdbc_table("", str(self.spec["table"]), user, options)
        return f"jdbc:connection:{self.spec.get('connection')}/{table}"

    def describe(self) -> dict[str, Any]:
        from spark_job.config.urls import strip_credentials

        # The URL may carry credentials (user info, ;password=, ?password=): what is shown has none.
        return {"type": "jdbc", "uri": strip_credentials(str(self.spec["url"])), "table": self.spec["table"]}
