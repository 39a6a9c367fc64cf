"""The keys of the merge and scd2 modes (spark_job.config.merge): typed settings and the checks across keys."""

from __future__ import annotations

from typing import Any

import pytest

from spark_job.config.fields import Field
from spark_job.config.merge import MERGE_FIELDS, MergeSpec, check_merge


def problems(spec: dict[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for key, value in spec.items():
        if key in MERGE_FIELDS and (why := MERGE_FIELDS[key].check(value)):
            found.append((key, why))
    check_merge(spec, lambda key, message: found.append((key, message)))
    return found


def test_a_merge_spec_is_typed_from_its_target() -> None:
    spec = MergeSpec.of(
        {
            "mode": "merge",
            "merge_keys": "order_id",
            "merge_exclude_columns": ["created_at"],
            "merge_condition": "t.updated_at < s.updated_at",
            "delete_when": "op = 'D'",
            "deduplicate": {"latest_by": "updated_at"},
            "on_schema_change": "append_new_columns",
        }
    )
    assert spec == MergeSpec(
        mode="merge",
        keys=("order_id",),
        exclude_columns=("created_at",),
        condition="t.updated_at < s.updated_at",
        delete_when="op = 'D'",
        latest_by="updated_at",
        on_schema_change="append_new_columns",
    )
    assert spec.updated_columns(["Order_ID", "status", "CREATED_AT", "amount"]) == ["status", "amount"]
    assert MergeSpec.of({"mode": "overwrite"}) is None
    scd2 = MergeSpec.of({"mode": "scd2", "merge_keys": ["id"], "scd2": {"check_columns": "address"}})
    assert scd2 is not None and scd2.check_columns == ("address",) and scd2.updated_at is None


def test_only_update_columns_change_and_never_the_keys() -> None:
    spec = MergeSpec.of({"mode": "merge", "merge_keys": ["id"], "merge_update_columns": ["status"]})
    assert spec is not None and spec.updated_columns(["id", "status", "amount"]) == ["status"]


def test_a_valid_merge_and_scd2_have_no_problems() -> None:
    assert problems({"mode": "merge", "merge_keys": ["id"]}) == []
    assert problems({"mode": "scd2", "merge_keys": ["id"], "scd2": {"updated_at": "changed_at"}}) == []


@pytest.mark.parametrize(
    ("spec", "key", "words"),
    [
        ({"mode": "merge"}, "merge_keys", "needs merge_keys"),
        ({"mode": "merge", "merge_keys": ["id", "ID"]}, "merge_keys", "twice"),
        (
            {"mode": "merge", "merge_keys": "id", "merge_update_columns": "a", "merge_exclude_columns": "b"},
            "merge_exclude_columns",
            "not both",
        ),
        ({"mode": "merge", "merge_keys": "id", "merge_update_columns": ["ID"]}, "merge_update_columns", "merge key"),
        ({"mode": "overwrite", "merge_keys": "id"}, "merge_keys", "mode merge or scd2 only"),
        ({"mode": "append", "delete_when": "op = 'D'"}, "delete_when", "mode merge or scd2 only"),
        ({"mode": "scd2", "merge_keys": "id"}, "scd2", "needs scd2"),
        ({"mode": "scd2", "merge_keys": "id", "scd2": {}}, "scd2", "exactly one"),
        (
            {"mode": "scd2", "merge_keys": "id", "scd2": {"updated_at": "a", "check_columns": ["b"]}},
            "scd2",
            "exactly one",
        ),
        ({"mode": "scd2", "merge_keys": "id", "scd2": {"check_columns": []}}, "scd2", "non-empty list"),
        ({"mode": "scd2", "merge_keys": "id", "scd2": {"valid_from": "x"}}, "scd2", "unknown key 'valid_from'"),
        (
            {"mode": "scd2", "merge_keys": "id", "scd2": {"updated_at": "t"}, "merge_condition": "true"},
            "merge_condition",
            "mode merge only",
        ),
        ({"mode": "merge", "merge_keys": "id", "scd2": {"updated_at": "t"}}, "scd2", "mode scd2 only"),
        ({"mode": "merge", "merge_keys": "id", "deduplicate": {"latest": "t"}}, "deduplicate", "latest_by"),
        ({"mode": "merge", "merge_keys": "id", "deduplicate": {"latest_by": 3}}, "deduplicate", "column name"),
        ({"mode": "merge", "merge_keys": "id", "deduplicate": "t"}, "deduplicate", "must be a mapping"),
        ({"mode": "merge", "merge_keys": "id", "on_schema_change": "ignore"}, "on_schema_change", "not one of"),
    ],
)
def test_a_wrong_merge_setting_names_its_key(spec: dict[str, Any], key: str, words: str) -> None:
    found = problems(spec)
    assert any(k == key and words in message for k, message in found), found


def test_a_mode_a_target_type_lacks_says_which_types_merge() -> None:
    from spark_job.io.base import COMMON_TARGET_FIELDS

    mode: Field = COMMON_TARGET_FIELDS["mode"]
    assert mode.check("merge") == (
        "'merge' is not one of overwrite, append, error, ignore "
        "(merge and scd2 are modes of the delta, iceberg and jdbc targets)"
    )
    assert Field("object").json_schema() == {"type": "object"}
