"""A class-data-sharing archive for the driver JVM: Spark's classes mapped from one file at start-up
instead of being read, verified and linked again by every run (JDK 17's dynamic CDS archive).

One archive per JDK, Spark build and driver class path, in a per-user cache
(``$SPARKPIPE_CLASS_DATA_DIR``, else ``$XDG_CACHE_HOME/sparkpipe/class-data``, else
``~/.cache/sparkpipe/class-data``). A run that finds none starts it in the background: a detached
process (``spark_job.engine.class_data_maker``) waits for the run's JVM to end, then runs a small built-in pipeline with
``-XX:ArchiveClassesAtExit`` through the same ``spark-submit`` and environment, and renames the
finished file into place. The user's run is never the one that dumps classes (a dump that fails
changes the JVM's exit code). One process per archive makes it (a lock the maker holds until it
exits); the others run without one meanwhile. A maker that failed is not tried again for a week
(``<key>.failed`` says why). The cache is kept under ``$SPARKPIPE_CLASS_DATA_MAX_MB`` (1024 MB)
by removing the archives used least recently.

Never in the way: any problem (no JDK 17 or newer, an unwritable cache, a Spark configuration folder
with files in it ahead of Spark's jars, a truncated or foreign file, JVM options that already name an
archive) means the JVM starts as it would have, and the JVM itself ignores an archive that does not
match (``-Xshare:auto``, its messages off). ``SPARKPIPE_CLASS_DATA=off`` (``sparkpipe run
--no-class-data``, ``LocalSpark(class_data=False)``) turns it all off.

Standard library only: the provider's local runtime imports this module too.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("sparkpipe")

SWITCH_ENV = "SPARKPIPE_CLASS_DATA"
"""``off`` (or ``0``, ``false``, ``no``) turns the archive off: not used, not made."""
DIR_ENV = "SPARKPIPE_CLASS_DATA_DIR"
"""The cache folder; default ``$XDG_CACHE_HOME/sparkpipe/class-data`` or ``~/.cache/sparkpipe/class-data``."""
MAX_MB_ENV = "SPARKPIPE_CLASS_DATA_MAX_MB"
"""The most the cache's archives may take together, in MB (default 1024; one archive is ~200 MB)."""

DEFAULT_MAX_MB = 1024
RETRY_AFTER_FAILURE_S = 7 * 86400
WAIT_FOR_RUN_S = 24 * 3600
TRAINING_TIMEOUT_S = 1200
MIN_JAVA = 17
FORMAT = "1"  # part of every key: a change in how archives are made retires the old ones

QUIET = ("-Xshare:auto", "-Xlog:cds=off", "-Xlog:cds+dynamic=off", "-Xlog:class+path=off")
"""Use an archive when it matches, else start as usual, saying nothing either way."""

