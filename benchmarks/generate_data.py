"""Generate the deterministic benchmark data set (``events`` and ``users``) as parquet, and the same rows as
CSV under ``csv/`` (``csv/events``, ``csv/users``: no header, the columns of ``CSV_SCHEMAS``).

Rows come from ``spark.range`` and pure functions of the row id (``xxhash64`` / ``pmod``), so the
same ``--events`` / ``--users`` always produce the same data, on any machine, without shuffles.

    python benchmarks/generate_data.py --out /tmp/sparkpipe-bench/data --events 20000000 --users 1000000

A ``manifest.json`` next to the two tables records the row counts; when it matches the request and
both tables are complete, generation is skipped (``--force`` regenerates).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
MANIFEST_VERSION = 2  # 2: the CSV copies
CSV_SCHEMAS = {
    "events": "event_id BIGINT, user_id BIGINT, event_type STRING, amount DOUBLE, event_ts TIMESTAMP, event_date DATE",
    "users": "user_id BIGINT, country STRING, signup_date DATE, segment STRING",
}
"""The CSV copies' columns, as the configs and programs reading them declare them."""
DEFAULT_EVENTS = 20_000_000
DEFAULT_USERS = 1_000_000

EVENT_TYPES = ["view", "click", "add_to_cart", "purchase", "search", "login", "logout", "share"]
COUNTRIES = [
    "US", "GB", "DE", "FR", "ES", "IT", "NL", "SE", "PL", "BR",
    "MX", "CA", "IN", "JP", "KR", "AU", "ZA", "NG", "EG", "AR",
]  # fmt: skip
SEGMENTS = ["consumer", "consumer", "consumer", "smb", "smb", "enterprise", "student", "student"]
START_DATE = "2024-01-01"
DAYS = 30


def _sql_array(values: list[str]) -> str:
    return "array(" + ", ".join(f"'{v}'" for v in values) + ")"


def _pick(values: list[str], seed: int) -> str:
    """SQL expression choosing one of ``values`` deterministically from ``id``."""
    return f"element_at({_sql_array(values)}, cast(pmod(xxhash64(id, {seed}), {len(values)}) AS INT) + 1)"


def events_exprs(n_users: int) -> list[str]:
    """Column expressions (over ``spark.range``'s ``id``) of the ``events`` table."""
    return [
        "id AS event_id",
        f"pmod(xxhash64(id, 1), {n_users}) AS user_id",
        f"{_pick(EVENT_TYPES, 2)} AS event_type",
        "round(cast(pmod(xxhash64(id, 3), 100000) AS DOUBLE) / 100.0, 2) AS amount",
        # seconds since START_DATE (UTC) within DAYS days
        f"timestamp_seconds(unix_timestamp(timestamp'{START_DATE} 00:00:00')"
        f" + pmod(xxhash64(id, 4), {DAYS * 86400})) AS event_ts",
    ]


def users_exprs() -> list[str]:
    """Column expressions (over ``spark.range``'s ``id``) of the ``users`` table."""
    return [
        "id AS user_id",
        f"{_pick(COUNTRIES, 11)} AS country",
        "date_add(date'2020-01-01', cast(pmod(xxhash64(id, 12), 1460) AS INT)) AS signup_date",
        f"{_pick(SEGMENTS, 13)} AS segment",
    ]


def _read_manifest(out: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_up_to_date(out: Path, events: int, users: int) -> bool:
    """True when ``out`` already holds complete tables with the requested row counts."""
    manifest = _read_manifest(out)
    if manifest is None:
        return False
    expected = {"version": MANIFEST_VERSION, "events": events, "users": users}
    if any(manifest.get(k) != v for k, v in expected.items()):
        return False
    return all((out / table / "_SUCCESS").is_file() for table in ("events", "users"))


def generate(out: Path, events: int, users: int, master: str, files: int | None) -> dict[str, Any]:
    """Write ``events`` and ``users`` under ``out``; return the manifest written."""
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(master)
        .appName("sparkpipe-bench-generate")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    try:
        (out / MANIFEST).unlink(missing_ok=True)
        # ~1.25M events per file: enough files to keep both cores busy when reading back.
        n_event_files = files or max(2, min(64, events // 1_250_000))
        n_user_files = max(1, min(8, users // 250_000))

        t0 = time.perf_counter()
        ev = spark.range(0, events, 1, n_event_files).selectExpr(*events_exprs(users))
        ev = ev.selectExpr("*", "to_date(event_ts) AS event_date")
        ev.write.mode("overwrite").parquet(str(out / "events"))
        t_events = time.perf_counter() - t0

        t0 = time.perf_counter()
        us = spark.range(0, users, 1, n_user_files).selectExpr(*users_exprs())
        us.write.mode("overwrite").parquet(str(out / "users"))
        t_users = time.perf_counter() - t0

        t0 = time.perf_counter()
        for table in ("events", "users"):
            written = spark.read.parquet(str(out / table))
            assert (
                ", ".join(f"{f.name} {f.dataType.simpleString().upper()}" for f in written.schema) == CSV_SCHEMAS[table]
            ), written.schema
            written.write.mode("overwrite").csv(str(out / "csv" / table))
        t_csv = time.perf_counter() - t0

        counted = {
            "events": spark.read.parquet(str(out / "events")).count(),
            "users": spark.read.parquet(str(out / "users")).count(),
        }
        if counted != {"events": events, "users": users}:
            raise RuntimeError(f"row counts read back {counted} != requested {events=} {users=}")
    finally:
        spark.stop()

    manifest = {
        "version": MANIFEST_VERSION,
        "events": events,
        "users": users,
        "event_files": n_event_files,
        "user_files": n_user_files,
        "seconds": {"events": round(t_events, 1), "users": round(t_users, 1), "csv": round(t_csv, 1)},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/sparkpipe-bench/data"), help="output directory")
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="rows of events (default 20M)")
    parser.add_argument("--users", type=int, default=DEFAULT_USERS, help="rows of users (default 1M)")
    parser.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    parser.add_argument("--files", type=int, default=None, help="number of events files (default ~1.25M rows each)")
    parser.add_argument("--force", action="store_true", help="regenerate even if the data is up to date")
    args = parser.parse_args(argv)
    if args.events < 1 or args.users < 1:
        parser.error("--events and --users must be positive")

    out: Path = args.out.resolve()
    if not args.force and is_up_to_date(out, args.events, args.users):
        print(f"data up to date in {out} (events={args.events}, users={args.users}); skipping")
        return 0
    for table in ("events", "users", "csv"):
        shutil.rmtree(out / table, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    manifest = generate(out, args.events, args.users, args.master, args.files)
    print(f"wrote {out}: {json.dumps(manifest)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
