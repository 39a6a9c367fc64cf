"""The driver JVM's class-data archive (``spark_job.engine.class_data``): made once per JDK, Spark build and
class path by a maker in the background, used by the next runs, never in the way.

The test harness starts its own JVMs with an archive of its own (``tests/spark_jvm.py``); the runs here
get an environment without it and a cache folder of their own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spark_job.engine import class_data, class_data_maker
from spark_job.engine.class_data import DIR_ENV, MAX_MB_ENV, SWITCH_ENV
from spark_job.markers import METRICS_MARKER

from .support import REPO, spark_home

CDS_NOTICE = re.compile(r"archive|class paths? mismatch", re.IGNORECASE)
"""What the JVM says about a class-data archive it cannot use."""

SHARED_TOP = "source: shared objects file (top)"
"""How ``-Xlog:class+load`` names a class mapped from a dynamic archive."""


def run_env(cache: Path, **extra: str) -> dict[str, str]:
    """This process's environment without the harness's archive, with ``cache`` as the archive cache."""
    env = dict(os.environ)
    kept = [o for o in env.get("SPARK_SUBMIT_OPTS", "").split() if not class_data.names_an_archive(o)]
    env["SPARK_SUBMIT_OPTS"] = " ".join(o for o in kept if not o.startswith("-Xlog:"))
    env[DIR_ENV] = str(cache)
    env.pop(SWITCH_ENV, None)
    env.update(extra)
    return env


def write_config(folder: Path, class_log: Path | None = None) -> Path:
    """A small pipeline over the example data; ``class_log`` receives the driver JVM's class loading."""
    spark_conf = {"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false"}
    if class_log is not None:
        spark_conf["spark.driver.extraJavaOptions"] = f"-Xlog:class+load=info:file={class_log}"
    config = {
        "app_name": "class_data_test",
        "spark_conf": spark_conf,
        "sources": {
            "events": {
                "type": "file",
                "format": "csv",
                "path": str(REPO / "examples" / "data" / "events.csv"),
                "alias": "events",
                "options": {"header": True, "inferSchema": True},
            }
        },
        "sequences": [
            {
                "name": "counts",
                "query": "SELECT event_type, count(*) AS n FROM events GROUP BY event_type",
                "target": {"type": "parquet", "path": str(folder / "out" / "counts")},
            }
        ],
    }
    path = folder / "pipeline.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def sparkpipe_run(config: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "spark_job", "run", "--config", str(config), "--master", "local[1]", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finished(proc: subprocess.Popen[str]) -> dict:
    out, _ = proc.communicate()
    assert proc.returncode == 0, out[-4000:]
    (line,) = [line for line in out.splitlines() if line.startswith(METRICS_MARKER)]
    return json.loads(line[len(METRICS_MARKER) :])


def shared_classes(class_log: Path) -> int:
    return sum(SHARED_TOP in line for line in class_log.read_text(errors="replace").splitlines())


@pytest.fixture(scope="module")
def first_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """Two first runs at once on an empty cache, then the maker one of them started: (cache, metrics)."""
    cache = tmp_path_factory.mktemp("class-data-cache")
    runs = [sparkpipe_run(write_config(tmp_path_factory.mktemp("run")), run_env(cache)) for _ in range(2)]
    metrics = [finished(proc) for proc in runs]
    class_data.wait_until_made(spark_home(), run_env(cache))
    return cache, metrics


def test_two_first_runs_at_once_both_succeed_and_one_archive_is_made(first_runs: tuple[Path, list[dict]]) -> None:
    cache, metrics = first_runs
    assert [m["status"] for m in metrics] == ["succeeded", "succeeded"]
    archives = sorted(cache.glob("*.jsa"))
    assert len(archives) == 1, sorted(p.name for p in cache.iterdir())
    assert not list(cache.glob("*.failed")) and not list(cache.glob("*.part")) and not list(cache.glob("*.made"))
    key = class_data.archive_key(spark_home(), run_env(cache))
    assert archives[0].name == f"{key}-{archives[0].stat().st_size}.jsa"
    assert class_data.is_archive(archives[0], archives[0].stat().st_size)
    # What start-up took is in the metrics: from the process's start to the first sequence's.
    assert all(isinstance(m["startup_s"], float) and m["startup_s"] > 0 for m in metrics)


