"""JVM options for the many short-lived Spark JVMs the tests start.

Every test JVM (the shared session, each ``spark-submit`` of a task, the Connect server, the
standalone master and worker) lives for seconds, most of it starting up: loading and verifying
Spark's classes and compiling them with both JIT tiers. The tests therefore run them with

- ``-XX:TieredStopAtLevel=1`` and the serial collector: less compiling, fewer threads, on a 2-core
  machine where several JVMs run at once;
- a class-data-sharing archive of the classes a pipeline run loads (``-XX:SharedArchiveFile``),
  made once per JDK and Spark build by one run of the example pipeline. A JVM whose class path
  does not match the archive just loads its classes as usual;
- for the drivers, no Spark UI unless a test's configuration turns it on (``spark.ui.enabled``, as
  Spark's own test suites do): its web server and listeners cost a run of the example pipeline
  about 1.1 of its 9 CPU-seconds (the median of six alternating pairs, 0.6 to 2.1 each).

Measured on the test machine (a trivial job through ``spark-submit``): 23 s wall and 36 s of CPU
plainly, 17 s and 18 s with the first item, 10 s and 10 s with the first two. The JVMs that live for the
whole session run heavier queries, which the first item slows: they add :data:`LONG_LIVED`.

The options go into ``SPARK_SUBMIT_OPTS`` (read by ``spark-submit`` for the driver JVM) and
``SPARK_DAEMON_JAVA_OPTS`` (the standalone master and worker), which child processes inherit. Apart
from the UI, which a test that needs it turns on in its own configuration (a ``--conf`` or a
pipeline's ``spark_conf`` wins over a JVM property), they change how fast the JVMs start, not what
Spark does.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "spark-cds"
FAST_START = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
# For the JVMs that live for the whole test session (the shared session, the Connect server), whose
# queries outweigh their start: both JIT tiers and the default collector again (the last flag wins).
LONG_LIVED = "-XX:TieredStopAtLevel=4 -XX:-UseSerialGC"
# A default for drivers only: a --conf, a session builder's setting or a pipeline's spark_conf wins.
NO_UI = "-Dspark.ui.enabled=false"
# A missing or mismatched archive is not an error, and says nothing.
QUIET_CDS = ["-Xshare:auto", "-Xlog:cds=off", "-Xlog:cds+dynamic=off", "-Xlog:class+path=off"]


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else "java"


def _archive_key(spark_home: Path) -> str:
    version = subprocess.run([_java(), "-version"], capture_output=True, text=True, check=True).stderr
    # The JVM ignores an archive whose class path jars changed (size or time): so does the key.
    jars = sorted(f"{p.name} {p.stat().st_size} {p.stat().st_mtime_ns}" for p in (spark_home / "jars").glob("*.jar"))
    return hashlib.sha256("\n".join([version, str(spark_home), *jars]).encode()).hexdigest()[:16]


def _make_archive(spark_home: Path, archive: Path) -> bool:
    """Run the example pipeline once with ``-XX:ArchiveClassesAtExit``; True when the archive exists."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sparkpipe-cds-") as tmp:
        partial = Path(tmp) / "spark.jsa"
        env = {
            **os.environ,
            "SPARK_HOME": str(spark_home),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "SPARK_SUBMIT_OPTS": " ".join([*FAST_START, *QUIET_CDS, f"-XX:ArchiveClassesAtExit={partial}"]),
        }
        command = [
            *(sys.executable, "-m", "spark_job", "run", "--config", str(REPO / "examples" / "pipeline.yaml")),
            *("--master", "local[1]", "--var", f"out_dir={Path(tmp) / 'out'}"),
        ]
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, timeout=600)
        if done.returncode != 0 or not partial.exists():
            sys.stderr.write(
                "spark_jvm: no class-data archive (the tests run without it):\n"
                + done.stdout.decode(errors="replace")[-2000:]
                + done.stderr.decode(errors="replace")[-2000:]
            )
            return False
        os.replace(partial, archive)  # atomic: a concurrent session sees the whole file or none
    return True


def configure(spark_home: Path) -> None:
    """Set the JVM options in this process's environment, making the archive first if needed."""
    if os.environ.get("SPARKPIPE_TEST_JVM_TUNING", "1") == "0":
        return
    options = [*FAST_START]
    # One folder per Spark installation: the test matrix's environments keep their archives side by side.
    folder = CACHE / hashlib.sha256(str(spark_home).encode()).hexdigest()[:12]
    archive = folder / f"{_archive_key(spark_home)}.jsa"
    folder.mkdir(parents=True, exist_ok=True)
    # scripts/test.sh starts two test sessions at once: the first makes the archive, the other waits for it
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not archive.exists():
            for stale in [*folder.glob("*.jsa"), *CACHE.glob("*.jsa")]:  # made for another JDK or Spark build
                stale.unlink(missing_ok=True)
        if archive.exists() or _make_archive(spark_home, archive):
            options += [*QUIET_CDS, f"-XX:SharedArchiveFile={archive}"]
    joined = " ".join(options)
    for name, added in (("SPARK_SUBMIT_OPTS", f"{joined} {NO_UI}"), ("SPARK_DAEMON_JAVA_OPTS", joined)):
        os.environ[name] = f"{os.environ.get(name, '')} {added}".strip()
