"""The keys of the write modes that update a target in place: ``merge`` (upsert, SCD type 1) and ``scd2``
(history), shared by every writer that supports them (Delta, Iceberg, JDBC), and their checks.

A writer supporting them declares ``modes = SAVE_MODES + MERGE_MODES``, adds :data:`MERGE_FIELDS` to its
``fields`` and calls :func:`check_merge` from its ``check``; :meth:`MergeSpec.of` gives the writer the
typed settings of its spec. Nothing here imports pyspark.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from spark_job.config.fields import Field, describe_value

MERGE_MODES = ("merge", "scd2")
SCHEMA_CHANGE_POLICIES = ("fail", "append_new_columns", "sync")
SCD2_COLUMNS = ("valid_from", "valid_to", "is_current")
"""The columns an ``scd2`` target adds to the incoming rows' columns."""


def _deduplicate_rule(value: Any) -> str | None:
    unknown = sorted(set(value) - {"latest_by"})
    if unknown:
        return f"unknown key {unknown[0]!r}: the only key is latest_by (the column whose highest value wins per key)"
    latest = value.get("latest_by")
    if not isinstance(latest, str) or not latest.strip():
        return f"latest_by must be a column name, got {describe_value(latest)}"
    return None


def _scd2_rule(value: Any) -> str | None:
    unknown = sorted(set(value) - {"updated_at", "check_columns"})
    if unknown:
        return f"unknown key {unknown[0]!r}: give updated_at (a column) or check_columns (a list of columns)"
    has_time, has_check = "updated_at" in value, "check_columns" in value
    if has_time == has_check:
        return (
            "give exactly one of updated_at (the column saying when a row changed) "
            "or check_columns (the columns compared)"
        )
    if has_time and (not isinstance(value["updated_at"], str) or not value["updated_at"].strip()):
        return f"updated_at must be a column name, got {describe_value(value['updated_at'])}"
    if has_check:
        cols = value["check_columns"]
        cols = [cols] if isinstance(cols, str) else cols
        if not isinstance(cols, list) or not cols or not all(isinstance(c, str) and c.strip() for c in cols):
            got = describe_value(value["check_columns"])
            return f"check_columns must be a non-empty list of column names, got {got}"
    return None


MERGE_FIELDS: dict[str, Field] = {
    "merge_keys": Field("str_list", doc="with mode merge or scd2: the columns identifying a row (matched by name)"),
    "merge_update_columns": Field("str_list", doc="with mode merge: only these columns change on a matched row"),
    "merge_exclude_columns": Field("str_list", doc="with mode merge: these columns never change on a matched row"),
    "merge_condition": Field(
        "str",
        sql="spark",
        doc="with mode merge: an extra condition for updating a matched row, over t (target) and s (incoming), "
        "e.g. t.updated_at < s.updated_at",
    ),
    "delete_when": Field(
        "str",
        sql="spark",
        doc="with mode merge or scd2: a boolean SQL over the incoming row; a matched row for which it holds is "
        "deleted (merge) or its current version closed (scd2), e.g. op = 'D'",
    ),
    "deduplicate": Field(
        "object",
        doc="{latest_by: <column>}: among incoming rows with the same keys, the one with the highest value wins "
        "(without it, duplicate keys are an error)",
        rule=_deduplicate_rule,
    ),
    "on_schema_change": Field(
        "str",
        choices=SCHEMA_CHANGE_POLICIES,
        doc="with mode merge or scd2: incoming columns the target lacks or target columns the rows lack: fail "
        "(default), append_new_columns, sync (add new ones, drop missing ones)",
    ),
    "scd2": Field(
        "object",
        doc="with mode scd2: {updated_at: <column>} or {check_columns: [<column>, ...]}: how a change is detected",
        rule=_scd2_rule,
    ),
}

