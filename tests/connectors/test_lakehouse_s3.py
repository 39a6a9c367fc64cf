"""Delta Lake tables on S3 (``s3a://``) through hadoop-aws against moto's S3 server on loopback: Delta's
default S3 log store serialises the commits of one driver only, so every write of such a table holds the
target's lease. Real ``sparkpipe run`` processes with the hadoop-aws and Delta jars of the running Spark;
what a run leaves in the bucket is listed with boto3.

Python 3.9: the matrix cells run it (see ``conftest.py``; one cell has moto).
"""

from __future__ import annotations

import json
from typing import Any

from .conftest import S3Bucket
from .jars import spark_conf
from .runs import kill, run_driver, start_driver, wait_for

# Each row of a write sleeps a second in a task of its own: the holder keeps every lease for minutes.
SLOW = (
    "SELECT CAST(id AS INT) AS id, 'first' AS v, "
    "CAST(length(java_method('java.lang.Thread', 'sleep', 1000L)) AS BIGINT) AS slept FROM range(0, 600, 1, 600)"
)
QUICK = "SELECT CAST(id AS INT) AS id, '{label}' AS v, 0L AS slept FROM range(0, 5)"
# every mode, one path table each, and a catalog table in a warehouse on S3
MODES = {
    "replaced": {"mode": "overwrite"},
    "appended": {"mode": "append"},
    "once": {"mode": "error"},
    "kept": {"mode": "ignore"},
    "merged": {"mode": "merge", "merge_keys": ["id"]},
    "history": {"mode": "scd2", "merge_keys": ["id"], "scd2": {"check_columns": ["v"]}},
}
CATALOG_TABLE = "default.customers"
RULE = [{"name": "no_third", "condition": "v <> 'third'", "on_fail": "fail"}]


def pipeline(lake: S3Bucket, query: str, modes: dict[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A sequence writing each table of ``modes`` in its mode and one writing the catalog table; ``extra``
    keys of a sequence by its name."""
    sequences = [
        {"name": name, "query": query, "target": {"type": "delta", "path": f"{lake.root}/lake/{name}", **mode}}
        for name, mode in modes.items()
    ]
    sequences.append({"name": "customers", "query": query, "target": {"type": "delta", "table": CATALOG_TABLE}})
    sequences = [{**sequence, **extra.get(sequence["name"], {})} for sequence in sequences]
    return {
        "app_name": "lake-s3-lease",
        "spark_conf": {
            **lake.spark_conf(),
            **spark_conf("s3", "delta"),
            "spark.sql.warehouse.dir": f"{lake.root}/warehouse",
            "spark.sql.shuffle.partitions": "2",
        },
        "max_parallel": len(sequences),
        "sequences": sequences,
    }


def claims(lake: S3Bucket) -> list[str]:
    return [key for key in lake.list_keys() if ".sparkpipe-lease." in key]


def leftovers(lake: S3Bucket) -> list[str]:
    """Keys beside the tables: anything sparkpipe keeps while writing, or outside the tables' folders."""
    tables = (*(f"lake/{name}/" for name in MODES), "warehouse/customers/")
    return [
        key
        for key in lake.list_keys()
        if "sparkpipe-" in key or not (key.startswith(tables) or key in ("lake/", "warehouse/"))
    ]


def last_commit(lake: S3Bucket, name: str) -> dict[str, Any]:
    """The commit information of a Delta table's latest version, read from its log."""
    log = [k for k in lake.list_keys(f"lake/{name}/_delta_log/") if k.endswith(".json")]
    lines = lake.read(max(log)).decode().splitlines()
    return next(json.loads(line)["commitInfo"] for line in lines if '"commitInfo"' in line)


def test_one_run_at_a_time_writes_a_delta_table_on_s3a_in_every_mode(s3: S3Bucket, tmp_path: Any) -> None:
    holder = start_driver(tmp_path, pipeline(s3, SLOW, MODES), env={"SPARKPIPE_RUN_KEY": "backfill-01"})
    try:
        log = tmp_path / "driver.log"
        # every sequence of the holder has its table's lease: a claim beside each of the seven tables
        held = [f"lake/.{name}.sparkpipe-lease." for name in MODES] + ["warehouse/.customers.sparkpipe-lease."]

        def leased() -> bool:
            keys = claims(s3)
            return all(any(key.startswith(prefix) for key in keys) for prefix in held)

        wait_for(holder, leased, "every lease taken", log)

        # A second run writes the same tables in other modes (each mode takes the lease, whatever the
        # table holds): every sequence fails naming the first run, before writing anything.
        names = list(MODES)
        rotated = {name: MODES[names[(i + 1) % len(names)]] for i, name in enumerate(names)}
        second = run_driver(
            tmp_path, pipeline(s3, QUICK.format(label="second"), rotated), env={"SPARKPIPE_RUN_KEY": "backfill-02"}
        )
        assert second.returncode == 1, second.stderr[-5000:]
        for name in [*MODES, "customers"]:
            error = second.metrics["sequences"][name]["error"]  # type: ignore[index]
            assert "is being written by run 'backfill-01'" in error and f"pid {holder.pid}" in error, (name, error)
        assert "Delta table s3a://" in second.metrics["sequences"]["replaced"]["error"]  # type: ignore[index]
        assert f"Delta table {CATALOG_TABLE} (s3a://" in second.metrics["sequences"]["customers"]["error"]  # type: ignore[index]
        assert not [k for k in s3.list_keys("lake/") if "/_delta_log/" in k and k.endswith(".json")]
    finally:
        kill(holder)  # mid-write: its claims stay, stale now that its process is gone

    # A clean rerun takes over the stale claims and writes every table; a failing rule rolls its write
    # back (the table it created is dropped) and releases the lease all the same: nothing is left beside.
    rerun = run_driver(
        tmp_path,
        pipeline(s3, QUICK.format(label="third"), MODES, replaced={"expectations": RULE}),
        env={"SPARKPIPE_RUN_KEY": "backfill-03"},
    )
    statuses = {name: rerun.status(name) for name in [*MODES, "customers"]}
    assert statuses == {**dict.fromkeys(statuses, "succeeded"), "replaced": "failed"}, rerun.stderr[-5000:]
    assert "no_third" in rerun.metrics["sequences"]["replaced"]["error"]  # type: ignore[index]
    assert not s3.list_keys("lake/replaced/")  # created by the write, dropped by its rollback
    assert {name: last_commit(s3, name)["operation"] for name in ("appended", "merged", "history")} == {
        "appended": "WRITE",
        "merged": "WRITE",
        "history": "WRITE",
    }
    assert leftovers(s3) == []
