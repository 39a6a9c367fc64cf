"""A terminated driver ends within a bounded time on every session kind, here against a Spark Connect
server that never answers (a TCP listener on 127.0.0.1 that accepts and stays silent), whose client
would otherwise retry for about ten minutes, then again in its exit hook."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from .support import REPO

PYSPARK_35 = REPO / ".cache" / "matrix" / "py39-spark35" / "bin" / "python"
PYTHONS = {"main": sys.executable, **({"spark35-py39": str(PYSPARK_35)} if PYSPARK_35.exists() else {})}
"""The project's pyspark, and pyspark 3.5 on Python 3.9 where its matrix environment was made."""


class SilentServer:
    """Accepts connections on 127.0.0.1 and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.mark.parametrize("python", list(PYTHONS.values()), ids=list(PYTHONS))
def test_sigterm_ends_a_run_whose_connect_server_never_answers(python: str, tmp_path: Path) -> None:
    server = SilentServer()
    config = tmp_path / "p.json"
    target = {"type": "parquet", "path": str(tmp_path / "out")}
    config.write_text(
        json.dumps({"app_name": "silent", "sequences": [{"name": "s", "query": "SELECT 1 AS x", "target": target}]})
    )
    metrics = tmp_path / "metrics.json"
    command = [python, "-m", "spark_job", "run", "-c", str(config), "--remote", f"sc://127.0.0.1:{server.port}"]
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "SPARKPIPE_RUN_KEY")}
    proc = subprocess.Popen(
        [*command, "--metrics-out", str(metrics)],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        for _ in range(600):  # the client reached the server (and waits for an answer that never comes)
            if server.accepted or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert server.accepted and proc.poll() is None, proc.communicate()
        time.sleep(2)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)  # only proves it ended: the client alone would take ~10 min
        elapsed = time.monotonic() - sent
        print(f"{python}: ended {elapsed:.1f} s after SIGTERM (exit {proc.returncode})")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        server.close()
    assert proc.returncode == 143, err
    document: dict[str, Any] = json.loads(metrics.read_text())
    assert document["status"] == "failed" and "terminated by SIGTERM" in document["error"], document
    assert document["sequences"]["s"]["status"] == "skipped" and not (tmp_path / "out").exists()
    assert "Traceback" not in err, err


class FreezingProxy:
    """Forwards TCP between a client and ``port`` on 127.0.0.1 until ``freeze()``: then it keeps every
    connection open and forwards nothing more, a server that stopped answering."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.frozen = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.opened: list[socket.socket] = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.opened += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pipe, args=(src, dst), daemon=True).start()

    def pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self.frozen.is_set():
                data = src.recv(65536)
                if not data:
                    return
                if self.frozen.is_set():
                    return
                dst.sendall(data)
        except OSError:
            return

    def freeze(self) -> None:
        self.frozen.set()

    def close(self) -> None:
        for conn in self.opened:
            conn.close()
        self.sock.close()


def test_sigterm_ends_a_connect_run_whose_server_stopped_answering_mid_sequence(
    spark_connect_server: Any, tmp_path: Path
) -> None:
    """The session exists and a sequence runs when the server goes silent: cancelling waits on a thread
    of its own, the watchdog writes the metrics and ends the driver; the client's exit hook is skipped."""
    proxy = FreezingProxy(spark_connect_server.port)
    config = tmp_path / "p.json"
    sleepy = {
        "name": "sleepy",
        "query": "SELECT reflect('java.lang.Thread', 'sleep', CAST(20000 AS BIGINT)) AS slept",
        "target": {"type": "parquet", "path": str(tmp_path / "out"), "atomic": False},
    }
    config.write_text(json.dumps({"app_name": "frozen", "sequences": [sleepy]}))
    metrics = tmp_path / "metrics.json"
    command = [sys.executable, "-m", "spark_job", "run", "-c", str(config)]
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "SPARKPIPE_RUN_KEY")}
    proc = subprocess.Popen(
        [*command, "--remote", f"sc://127.0.0.1:{proxy.port}", "--metrics-out", str(metrics)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # the sequence runs: its query sleeps on the server
            seen.append(line)
            if "sequence sleepy started" in line:
                break
        assert proc.poll() is None, "".join(seen)
        time.sleep(3)
        proxy.freeze()
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)  # only proves it ended
        elapsed = time.monotonic() - sent
        print(f"ended {elapsed:.1f} s after SIGTERM (exit {proc.returncode})")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proxy.close()
    assert proc.returncode == 143, "".join(seen) + err
    document: dict[str, Any] = json.loads(metrics.read_text())
    assert document["status"] == "failed" and "terminated by SIGTERM" in document["error"], document
    assert document["sequences"]["sleepy"]["status"] == "cancelled", document
