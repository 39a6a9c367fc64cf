"""Making a driver JVM's class-data archive (``python -m spark_job.engine.class_data_maker make``): the
detached maker a run starts when it found no archive (``spark_job.engine.class_data``), the training
pipeline it runs under ``-XX:ArchiveClassesAtExit``, and the cache's eviction."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from spark_job.engine.class_data import (
    QUIET,
    SWITCH_ENV,
    TRAINING_TIMEOUT_S,
    WAIT_FOR_RUN_S,
    _with_driver_path,
    is_archive,
    max_bytes,
)


def training_pipeline(folder: Path) -> Path:
    """A small pipeline over data it writes into ``folder``, loading the classes a typical run loads:
    CSV and JSON sources, a schema, joins, aggregations, a window, data-quality rules, a sequence read by
    another, parquet (partitioned), JSON and CSV targets, the metrics written through Hadoop's FileSystem."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    kinds = ("view", "click", "purchase", "refund")
    with open(data / "events.csv", "w", encoding="utf-8") as fh:
        fh.write("event_id,user_id,event_type,amount,event_date\n")
        for i in range(400):
            fh.write(f"{i},{i % 37},{kinds[i % 4]},{(i * 7919) % 1000 / 10},2024-01-0{1 + i % 5}\n")
    with open(data / "users.json", "w", encoding="utf-8") as fh:
        for u in range(37):
            fh.write(json.dumps({"user_id": u, "country": f"C{u % 6}", "signup": f"2023-0{1 + u % 9}-15"}) + "\n")
    out = folder / "out"
    config = {
        "app_name": "sparkpipe_class_data",
        "spark_conf": {"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false"},
        "sources": {
            "events": {
                "type": "file",
                "format": "csv",
                "path": str(data / "events.csv"),
                "alias": "events",
                "options": {"header": True},
                "schema": "event_id BIGINT, user_id BIGINT, event_type STRING, amount DOUBLE, event_date DATE",
            },
            "users": {"type": "file", "format": "json", "path": str(data / "users.json"), "alias": "users"},
        },
        "sequences": [
            {
                "name": "daily",
                "query": "SELECT event_date, event_type, count(*) AS events, sum(amount) AS amount "
                "FROM events GROUP BY event_date, event_type",
                "target": {"type": "parquet", "path": str(out / "daily"), "partition_by": ["event_date"]},
                "expectations": [{"name": "positive", "condition": "events > 0", "on_fail": "fail"}],
            },
            {
                "name": "by_country",
                "query": "SELECT u.country, count(*) AS purchases, sum(e.amount) AS revenue FROM events e "
                "JOIN users u ON e.user_id = u.user_id WHERE e.event_type = 'purchase' GROUP BY u.country",
                "target": {"type": "parquet", "path": str(out / "by_country")},
                "min_rows": 1,
            },
            {
                "name": "ranked",
                "query": "SELECT country, revenue, rank() OVER (ORDER BY revenue DESC) AS position, "
                "round(revenue / sum(revenue) OVER (), 4) AS share FROM by_country",
                "target": {"type": "json", "path": str(out / "ranked"), "coalesce": 1},
            },
            {
                "name": "users_out",
                "query": "SELECT user_id, country, CAST(signup AS DATE) AS signup FROM users WHERE user_id % 2 = 0",
                "target": {"type": "csv", "path": str(out / "users"), "options": {"header": True}},
                "expectations": [{"name": "has_country", "condition": "country IS NOT NULL", "on_fail": "drop"}],
            },
        ],
    }
    path = folder / "pipeline.json"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def make_archive(
    spark_home: str | Path,
    out: str | Path,
    env: Mapping[str, str] | None = None,
    extra_class_path: str = "",
    conf: Mapping[str, str] | None = None,
    timeout_s: float = TRAINING_TIMEOUT_S,
) -> str | None:
    """Make an archive at ``out`` by running the training pipeline through ``spark_home``'s ``spark-submit``
    (local master) under ``env`` with ``-XX:ArchiveClassesAtExit``; None when done, else why not.

    ``out`` is written whole or not at all (a temporary name in its folder, then a rename)."""
    from spark_job.bundle import ENTRY_SOURCE

    spark_home, out = Path(spark_home), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(f".{out.name}.{os.getpid()}.part")
    with tempfile.TemporaryDirectory(prefix="sparkpipe-class-data-") as tmp:
        folder = Path(tmp)
        config = training_pipeline(folder)
        main = folder / "sparkpipe_main.py"
        main.write_text(ENTRY_SOURCE, encoding="utf-8")
        run_env = _with_driver_path(dict(os.environ if env is None else env))
        run_env[SWITCH_ENV] = "off"
        run_env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        run_env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)  # one that imports spark_job
        command = [str(spark_home / "bin" / "spark-submit"), "--master", "local[1]"]
        settings = dict(conf or {})
        if extra_class_path:
            settings["spark.driver.extraClassPath"] = extra_class_path
        for key, value in settings.items():
            command += ["--conf", f"{key}={value}"]
        command += ["--driver-java-options", " ".join([*QUIET, f"-XX:ArchiveClassesAtExit={part}"])]
        command += [str(main), "run", "--config", str(config), "--metrics-out", (folder / "metrics.json").as_uri()]
        try:
            done = subprocess.run(
                command, cwd=tmp, env=run_env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            with contextlib.suppress(OSError):
                part.unlink()
            return f"the training run did not finish: {exc}"
        # The JVM writes the archive's header last: a file with it is whole, whatever the pipeline's
        # exit code (a failed sequence still loaded most classes; a failed dump makes no header).
        if not is_archive(part):
            with contextlib.suppress(OSError):
                part.unlink()
            output = (done.stdout + done.stderr).decode("utf-8", errors="replace")
            return f"the training run exited with code {done.returncode} and no archive:\n{output[-4000:]}"
    os.chmod(part, 0o644)
    os.replace(part, out)
    return None


def evict(folder: Path, limit: int, keep: Path | None = None) -> list[Path]:
    """Remove the archives used least recently until those left take at most ``limit`` bytes; the removed."""
    archives = []
    for path in folder.glob("*.jsa"):
        with contextlib.suppress(OSError):
            st = path.stat()
            archives.append((st.st_mtime, st.st_size, path))
    archives.sort(key=lambda a: (a[2] == keep, a[0]))  # oldest first, the new one last
    total = sum(size for _, size, _ in archives)
    removed = []
    for _, size, path in archives:
        if total <= limit:
            break
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
            total -= size
    now = time.time()
    for part in folder.glob("*.part"):  # left by makers that were killed
        with contextlib.suppress(OSError):
            if now - part.stat().st_mtime > 86400:
                part.unlink()
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie no one reaped yet has exited
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _make(args: argparse.Namespace) -> int:
    """The detached maker: wait for the run's JVM, make the archive, record a failure, keep the cache small."""
    folder, key = Path(args.cache), args.key
    if args.wait_for_pid:
        deadline = time.monotonic() + WAIT_FOR_RUN_S
        while _alive(args.wait_for_pid) and time.monotonic() < deadline:
            time.sleep(0.5)
    with contextlib.suppress(OSError):
        os.nice(10)  # after the run, and behind whatever runs next
    made = folder / f"{key}.made"
    for stale in [made, *folder.glob(f".{made.name}.*.part")]:  # ours alone: this process holds the lock
        with contextlib.suppress(OSError):
            stale.unlink()
    why = make_archive(args.spark_home, made, os.environ, args.extra_class_path or "")
    failed = folder / f"{key}.failed"
    if why is not None:
        failed.write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {why}\n", encoding="utf-8")
        return 1
    final = folder / f"{key}-{made.stat().st_size}.jsa"
    os.replace(made, final)
    with contextlib.suppress(OSError):
        failed.unlink()
    evict(folder, max_bytes(), keep=final)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_job.engine.class_data_maker")
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make", help="make one cache entry (started by a run that found none)")
    make.add_argument("--cache", required=True)
    make.add_argument("--key", required=True)
    make.add_argument("--spark-home", required=True)
    make.add_argument("--extra-class-path", default="")
    make.add_argument("--lock-fd", type=int)
    make.add_argument("--wait-for-pid", type=int)
    args = parser.parse_args(argv)
    return _make(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