def test_the_next_run_maps_the_archive_and_starts_no_maker(first_runs: tuple[Path, list[dict]], tmp_path: Path) -> None:
    cache, _ = first_runs
    (archive,) = cache.glob("*.jsa")
    used_before = archive.stat().st_mtime
    class_log = tmp_path / "classes.log"
    proc = sparkpipe_run(write_config(tmp_path, class_log), run_env(cache))
    metrics = finished(proc)
    assert metrics["status"] == "succeeded" and metrics["startup_s"] > 0
    # The JVM reports thousands of classes mapped from the archive (Spark's, Scala's, Hadoop's, ...).
    assert shared_classes(class_log) > 2000
    assert re.search(r"org\.apache\.spark\.SparkContext " + re.escape(SHARED_TOP), class_log.read_text())
    assert archive.stat().st_mtime >= used_before  # its last use, for eviction
    assert sorted(cache.glob("*.jsa")) == [archive]
    plan = class_data.for_driver(spark_home(), run_env(cache))
    assert plan.options == [*class_data.QUIET, f"-XX:SharedArchiveFile={archive}"]


def test_the_switch_turns_it_off(first_runs: tuple[Path, list[dict]], tmp_path: Path) -> None:
    cache, _ = first_runs
    class_log = tmp_path / "classes.log"
    finished(sparkpipe_run(write_config(tmp_path, class_log), run_env(cache), "--no-class-data"))
    assert shared_classes(class_log) == 0
    off = class_data.for_driver(spark_home(), run_env(cache, **{SWITCH_ENV: "off"}))
    assert (off.options, off.archive, off._lock_fd) == ([], None, None)


