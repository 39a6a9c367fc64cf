"""The one MERGE statement of a ``merge`` (SCD type 1) or ``scd2`` write into a Delta or Iceberg table.

Columns are matched by name (the target's spelling is used), never by position. With ``scd2`` the
incoming rows and the versions of the keys they touch are laid on one timeline per key (ordered by
``updated_at``, or by the run's time with ``check_columns``) and every version whose ``valid_to`` or
``is_current`` changes, or that is new, becomes one row of the MERGE's source: a change arriving out of
order is placed between the versions around it, an unchanged row changes nothing, ``delete_when``
closes the version current at that time, and rerunning the same rows finds nothing to change.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from spark_job.config.merge import MergeSpec
from spark_job.io.incoming import DELETE_FLAG
from spark_job.io.lake_tables import quote

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

ACTION = "sparkpipe_action"
"""The column of the SCD2 source saying whether a row is a new version (``insert``) or changes one."""
MAX_PRUNED_VALUES = 2000
"""The most partition values written into a MERGE's condition; more prune nothing."""


def by_name(columns: Sequence[str], names: Sequence[str]) -> dict[str, str]:
    """Each of ``names`` (lower-cased) -> its spelling among ``columns`` (case-insensitive, as Spark)."""
    found = {c.lower(): c for c in columns}
    return {n.lower(): found[n.lower()] for n in names if n.lower() in found}


def sql_literal(value: Any) -> str | None:
    """A Spark SQL literal of a partition value, or None for a type left unpruned."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, decimal.Decimal)):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'" if value.tzinfo is None else None
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return None


def pruning_condition(partitions: Sequence[str], values: Sequence[Sequence[Any]] | None) -> str:
    """``AND (t.p1, ...) IN (...)``-like text restricting the target to the partitions the incoming rows
    touch, or empty when nothing can be pruned (no partitions, too many values, a type without literal)."""
    if not partitions or values is None or not values or len(values) > MAX_PRUNED_VALUES:
        return ""
    per_column: list[str] = []
    for i, column in enumerate(partitions):
        literals = {sql_literal(row[i]) for row in values}
        if None in literals:
            return ""
        nulls = "NULL" in literals
        listed = sorted(v for v in literals if v is not None and v != "NULL")
        parts = [f"t.{quote(column)} IN ({', '.join(listed)})"] if listed else []
        if nulls:
            parts.append(f"t.{quote(column)} IS NULL")
        per_column.append("(" + " OR ".join(parts) + ")")
    return " AND " + " AND ".join(per_column)


def merge_statement(
    target: str,
    source: str,
    incoming: Sequence[str],
    target_columns: Sequence[str],
    merge: MergeSpec,
    pruning: str = "",
) -> str:
    """The SCD1 MERGE of view ``source`` into table ``target``: update matched rows (``merge_update_columns``,
    ``merge_exclude_columns``, ``merge_condition``), delete those ``delete_when`` flags, insert the others."""
    names = by_name(target_columns, [c for c in incoming if c != DELETE_FLAG])
    keys = [names[k.lower()] for k in merge.keys]
    src = {c.lower(): c for c in incoming}
    on = " AND ".join(f"t.{quote(k)} = s.{quote(src[k.lower()])}" for k in keys) + pruning
    clauses = []
    deletes = merge.delete_when is not None
    if deletes:
        clauses.append(f"WHEN MATCHED AND s.{DELETE_FLAG} = 1 THEN DELETE")
    updated = merge.updated_columns([names[c.lower()] for c in incoming if c.lower() in names])
    if updated:
        condition = f" AND ({merge.condition})" if merge.condition else ""
        sets = ", ".join(f"t.{quote(c)} = s.{quote(src[c.lower()])}" for c in updated)
        clauses.append(f"WHEN MATCHED{condition} THEN UPDATE SET {sets}")
    inserted = [c for c in incoming if c.lower() in names]
    into = ", ".join(quote(names[c.lower()]) for c in inserted)
    values = ", ".join(f"s.{quote(c)}" for c in inserted)
    only_kept = f" AND s.{DELETE_FLAG} = 0" if deletes else ""
    clauses.append(f"WHEN NOT MATCHED{only_kept} THEN INSERT ({into}) VALUES ({values})")
    return f"MERGE INTO {target} t USING {source} s ON {on} " + " ".join(clauses)


def scd2_statement(target: str, source: str, columns: Sequence[str], keys: Sequence[str], pruning: str = "") -> str:
    """The SCD2 MERGE: a source row changes the version of its key starting at its ``valid_from``, or is
    inserted as a new version. ``columns`` are the target's names, the SCD2 columns included."""
    on = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in keys)
    on += " AND t.`valid_from` = s.`valid_from`" + pruning
    sets = ", ".join(f"t.{quote(c)} = s.{quote(c)}" for c in columns if c.lower() not in {k.lower() for k in keys})
    into = ", ".join(quote(c) for c in columns)
    values = ", ".join(f"s.{quote(c)}" for c in columns)
    return (
        f"MERGE INTO {target} t USING {source} s ON {on} WHEN MATCHED THEN UPDATE SET {sets} "
        f"WHEN NOT MATCHED THEN INSERT ({into}) VALUES ({values})"
    )


