"""The incoming rows of a ``merge`` or ``scd2`` write, made ready before any writer touches its target.

Every writer that updates in place (JDBC, Delta, Iceberg) calls :func:`prepare_incoming` on the query's
result: the columns the merge settings name must be there (by name, whatever their case), duplicate keys
are an error naming the sequence, the keys and a sample of the duplicates (or, with ``deduplicate:
{latest_by: <column>}``, the latest row per key wins), and ``delete_when`` becomes a flag column
(:data:`DELETE_FLAG`, 1 for a row to delete, else 0) evaluated by Spark on the incoming row. Then
:func:`schema_changes` compares the incoming columns with the target's under the ``on_schema_change``
policy, before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from spark_job.config.merge import MergeSpec

DELETE_FLAG = "sparkpipe_delete"
"""The column :func:`prepare_incoming` adds with ``delete_when``: 1 when the incoming row deletes its key,
else 0 (an integer: every database compares it the same way; a NULL condition does not delete)."""

DUPLICATE_SAMPLE = 5
"""How many duplicate keys an error shows."""


class MergeError(ValueError):
    """A merge that cannot run as configured: what is wrong, for which sequence, and what to do."""


def _find(columns: Sequence[str], name: str) -> str | None:
    """The column of ``columns`` called ``name`` (case-insensitive, as Spark resolves names by default)."""
    return next((c for c in columns if c.lower() == name.lower()), None)


def check_columns(columns: Sequence[str], merge: MergeSpec, sequence: str) -> None:
    """Raise :class:`MergeError` when a column the merge settings name is not among the incoming ``columns``."""
    named = [("merge_keys", k) for k in merge.keys]
    named += [("merge_update_columns", c) for c in merge.update_columns]
    named += [("merge_exclude_columns", c) for c in merge.exclude_columns]
    if merge.latest_by:
        named.append(("deduplicate.latest_by", merge.latest_by))
    if merge.updated_at:
        named.append(("scd2.updated_at", merge.updated_at))
    named += [("scd2.check_columns", c) for c in merge.check_columns]
    missing = [(key, name) for key, name in named if _find(columns, name) is None]
    if missing:
        listed = "; ".join(f"{key} names {name!r}" for key, name in missing)
        raise MergeError(
            f"sequence {sequence}: {listed}, which the query does not return (its columns: {', '.join(columns)}): "
            "return it from the query or fix the target's settings"
        )
    if _find(columns, DELETE_FLAG) is not None:
        raise MergeError(
            f"sequence {sequence}: the query returns a column {DELETE_FLAG!r}, a name sparkpipe keeps for "
            "delete_when's flag: rename it"
        )


def duplicate_keys(df: DataFrame, keys: Sequence[str], sample: int = DUPLICATE_SAMPLE) -> list[tuple[tuple, int]]:
    """Up to ``sample`` key values shared by more than one row of ``df``, each with its number of rows."""
    from pyspark.sql import functions as F

    counted = df.groupBy(*keys).agg(F.count(F.lit(1)).alias("sparkpipe_rows"))
    rows = counted.where(F.col("sparkpipe_rows") > 1).limit(sample).collect()
    return [(tuple(row[i] for i in range(len(keys))), int(row["sparkpipe_rows"])) for row in rows]


def describe_duplicates(sequence: str, keys: Sequence[str], found: Sequence[tuple[tuple, int]]) -> str:
    """The error for duplicate incoming keys: the sequence, the keys, a sample, what to do."""
    shown = ", ".join(
        "(" + ", ".join(f"{k}={v!r}" for k, v in zip(keys, values)) + f") in {rows} rows" for values, rows in found
    )
    more = " (a sample)" if len(found) >= DUPLICATE_SAMPLE else ""
    return (
        f"sequence {sequence}: the incoming rows repeat merge_keys ({', '.join(keys)}): {shown}{more}; each key "
        "must identify one incoming row: remove the duplicates in the query, or add deduplicate: {latest_by: "
        "<column>} to the target to keep the latest row per key (nothing was written)"
    )


def latest_per_key(df: DataFrame, keys: Sequence[str], latest_by: str) -> DataFrame:
    """One row per key of ``df``: the one with the highest ``latest_by`` (NULL lowest; among equal values,
    any one of them)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rank = "sparkpipe_rank"
    window = Window.partitionBy(*keys).orderBy(F.col(latest_by).desc_nulls_last())
    return df.withColumn(rank, F.row_number().over(window)).where(F.col(rank) == 1).drop(rank)


