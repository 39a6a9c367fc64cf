"""What a sequence's write does to its target's rows, computed in one local session for ``sparkpipe test``.

A test may give a target's current rows (``given: {this: {<sequence>: rows}}``) and expect its rows after
the run (``expect: {<sequence>: {this: rows}}``). :func:`rows_after` applies the target's mode to them with
DataFrame operations, the way the run's write would: ``overwrite`` replaces (only the partitions written
with dynamic partition overwrite), ``append`` adds, ``ignore`` keeps, ``error`` fails when the target
exists; ``merge`` updates matched keys (``merge_update_columns``, ``merge_exclude_columns``,
``merge_condition``), deletes what ``delete_when`` flags and inserts the rest; ``scd2`` lays the rows on the
keys' histories with the same source rows the run's one MERGE takes (:func:`spark_job.io.lake_merge.scd2_source`).
The incoming rows go through the same checks as in a run (duplicate keys, ``deduplicate``, the
``on_schema_change`` policy), so a test sees the error a run would give.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from spark_job.config.merge import SCD2_COLUMNS, MergeSpec
from spark_job.io.incoming import DELETE_FLAG, prepare_incoming, schema_changes
from spark_job.io.lake_merge import ACTION, by_name, scd2_source
from spark_job.io.lake_tables import quote

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from spark_job.config.validation import SequenceSpec


class TargetError(ValueError):
    """The run's write would fail on these rows (an existing target in mode ``error``, a refused merge)."""


def typed_like(current: DataFrame, result: DataFrame, merge: MergeSpec | None) -> DataFrame:
    """The given target rows with the types of the result's columns of the same name (the rows of a test
    file are YAML: a date is a string there); an scd2 target's ``valid_from``/``valid_to`` get the type of
    its ``updated_at`` column (a timestamp with ``check_columns``), ``is_current`` a boolean."""
    from pyspark.sql import functions as F

    types: dict[str, Any] = {f.name.lower(): f.dataType for f in result.schema.fields if f.name != DELETE_FLAG}
    if merge is not None and merge.mode == "scd2":
        when = types.get(merge.updated_at.lower()) if merge.updated_at else None
        types["valid_from"] = types["valid_to"] = when if when is not None else "timestamp"
        types["is_current"] = "boolean"
    return current.select(
        *[
            F.col(quote(c)).cast(types[c.lower()]).alias(c) if c.lower() in types else F.col(quote(c))
            for c in current.columns
        ]
    )


def rows_after(
    seq: SequenceSpec, mode: str, current: DataFrame | None, result: DataFrame, now: dt.datetime
) -> DataFrame:
    """The target's rows once ``result`` (the rows the sequence writes) is written in ``mode`` onto a target
    holding ``current`` (None: the target does not exist). Raise :class:`TargetError` where the run would fail."""
    merge = MergeSpec.of({**seq.target, "mode": mode})
    if merge is not None:
        incoming = prepare_incoming(result, merge, seq.name)
        if merge.mode == "merge":
            return merged(seq, current, incoming, merge)
        return historised(seq, current, incoming, merge, now)
    if current is None or (mode == "overwrite" and not seq.target.get("dynamic_partition_overwrite")):
        return result
    if mode == "append":
        return current.unionByName(result, allowMissingColumns=True)
    if mode == "ignore":
        return current
    if mode == "error":
        raise TargetError(f"sequence {seq.name}: the target exists and the mode is error: the run would fail")
    # dynamic partition overwrite: the partitions written are replaced, the others kept
    partitions = [quote(c) for c in seq.target.get("partition_by") or ()]
    kept = current.join(result.select(*partitions).distinct(), on=list(seq.target["partition_by"]), how="left_anti")
    return kept.unionByName(result, allowMissingColumns=True)