_MERGE_ONLY = ("merge_update_columns", "merge_exclude_columns", "merge_condition")


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True)
class MergeSpec:
    """The typed settings of a ``merge`` or ``scd2`` target.

    Attributes:
        mode: ``merge`` or ``scd2``.
        keys: the columns identifying a row.
        update_columns: with ``merge``, only these change on a matched row (empty: all but the keys and
            ``exclude_columns``).
        exclude_columns: with ``merge``, these never change on a matched row.
        condition: with ``merge``, an extra predicate over ``t`` (target) and ``s`` (incoming) for updating.
        delete_when: a predicate over the incoming row: delete (merge) or close (scd2) the matched row.
        latest_by: among incoming rows with the same keys the one with the highest value of this column wins
            (None: duplicate keys are an error).
        on_schema_change: ``fail``, ``append_new_columns`` or ``sync``.
        updated_at: with ``scd2``, the column saying when a row changed (versions are ordered by it).
        check_columns: with ``scd2``, the columns compared to detect a change (when ``updated_at`` is None).
    """

    mode: str
    keys: tuple[str, ...]
    update_columns: tuple[str, ...] = ()
    exclude_columns: tuple[str, ...] = ()
    condition: str | None = None
    delete_when: str | None = None
    latest_by: str | None = None
    on_schema_change: str = "fail"
    updated_at: str | None = None
    check_columns: tuple[str, ...] = ()

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> MergeSpec | None:
        """The merge settings of a validated target spec; None when its mode is not ``merge`` or ``scd2``."""
        mode = spec.get("mode", "overwrite")
        if mode not in MERGE_MODES:
            return None
        scd2 = spec.get("scd2") or {}
        return cls(
            mode=str(mode),
            keys=_names(spec.get("merge_keys")),
            update_columns=_names(spec.get("merge_update_columns")),
            exclude_columns=_names(spec.get("merge_exclude_columns")),
            condition=spec.get("merge_condition"),
            delete_when=spec.get("delete_when"),
            latest_by=(spec.get("deduplicate") or {}).get("latest_by"),
            on_schema_change=str(spec.get("on_schema_change", "fail")),
            updated_at=scd2.get("updated_at"),
            check_columns=_names(scd2.get("check_columns")),
        )

    def updated_columns(self, columns: Sequence[str]) -> list[str]:
        """Which of the incoming ``columns`` a matched row takes (never the keys), by name."""
        keys = {k.lower() for k in self.keys}
        if self.update_columns:
            wanted = {c.lower() for c in self.update_columns}
            return [c for c in columns if c.lower() in wanted and c.lower() not in keys]
        excluded = {c.lower() for c in self.exclude_columns}
        return [c for c in columns if c.lower() not in keys and c.lower() not in excluded]


def check_merge(spec: Mapping[str, Any], report: Callable[[str, str], None]) -> None:
    """Checks across the merge keys of a target spec (their types are already checked)."""
    mode = spec.get("mode", "overwrite")
    if mode not in MERGE_MODES:
        for key in (*_MERGE_ONLY, "merge_keys", "delete_when", "deduplicate", "on_schema_change", "scd2"):
            if key in spec:
                report(key, f"applies to mode merge or scd2 only (this target's mode is {mode!r})")
        return
    keys = _names(spec.get("merge_keys"))
    if not keys:
        report("merge_keys", f"mode {mode} needs merge_keys: the columns identifying a row, e.g. [order_id]")
    if len({k.lower() for k in keys}) != len(keys):
        report("merge_keys", "names a column twice")
    if "merge_update_columns" in spec and "merge_exclude_columns" in spec:
        report("merge_exclude_columns", "give either merge_update_columns or merge_exclude_columns, not both")
    lowered = {k.lower() for k in keys}
    for key in ("merge_update_columns", "merge_exclude_columns"):
        overlap = [c for c in _names(spec.get(key)) if c.lower() in lowered]
        if overlap:
            report(key, f"names the merge key {overlap[0]!r}: keys never change on a matched row")
    if mode == "scd2":
        if "scd2" not in spec:
            report("scd2", "mode scd2 needs scd2: {updated_at: <column>} or {check_columns: [<column>, ...]}")
        for key in _MERGE_ONLY:
            if key in spec:
                report(key, "applies to mode merge only: with scd2 every changed column opens a new version")
    elif "scd2" in spec:
        report("scd2", "applies to mode scd2 only")
    if spec.get("partition_by") and spec.get("dynamic_partition_overwrite"):
        report("dynamic_partition_overwrite", f"applies to mode overwrite only, not {mode}")