def _same(F: Any, left: Sequence[Column], right: Sequence[Column]) -> Column:
    out = F.lit(True)
    for a, b in zip(left, right):
        out = out & a.eqNullSafe(b)
    return out


def scd2_source(
    incoming: DataFrame,
    target: DataFrame | None,
    merge: MergeSpec,
    now: dt.datetime,
    names: Mapping[str, str] | None = None,
) -> DataFrame:
    """The rows of the SCD2 MERGE: the target's columns (incoming ones, ``valid_from``, ``valid_to``,
    ``is_current``) and :data:`ACTION`, ``insert`` or ``update``.

    ``incoming`` has one row per key (prepared: :data:`DELETE_FLAG` with ``delete_when``); ``target`` holds
    the versions of the keys it touches (None: the table does not exist yet); ``names`` maps incoming
    column names (lower-cased) to the target's spelling.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    data = [c for c in incoming.columns if c != DELETE_FLAG]
    names = dict(names or {c.lower(): c for c in data})
    cols = [names.get(c.lower(), c) for c in data]
    renamed = incoming.select(
        *[F.col(quote(c)).alias(n) for c, n in zip(data, cols)],
        (F.col(DELETE_FLAG) if DELETE_FLAG in incoming.columns else F.lit(0)).alias("_sp_del"),
    )
    keys = [names.get(k.lower(), k) for k in merge.keys]
    if merge.updated_at:
        when = F.col(quote(names.get(merge.updated_at.lower(), merge.updated_at)))
        compared = [
            c for c in cols if c.lower() not in {k.lower() for k in keys} and c.lower() != merge.updated_at.lower()
        ]
    else:
        when = F.lit(now)
        compared = [names.get(c.lower(), c) for c in merge.check_columns]
    inc = renamed.withColumn("_sp_from", when)
    version_cols = [*cols, "_sp_from"]
    inc_versions = inc.where("_sp_del = 0").select(*[quote(c) for c in version_cols])
    inc_deletes = inc.where("_sp_del = 1").select(*[quote(k) for k in keys], "_sp_from")

    def event(df: DataFrame, src: str, is_version: bool, existed: Column | None = None, **extra: Column) -> DataFrame:
        present = set(df.columns)
        fill = {
            "_sp_old_from": None,
            "_sp_old_to": None,
            "_sp_old_cur": None,
        }
        out = df
        for c in cols:
            if c not in present:
                out = out.withColumn(c, F.lit(None))
        for c, v in fill.items():
            if c not in present and c not in extra:
                out = out.withColumn(c, F.lit(v))
        for c, v in extra.items():
            out = out.withColumn(c, v)
        out = out.withColumn("_sp_src", F.lit(src)).withColumn("_sp_version", F.lit(is_version))
        out = out.withColumn("_sp_existed", existed if existed is not None else F.lit(False))
        return out.select(
            *[quote(c) for c in cols],
            "_sp_from",
            "_sp_old_from",
            "_sp_old_to",
            "_sp_old_cur",
            "_sp_src",
            "_sp_version",
            "_sp_existed",
        )

    if target is None:
        events = event(inc_versions, "i", True).unionByName(event(inc_deletes, "d", False))
    else:
        tgt = target.select(
            *[quote(c) for c in cols],
            F.col("valid_from").alias("_sp_from"),
            F.col("valid_from").alias("_sp_old_from"),
            F.col("valid_to").alias("_sp_old_to"),
            F.col("is_current").alias("_sp_old_cur"),
        )
        join_on = [*keys, "_sp_from"]
        # An incoming version at the time of an existing one replaces it (a correction, or the same row again).
        existing = tgt.select(
            *[quote(k) for k in keys],
            "_sp_from",
            "_sp_old_from",
            "_sp_old_to",
            "_sp_old_cur",
            *[F.col(quote(c)).alias(f"_sp_prev_{i}") for i, c in enumerate(cols)],
        )
        joined = inc_versions.join(existing, on=[*keys, "_sp_from"], how="left")
        unchanged_in_place = _same(
            F, [F.col(quote(c)) for c in compared], [F.col(f"_sp_prev_{cols.index(c)}") for c in compared]
        )
        replaced = joined.select(
            *[quote(c) for c in version_cols],
            "_sp_old_from",
            "_sp_old_to",
            "_sp_old_cur",
            F.col("_sp_old_from").isNotNull().alias("_sp_existed"),
            (F.col("_sp_old_from").isNotNull() & ~unchanged_in_place).alias("_sp_changed"),
        )
        kept_target = tgt.join(inc_versions.select(*[quote(k) for k in keys], "_sp_from"), on=join_on, how="left_anti")
        # A closed version with no version starting where it ends was closed by a delete: keep that end.
        a, b = tgt.alias("a"), tgt.alias("b")
        ends = a.where(F.col("a._sp_old_to").isNotNull()).join(
            b,
            on=[F.col(f"a.{quote(k)}") == F.col(f"b.{quote(k)}") for k in keys]
            + [F.col("a._sp_old_to") == F.col("b._sp_from")],
            how="left_anti",
        )
        markers = ends.select(*[F.col(f"a.{quote(k)}").alias(k) for k in keys], F.col("a._sp_old_to").alias("_sp_from"))
        events = (
            event(replaced.drop("_sp_existed", "_sp_changed"), "i", True, F.lit(False))
            .withColumn("_sp_existed", F.lit(False))
            .unionByName(
                event(
                    kept_target.select(*[quote(c) for c in version_cols], "_sp_old_from", "_sp_old_to", "_sp_old_cur"),
                    "t",
                    True,
                )
            )
            .unionByName(event(inc_deletes, "d", False))
            .unionByName(event(markers, "m", False))
        )
        events = events.join(
            replaced.select(*[quote(k) for k in keys], "_sp_from", F.col("_sp_existed").alias("_sp_e"), "_sp_changed"),
            on=[*keys, "_sp_from"],
            how="left",
        )
        events = events.withColumn(
            "_sp_existed",
            F.when(F.col("_sp_src") == "i", F.coalesce(F.col("_sp_e"), F.lit(False))).otherwise(
                F.col("_sp_src") == "t"
            ),
        ).drop("_sp_e")
    if "_sp_changed" not in events.columns:
        events = events.withColumn("_sp_changed", F.lit(False))
    order = Window.partitionBy(*[quote(k) for k in keys]).orderBy(F.col("_sp_from"), F.col("_sp_version").desc())
    previous = [F.lag(F.col(quote(c))).over(order) for c in compared]
    same_as_previous = F.lag(F.col("_sp_version")).over(order).eqNullSafe(F.lit(True)) & _same(
        F, [F.col(quote(c)) for c in compared], previous
    )
    # A new version equal to the one before it changes nothing (a rerun, or an unchanged row).
    events = events.withColumn("_sp_same", same_as_previous)  # a window is computed before any filter on it
    events = events.where(~((F.col("_sp_src") == "i") & ~F.col("_sp_existed") & F.col("_sp_same"))).drop("_sp_same")
    nxt = F.lead(F.col("_sp_from")).over(order)
    next_src = F.lead(F.col("_sp_src")).over(order)
    timeline = events.withColumn("valid_to", nxt).withColumn("_sp_next_src", next_src)
    versions = timeline.where("_sp_version").withColumn("valid_from", F.col("_sp_from"))
    versions = versions.withColumn("is_current", F.col("valid_to").isNull())
    moved = ~F.col("valid_to").eqNullSafe(F.col("_sp_old_to")) | ~F.col("is_current").eqNullSafe(F.col("_sp_old_cur"))
    action = (
        F.when(~F.col("_sp_existed"), F.lit("insert"))
        .when(moved | F.col("_sp_changed"), F.lit("update"))
        .otherwise(F.lit(None))
    )
    deleted = (F.col("_sp_next_src") == "d") & F.col("_sp_old_cur").eqNullSafe(F.lit(True))
    out = versions.withColumn(ACTION, action).where(F.col(ACTION).isNotNull())
    out = out.withColumn(
        ACTION, F.when(deleted & (F.col(ACTION) == "update"), F.lit("delete")).otherwise(F.col(ACTION))
    )
    return out.select(*[quote(c) for c in cols], "valid_from", "valid_to", "is_current", ACTION)