def _evolved(seq: SequenceSpec, current: DataFrame, incoming: DataFrame, merge: MergeSpec) -> DataFrame:
    """The target's rows with the columns the ``on_schema_change`` policy gives it (added ones empty,
    dropped ones gone); a policy that refuses the difference raises :class:`TargetError`."""
    from pyspark.sql import functions as F

    from spark_job.io.incoming import MergeError

    data = [c for c in current.columns if merge.mode != "scd2" or c.lower() not in SCD2_COLUMNS]
    try:
        changes = schema_changes(
            incoming.columns, data, merge.on_schema_change, where=f"sequence {seq.name}", keys=merge.keys
        )
    except MergeError as exc:
        raise TargetError(str(exc)) from None
    types = {f.name: f.dataType for f in incoming.schema.fields}
    evolved = current.drop(*changes.dropped)
    for column in changes.added:
        evolved = evolved.withColumn(column, F.lit(None).cast(types[column]))
    return evolved


def _all(columns: list[Column]) -> Column:
    out = columns[0]
    for column in columns[1:]:
        out = out & column
    return out


def merged(seq: SequenceSpec, current: DataFrame | None, incoming: DataFrame, merge: MergeSpec) -> DataFrame:
    """SCD type 1: the clauses of :func:`spark_job.io.lake_merge.merge_statement` as DataFrame operations."""
    from pyspark.sql import functions as F

    deletes = merge.delete_when is not None
    data = [c for c in incoming.columns if c != DELETE_FLAG]
    if current is None:  # created from the incoming rows
        return (incoming.where(F.col(DELETE_FLAG) == 0) if deletes else incoming).select(*[quote(c) for c in data])
    current = _evolved(seq, current, incoming, merge)
    names = by_name(current.columns, data)  # incoming (lower-cased) -> the target's spelling
    src = {c.lower(): c for c in data}
    keys = [names[k.lower()] for k in merge.keys]
    t, s = current.alias("t"), incoming.alias("s")
    on = _all([F.col(f"t.{quote(k)}") == F.col(f"s.{quote(src[k.lower()])}") for k in keys])
    flagged = F.col(f"s.{DELETE_FLAG}") == 1 if deletes else F.lit(False)
    updated = {c.lower() for c in merge.updated_columns([names[c.lower()] for c in data if c.lower() in names])}
    update = (F.expr(merge.condition) if merge.condition else F.lit(True)) if updated else F.lit(False)
    types = {f.name: f.dataType for f in current.schema.fields}

    def taken(c: str) -> Column:
        old = F.col(f"t.{quote(c)}")
        if c.lower() not in updated:
            return old.alias(c)
        return F.when(update, F.col(f"s.{quote(src[c.lower()])}").cast(types[c])).otherwise(old).alias(c)

    matched = t.join(s, on, "inner").where(~flagged).select(*[taken(c) for c in current.columns])
    untouched = t.join(s, on, "left_anti")
    new = s.join(t, on, "left_anti")
    if deletes:
        new = new.where(F.col(DELETE_FLAG) == 0)
    inserted = new.select(
        *[
            F.col(quote(src[c.lower()])).cast(types[c]).alias(c)
            if c.lower() in src
            else F.lit(None).cast(types[c]).alias(c)
            for c in current.columns
        ]
    )
    return untouched.unionByName(matched).unionByName(inserted)


def historised(
    seq: SequenceSpec, current: DataFrame | None, incoming: DataFrame, merge: MergeSpec, now: dt.datetime
) -> DataFrame:
    """SCD type 2: the target's versions with the rows of the run's MERGE laid on them (a source row
    replaces the version of its key starting at its ``valid_from``, or is a new version)."""
    from pyspark.sql import functions as F

    if current is None:
        return scd2_source(incoming, None, merge, now).drop(ACTION)
    current = _evolved(seq, current, incoming, merge)
    names = by_name(current.columns, [c for c in incoming.columns if c != DELETE_FLAG])
    keys = [names[k.lower()] for k in merge.keys]
    src = {c.lower(): c for c in incoming.columns}
    touched = incoming.select(*[F.col(quote(src[k.lower()])).alias(k) for k in keys]).distinct()
    versions = current.join(touched, on=keys, how="left_semi")  # as the run reads them: the keys touched
    source = scd2_source(incoming, versions, merge, now, names).drop(ACTION)
    replaced = source.select(*[quote(k) for k in keys], "valid_from")
    kept = current.join(replaced, on=[*keys, "valid_from"], how="left_anti")
    return kept.unionByName(source, allowMissingColumns=True)
