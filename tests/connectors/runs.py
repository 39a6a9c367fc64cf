"""Real ``sparkpipe run`` processes (``python -m spark_job run``) for the connector tests: run one to its
end, or start one and SIGKILL it mid-write. Python 3.9: the matrix cells import it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..support import kill_tree

MARKER = "SPARKPIPE_METRICS "


@dataclass(frozen=True)
class DriverRun:
    """A finished driver: its exit code, output and the metrics document of its marker line."""

    returncode: int
    stdout: str
    stderr: str
    metrics: dict[str, Any] | None

    def status(self, sequence: str) -> str:
        assert self.metrics is not None, self.stderr[-5000:]
        return str(self.metrics["sequences"][sequence]["status"])


def command(tmp_path: Path, config: dict[str, Any], args: list[str]) -> list[str]:
    path = tmp_path / f"config-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(config))
    return [sys.executable, "-m", "spark_job", "run", "--config", str(path), "--master", "local[1]", *args]


def run_driver(tmp_path: Path, config: dict[str, Any], *args: str, env: dict[str, str] | None = None) -> DriverRun:
    """Run the driver to its end (a local[1] JVM of its own) and read its metrics line."""
    done = subprocess.run(
        command(tmp_path, config, list(args)),
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=900,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    metrics = json.loads(lines[-1][len(MARKER) :]) if lines else None
    return DriverRun(done.returncode, done.stdout, done.stderr, metrics)


def start_driver(
    tmp_path: Path, config: dict[str, Any], *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start the driver in a process group of its own; its output goes to ``tmp_path/driver.log``."""
    with open(tmp_path / "driver.log", "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            command(tmp_path, config, list(args)),
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )


def wait_for(proc: subprocess.Popen[bytes], condition: Callable[[], bool], what: str, log: Path) -> None:
    """Poll ``condition`` while the driver runs; fail with its log if it ends first."""
    deadline = time.monotonic() + 600
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            kill(proc)
            raise AssertionError(f"{what} never happened (driver exit {proc.returncode}):\n{log.read_text()[-5000:]}")
        time.sleep(0.2)


kill = kill_tree  # SIGKILL the driver and its JVM at once, as a lost machine would; wait until they ended