def prepare_incoming(df: DataFrame, merge: MergeSpec, sequence: str, check_duplicates: bool = True) -> DataFrame:
    """The incoming rows of sequence ``sequence``'s merge, ready to stage or to merge.

    Checks the columns the settings name; keeps the latest row per key (``deduplicate``) or raises
    :class:`MergeError` on duplicate keys (one aggregation over the keys, before anything is written: a job
    of its own, which computes the query once more; a writer that stages the rows where it can count the
    keys more cheaply passes ``check_duplicates=False`` and calls :func:`describe_duplicates` itself);
    adds :data:`DELETE_FLAG` when ``delete_when`` is set. The columns keep the query's names and order."""
    from pyspark.sql import functions as F

    check_columns(df.columns, merge, sequence)
    keys = [_find(df.columns, k) or k for k in merge.keys]
    if merge.latest_by:
        df = latest_per_key(df, keys, _find(df.columns, merge.latest_by) or merge.latest_by)
    elif check_duplicates:
        found = duplicate_keys(df, keys)
        if found:
            raise MergeError(describe_duplicates(sequence, keys, found))
    if merge.delete_when:
        flag = F.coalesce(F.expr(merge.delete_when).cast("boolean"), F.lit(False))
        df = df.withColumn(DELETE_FLAG, F.when(flag, F.lit(1)).otherwise(F.lit(0)))
    return df


@dataclass(frozen=True)
class SchemaChanges:
    """What a target's columns must change for the incoming columns, under a policy.

    Attributes:
        added: incoming columns the target lacks (the incoming names), to add before merging.
        dropped: target columns the incoming rows lack (the target's names), to drop before merging.
        kept: target columns the incoming rows lack that stay (``append_new_columns``): a new row gets
            their default there, a matched row keeps its value.
    """

    added: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.dropped)


def schema_changes(
    incoming: Sequence[str], target: Sequence[str], policy: str, *, where: str, keys: Sequence[str] = ()
) -> SchemaChanges:
    """Compare the ``incoming`` columns with the ``target``'s by name (case-insensitive) under ``policy``
    (``fail``, ``append_new_columns``, ``sync``); raise :class:`MergeError` when the policy refuses the
    difference. ``where`` names the sequence and target in the message; ``keys`` are never dropped."""
    target_names = {c.lower() for c in target}
    incoming_names = {c.lower() for c in incoming if c != DELETE_FLAG}
    added = tuple(c for c in incoming if c != DELETE_FLAG and c.lower() not in target_names)
    missing = tuple(c for c in target if c.lower() not in incoming_names)
    if policy == "fail" and (added or missing):
        said = []
        if added:
            said.append(f"the query returns {', '.join(added)}, which the target lacks")
        if missing:
            said.append(f"the target has {', '.join(missing)}, which the query does not return")
        raise MergeError(
            f"{where}: the columns changed: {'; '.join(said)} (on_schema_change is fail, nothing was written): "
            "return the target's columns from the query, or set on_schema_change: append_new_columns (add new "
            "columns, keep the others) or sync (add new columns, drop the ones the query lacks)"
        )
    key_names = {k.lower() for k in keys}
    lost_keys = [c for c in missing if c.lower() in key_names]
    if lost_keys:
        raise MergeError(f"{where}: the query does not return the merge key {lost_keys[0]!r}")
    if policy == "sync":
        return SchemaChanges(added=added, dropped=missing)
    return SchemaChanges(added=added, kept=missing)