def test_a_mismatched_archive_is_ignored_by_the_jvm_without_a_word(
    first_runs: tuple[Path, list[dict]], tmp_path: Path
) -> None:
    """An archive for another class path: the JVM starts as it would have and says nothing about it."""
    cache, _ = first_runs
    (archive,) = cache.glob("*.jsa")
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "spark-defaults.conf").write_text("spark.ui.enabled false\n")  # a folder with files, first
    env = {**run_env(cache), "SPARK_CONF_DIR": str(conf)}
    assert class_data.archive_key(spark_home(), env) is None  # sparkpipe would not use one here
    class_log = tmp_path / "classes.log"
    options = " ".join([*class_data.use_options(archive), f"-Xlog:class+load=info:file={class_log}"])
    done = subprocess.run(
        [str(spark_home() / "bin" / "spark-submit"), "--driver-java-options", options, "--version"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "version" in done.stderr
    assert not [
        line for line in done.stderr.splitlines() if "[warning]" in line or "[error]" in line or CDS_NOTICE.search(line)
    ]
    assert shared_classes(class_log) == 0 and "org.apache.spark" in class_log.read_text()


def test_a_truncated_or_foreign_file_is_never_named_and_is_removed(tmp_path: Path) -> None:
    """The JVM crashes mapping a truncated archive: only whole ones (magic word, recorded size) are used."""
    env = run_env(tmp_path)
    key = class_data.archive_key(spark_home(), env)
    assert key is not None
    magic = (0xF00BABA8).to_bytes(4, sys.byteorder)
    truncated = tmp_path / f"{key}-100000.jsa"
    truncated.write_bytes(magic + b"\0" * 5000)
    foreign = tmp_path / f"{key}-5000.jsa"
    foreign.write_bytes(os.urandom(5000))
    plan = class_data.for_driver(spark_home(), env)
    try:
        assert plan.options == [] and plan.archive is None
        assert not truncated.exists() and not foreign.exists()
    finally:
        plan.close()
    whole = tmp_path / f"{key}-5004.jsa"
    whole.write_bytes(magic + b"\0" * 5000)
    assert class_data.for_driver(spark_home(), env).archive == whole


def test_only_one_of_two_processes_at_once_gets_to_make_it(tmp_path: Path) -> None:
    env = run_env(tmp_path)
    code = (
        "import sys, time\n"
        "from spark_job.engine import class_data\n"
        f"plan = class_data.for_driver({str(spark_home())!r})\n"
        "print(plan._lock_fd is not None, flush=True)\n"
        "sys.stdin.read()\n"  # hold the right until told to go
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        answers = sorted(p.stdout.readline().strip() for p in procs if p.stdout)
    finally:
        for p in procs:
            p.communicate("")
    assert answers == ["False", "True"]
    # Both gone: the lock went with them, and the next run may make it.
    plan = class_data.for_driver(spark_home(), env)
    assert plan._lock_fd is not None
    plan.close()


def test_a_failed_maker_is_not_retried_for_a_week(tmp_path: Path) -> None:
    env = run_env(tmp_path)
    key = class_data.archive_key(spark_home(), env)
    failed = tmp_path / f"{key}.failed"
    failed.write_text("the training run exited with code 1\n")
    plan = class_data.for_driver(spark_home(), env)
    assert (plan.options, plan._lock_fd) == ([], None)
    week = time.time() - class_data.RETRY_AFTER_FAILURE_S - 60
    os.utime(failed, (week, week))
    plan = class_data.for_driver(spark_home(), env)
    assert plan._lock_fd is not None
    plan.close()


def test_the_cache_keeps_the_archives_used_last_under_its_size(tmp_path: Path) -> None:
    magic = (0xF00BABA8).to_bytes(4, sys.byteorder)
    mb = 1024 * 1024
    now = time.time()
    made = []
    for age, name in enumerate(["newest", "middle", "oldest"]):
        path = tmp_path / f"{name}-{mb}.jsa"
        path.write_bytes(magic + b"\0" * (mb - 4))
        os.utime(path, (now - age * 3600, now - age * 3600))
        made.append(path)
    stale = tmp_path / ".x.made.1.part"
    stale.write_bytes(b"")
    os.utime(stale, (now - 2 * 86400, now - 2 * 86400))
    assert class_data.max_bytes({MAX_MB_ENV: "2"}) == 2 * mb
    removed = class_data_maker.evict(tmp_path, class_data.max_bytes({MAX_MB_ENV: "2"}), keep=made[2])
    # The least recently used goes first, but never the archive just made.
    assert removed == [made[1]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["newest-1048576.jsa", "oldest-1048576.jsa"]


def test_no_archive_where_none_can_serve(tmp_path: Path) -> None:
    """A JDK older than 17 or unknown, or a folder with files ahead of Spark's jars: no key, no options."""
    env = run_env(tmp_path)
    assert class_data.archive_key(spark_home(), env) is not None
    old_jdk = tmp_path / "jdk11"
    (old_jdk / "bin").mkdir(parents=True)
    (old_jdk / "release").write_text('JAVA_VERSION="11.0.22"\n')
    assert class_data.archive_key(spark_home(), {**env, "JAVA_HOME": str(old_jdk)}) is None
    jars = tmp_path / "extra"
    jars.mkdir()
    (jars / "a.class").write_bytes(b"")
    assert class_data.archive_key(spark_home(), env, str(jars)) is None
    plan = class_data.for_driver(spark_home(), env, java_options="-Xshare:off")
    assert (plan.options, plan._lock_fd) == ([], None)
    assert class_data.for_driver(spark_home(), {**env, DIR_ENV: str(tmp_path / "with space")}).options == []