_MAGIC = struct.pack("=I", 0xF00BABA8)  # the first word of a dynamic archive, in the platform's byte order
OFF = frozenset({"0", "off", "false", "no"})
"""The values of a switch variable that turn it off."""
_CHOSEN = ("-Xshare", "SharedArchiveFile", "ArchiveClassesAtExit", "AutoCreateSharedArchive", "SharedClassListFile")
JVM_OPTION_VARIABLES = ("SPARK_SUBMIT_OPTS", "JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS")
_CLASS_PATH_VARIABLES = ("SPARK_CLASSPATH", "HADOOP_CONF_DIR", "YARN_CONF_DIR", "SPARK_DIST_CLASSPATH")


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether archives are used and made (``SPARKPIPE_CLASS_DATA`` is not ``off``)."""
    value = (os.environ if env is None else env).get(SWITCH_ENV, "")
    return value.strip().lower() not in OFF


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(DIR_ENV):
        return Path(env[DIR_ENV]).expanduser()
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path("~/.cache").expanduser()
    return base / "sparkpipe" / "class-data"


def max_bytes(env: Mapping[str, str] | None = None) -> int:
    raw = (os.environ if env is None else env).get(MAX_MB_ENV, "")
    try:
        return max(0, int(raw)) * 1024 * 1024 if raw.strip() else DEFAULT_MAX_MB * 1024 * 1024
    except ValueError:
        return DEFAULT_MAX_MB * 1024 * 1024


def names_an_archive(options: str) -> bool:
    """Whether JVM options already choose class-data sharing (an archive of their own, or ``-Xshare``)."""
    return any(flag in options for flag in _CHOSEN)


def java_home(env: Mapping[str, str]) -> Path | None:
    """The JDK ``spark-submit`` runs: ``$JAVA_HOME``, else the ``java`` on ``$PATH`` (as ``bin/spark-class``)."""
    if env.get("JAVA_HOME"):
        return Path(env["JAVA_HOME"]).resolve()
    java = shutil.which("java", path=env.get("PATH", os.defpath))
    return Path(java).resolve().parent.parent if java else None


def java_major(home: Path) -> int | None:
    """The JDK's feature release (17, 21, ...) from its ``release`` file; None when unknown."""
    try:
        text = (home / "release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("JAVA_VERSION="):
            parts = line.split("=", 1)[1].strip().strip('"').split(".")
            number = parts[1] if parts[0] == "1" and len(parts) > 1 else parts[0]
            return int(number) if number.isdigit() else None
    return None


def _stat(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{path} -"
    return f"{path} {st.st_size} {st.st_mtime_ns}"


def _jars(folder: Path) -> list[str]:
    try:
        return sorted(_stat(p) for p in folder.iterdir() if p.suffix.lower() == ".jar")
    except OSError:
        return []


def _non_empty_folder(entry: str) -> bool:
    path = Path(entry)
    try:
        return path.is_dir() and any(path.iterdir())
    except OSError:
        return True


def archive_key(spark_home: Path, env: Mapping[str, str], extra_class_path: str = "") -> str | None:
    """The name of the archive that fits a driver started by ``spark_home``'s ``spark-submit`` under ``env``.

    It changes with everything the JVM checks an archive against: the JDK (its ``release`` file, its
    module image and base archive), Spark's jars (names, sizes, times) and what comes before them on
    the class path. None when no archive can serve such a driver: a JDK older than 17 or unknown,
    no base archive in the JDK, no Spark jars, or a folder with files in it ahead of Spark's jars (the
    JVM refuses to share classes past a folder that is not empty).
    """
    spark_home = spark_home.resolve()
    home = java_home(env)
    if home is None:
        return None
    major = java_major(home)
    base = home / "lib" / "server" / "classes.jsa"
    jars = spark_home / "jars"
    if major is None or major < MIN_JAVA or not base.is_file() or not jars.is_dir():
        return None
    conf = env.get("SPARK_CONF_DIR") or str(spark_home / "conf")
    ahead = [e for e in f"{env.get('SPARK_CLASSPATH', '')}{os.pathsep}{extra_class_path}".split(os.pathsep) if e]
    if any(_non_empty_folder(e) for e in [*ahead, conf] if not e.endswith("*")):
        return None
    parts = [FORMAT, str(home), (home / "release").read_text(errors="replace"), _stat(home / "lib" / "modules")]
    parts += [_stat(base), str(spark_home), conf, extra_class_path]
    parts += [f"{name}={env.get(name, '')}" for name in _CLASS_PATH_VARIABLES]
    for entry in ahead:
        parts += _jars(Path(entry[:-1])) if entry.endswith("*") else [_stat(Path(entry))]
    parts += _jars(jars)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def is_archive(path: Path, size: int | None = None) -> bool:
    """Whether ``path`` is a whole dynamic archive: its magic word, and the size it was made with."""
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != _MAGIC:
                return False
            return size is None or os.fstat(fh.fileno()).st_size == size
    except OSError:
        return False


def find_archive(folder: Path, key: str) -> Path | None:
    """The finished archive of ``key`` (``<key>-<size>.jsa``). A file cut short or not an archive is
    removed: the JVM would crash mapping a truncated archive, so only whole ones are ever named."""
    try:
        candidates = sorted(folder.glob(f"{key}-*.jsa"))
    except OSError:
        return None
    for path in candidates:
        size = path.stem[len(key) + 1 :]
        if size.isdigit() and is_archive(path, int(size)):
            return path
        with contextlib.suppress(OSError):
            path.unlink()
    return None


def use_options(archive: Path | str) -> list[str]:
    """JVM options that map ``archive`` when it matches and are silent when it does not."""
    return [*QUIET, f"-XX:SharedArchiveFile={archive}"]


class DriverArchive:
    """The archive for one driver JVM about to start.

    ``options`` go on the JVM's command line (empty when there is no archive to use). When this
    process won the right to make the missing archive, :meth:`make_in_background` hands it to a
    detached maker once the JVM started; :meth:`close` gives it up otherwise.
    """

    def __init__(self, options: Sequence[str] = (), archive: Path | None = None) -> None:
        self.options = list(options)
        self.archive = archive
        self._lock_fd: int | None = None
        self._make: dict[str, Any] | None = None

    def make_in_background(self, wait_for_pid: int | None, env: Mapping[str, str] | None = None) -> int | None:
        """Start the maker (it waits for ``wait_for_pid``, the run's JVM, to exit first); its pid, or None.

        ``env`` is the environment the run's ``spark-submit`` had, without its secrets: the maker's
        ``spark-submit`` runs with it, so that its driver has the same class path."""
        if self._lock_fd is None or self._make is None:
            return None
        try:
            command = [sys.executable, "-m", "spark_job.engine.class_data_maker", "make"]
            for name, value in self._make.items():
                command += [f"--{name.replace('_', '-')}", str(value)]
            command += ["--lock-fd", str(self._lock_fd)]
            if wait_for_pid:
                command += ["--wait-for-pid", str(wait_for_pid)]
            maker_env = _with_driver_path(dict(os.environ if env is None else env))
            popen = subprocess.Popen(
                command,
                env=maker_env,
                cwd=self._make["cache"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(self._lock_fd,),
                start_new_session=True,  # outlives this process; a signal to the run's group spares it
            )
            return popen.pid
        except Exception as exc:  # never in the way of the run
            log.debug("sparkpipe: class-data archive not made: %s", exc)
            return None
        finally:
            self.close()

    def close(self) -> None:
        """Let go of the right to make the archive (the maker keeps its own handle on the lock)."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    def __del__(self) -> None:
        self.close()


def for_driver(
    spark_home: str | Path,
    env: Mapping[str, str] | None = None,
    extra_class_path: str = "",
    java_options: str = "",
) -> DriverArchive:
    """What a driver JVM started by ``spark_home``'s ``spark-submit`` under ``env`` should do about the archive.

    ``extra_class_path`` is ``spark.driver.extraClassPath`` and ``java_options`` the driver's other JVM
    options (``spark.driver.extraJavaOptions``). Never raises: any problem means no archive.
    """
    env = os.environ if env is None else env
    try:
        return _for_driver(Path(spark_home), env, extra_class_path, java_options)
    except Exception as exc:
        log.debug("sparkpipe: no class-data archive: %s", exc)
        return DriverArchive()


def _for_driver(spark_home: Path, env: Mapping[str, str], extra_class_path: str, java_options: str) -> DriverArchive:
    if not enabled(env) or sys.platform == "win32":
        return DriverArchive()
    if names_an_archive(java_options) or any(names_an_archive(env.get(v, "")) for v in JVM_OPTION_VARIABLES):
        return DriverArchive()  # the user (or a test harness) chose class-data sharing already
    key = archive_key(spark_home, env, extra_class_path)
    folder = cache_dir(env)
    if key is None or any(c.isspace() or c in "\"'" for c in str(folder)):
        return DriverArchive()  # JVM option strings are split on spaces
    archive = find_archive(folder, key)
    if archive is not None:
        with contextlib.suppress(OSError):
            os.utime(archive)  # its last use: eviction removes the least recently used first
        return DriverArchive(use_options(archive), archive)
    failed = folder / f"{key}.failed"
    with contextlib.suppress(OSError):
        if time.time() - failed.stat().st_mtime < RETRY_AFTER_FAILURE_S:
            return DriverArchive()
    folder.mkdir(parents=True, exist_ok=True)
    fd = _try_lock(folder / f"{key}.lock")
    if fd is None:
        return DriverArchive()  # being made by another run
    if find_archive(folder, key) is not None:  # finished between the look and the lock
        os.close(fd)
        return _for_driver(spark_home, env, extra_class_path, java_options)
    result = DriverArchive()
    result._lock_fd = fd
    result._make = {"cache": str(folder), "key": key, "spark_home": str(spark_home)}
    if extra_class_path:
        result._make["extra_class_path"] = extra_class_path
    return result


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive lock on ``path``, or None when another process holds it."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def wait_until_made(
    spark_home: str | Path, env: Mapping[str, str] | None = None, extra_class_path: str = ""
) -> Path | None:
    """Block until no maker works on the archive for this driver; the archive, if there is one."""
    import fcntl

    env = os.environ if env is None else env
    key = archive_key(Path(spark_home), env, extra_class_path)
    if key is None:
        return None
    folder = cache_dir(env)
    lock = folder / f"{key}.lock"
    if lock.exists():
        with open(lock, "rb") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
    return find_archive(folder, key)


# Making an archive. ----------------------------------------------------------------------------------


def _driver_path() -> str:
    """Where ``spark_job`` is imported from (a folder, or the bundle zip on a cluster)."""
    import spark_job

    return str(Path(spark_job.__file__).resolve().parent.parent)


def _with_driver_path(env: dict[str, str]) -> dict[str, str]:
    root = _driver_path()
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in paths if p != root]])
    return env


def make_archive(spark_home: str | Path, out: str | Path, *args: Any, **kwargs: Any) -> str | None:
    """Make an archive at ``out`` (``spark_job.engine.class_data_maker.make_archive``); None when done, else why not."""
    from spark_job.engine.class_data_maker import make_archive as make

    return make(spark_home, out, *args, **kwargs)
