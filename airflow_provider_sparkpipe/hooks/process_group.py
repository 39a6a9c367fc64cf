"""Process groups of ``spark-submit``: who is in one, and stopping one even if the caller dies.

Standard library only, and runnable as a script: ``python process_group.py PGID GRACE_S`` waits up
to ``GRACE_S`` seconds for the group to exit after a SIGTERM, then SIGKILLs what is left. The local
hook starts it, in a session of its own, next to every SIGTERM it sends: Airflow's supervisor
SIGKILLs a task process a few seconds after its SIGTERM, which would otherwise leave a
``spark-submit`` that ignores SIGTERM running with nobody left to kill it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

_POLL_S = 0.1


def _stat_fields(stat: Path) -> list[str] | None:
    try:
        return stat.read_text().rsplit(")", 1)[1].split()  # after the command name: state, ppid, pgrp, ...
    except (OSError, IndexError):
        return None


def group_alive(pgid: int) -> bool:
    """Whether any process (zombies aside) is still in the process group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        fields = _stat_fields(stat)
        if fields is not None and len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def start_time(pid: int) -> int | None:
    """When a live process started (clock ticks since boot, ``/proc/PID/stat`` field 22); None when
    there is no such process or it is a zombie. A pid and its start time name one process for good."""
    fields = _stat_fields(Path("/proc") / str(pid) / "stat")
    if fields is None or len(fields) < 20 or fields[0] == "Z":
        return None
    return int(fields[19])


def is_our_group(pgid: int, leader_start: int | None, text: str) -> bool:
    """Whether the live group ``pgid`` is the one whose leader started at ``leader_start``.

    The leader (spark-submit, which execs the JVM under the same pid) is checked by its start time,
    which pid reuse cannot fake. Without it (an older record, or the leader died while the rest of
    the group lives on), a member whose command line names ``text`` identifies the group.
    """
    if leader_start is not None and start_time(pgid) == leader_start:
        return True
    return bool(group_members_naming(pgid, text))


def group_members_naming(pgid: int, text: str) -> list[int]:
    """Live processes of the group whose command line contains ``text`` (guards against pid reuse)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat_fields(stat)
        if fields is None or len(fields) < 3 or fields[2] != str(pgid) or fields[0] == "Z":
            continue
        try:
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(stat.parent.name))
    return found


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group; False when it no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False


def start_reaper(pgid: int, grace_s: float) -> subprocess.Popen[bytes]:
    """Start this file as a detached process that SIGKILLs the group ``grace_s`` seconds from now."""
    return subprocess.Popen(
        [sys.executable, "-I", "-S", __file__, str(pgid), repr(float(grace_s))],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def reap(pgid: int, grace_s: float) -> bool:
    """Wait up to ``grace_s`` for the group to exit, then SIGKILL it; True when it had to be killed."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return False
        time.sleep(_POLL_S)
    return signal_group(pgid, signal.SIGKILL)


REAPER_KILLED = 3
"""The reaper's exit code when it had to SIGKILL the group."""

if __name__ == "__main__":
    sys.exit(REAPER_KILLED if reap(int(sys.argv[1]), float(sys.argv[2])) else 0)
