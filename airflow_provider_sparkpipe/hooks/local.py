"""``LocalSparkHook``: runs the bundled driver with ``spark-submit`` as a child process group of the worker."""

from __future__ import annotations

import collections
import importlib.util
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow_provider_sparkpipe.exceptions import SparkRuntimeError
from airflow_provider_sparkpipe.hooks.base import SparkPipelineHook
from airflow_provider_sparkpipe.hooks.driver_output import SPARK_LOGGER, DriverOutput
from airflow_provider_sparkpipe.hooks.process_group import (
    REAPER_KILLED,
    group_alive,
    is_our_group,
    signal_group,
    start_reaper,
    start_time,
)
from airflow_provider_sparkpipe.runs import PipelineRun, PipelineSubmission, RunState
from airflow_provider_sparkpipe.runtimes.local import LocalSpark
from airflow_provider_sparkpipe.staging import LocalStore, Staging
from spark_job.engine import class_data, jit
from spark_job.engine.pools import ALLOCATION_FILE_CONF, write_allocation_file
from spark_job.markers import APPLICATION_MARKER, LEVELLED_LOG_ENV, parse_marker_line

_SENSITIVE = re.compile(r"pass|secret|token|credential|(^|[._])key($|[._])", re.IGNORECASE)
_OUTPUT_TAIL_LINES = 40
_PGID_FILE = "spark-submit.pgid"
_SIGKILL_WAIT_S = 30


@dataclass
class _Process:
    popen: subprocess.Popen[str]
    output: DriverOutput
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=_OUTPUT_TAIL_LINES))
    metrics: dict[str, Any] | None = None
    cancelled: bool = False
    app_id: str | None = None
    ui_url: str | None = None
    event_log: bool = False


class LocalSparkHook(SparkPipelineHook[LocalSpark]):
    """Submit, follow and stop pipelines on a :class:`~airflow_provider_sparkpipe.runtimes.LocalSpark` runtime.

    ``submit`` stages the driver bundle (content-hashed, built once per version) and the run's
    ``config.json`` under ``work_dir`` and starts ``spark-submit`` in a new session, so that
    ``cancel`` can signal the whole process group (the JVM and the Python driver it starts).
    ``wait`` streams the combined stdout/stderr into the task log line by line.
    """

    hook_name = "Spark pipeline on local Spark"
    passes_environment = True

    def __init__(self, runtime: LocalSpark | None = None, **kwargs: Any) -> None:
        super().__init__(runtime=runtime, **kwargs)
        self._processes: dict[str, _Process] = {}

    # Where things are. ---------------------------------------------------------------------------

    @property
    def spark_home(self) -> Path:
        """The Spark installation: the runtime's ``spark_home``, ``$SPARK_HOME``, or the pyspark package."""
        if self.runtime.spark_home:
            return Path(self.runtime.spark_home)
        if os.environ.get("SPARK_HOME"):
            return Path(os.environ["SPARK_HOME"])
        # Locate the pip-installed pyspark without importing it (the worker never imports pyspark).
        spec = importlib.util.find_spec("pyspark")
        if spec is None or not spec.submodule_search_locations:
            raise SparkRuntimeError(
                "LocalSpark needs Spark: install pyspark (pip install 'airflow-provider-sparkpipe[spark]'), "
                "set SPARK_HOME, or pass LocalSpark(spark_home=...)"
            )
        return Path(next(iter(spec.submodule_search_locations)))

    @property
    def spark_submit(self) -> Path:
        path = self.spark_home / "bin" / "spark-submit"
        if not path.is_file():
            raise SparkRuntimeError(f"no spark-submit at {path}: check spark_home / SPARK_HOME")
        return path

    @property
    def work_dir(self) -> Path:
        return Path(self.runtime.work_dir) if self.runtime.work_dir else Path(tempfile.gettempdir()) / "sparkpipe"

    def check(self) -> str:
        return f"{self.runtime.describe()} with {self.spark_submit}"

    # The runtime interface. ------------------------------------------------------------------------

    @cached_property
    def staging(self) -> Staging:
        return Staging(LocalStore(), str(self.work_dir), self.log)

    def submit(self, submission: PipelineSubmission, previous: PipelineRun | None = None) -> PipelineRun:
        spark_submit = self.spark_submit
        self._stop_earlier_attempts(submission)
        run_dir = Path(self.staging.run_uri(submission.run_key))
        if run_dir.exists():  # the same attempt submitted again: nothing of its earlier start is read
            shutil.rmtree(run_dir)
        staged = self.staging.stage(submission.run_key, submission.document)
        metrics_path = Path(staged.metrics_uri)

        command = [str(spark_submit), "--master", self.runtime.master, "--name", submission.app_name]
        defaults = self._run_conf(submission, run_dir)
        conf = {"spark.log.level": self.runtime.spark_log_level, **defaults, **self.runtime.conf}
        for key, value in conf.items():
            command += ["--conf", f"{key}={value}"]
        command += [
            "--py-files",
            staged.bundle.py_files_uri,
            staged.bundle.main_uri,
            "run",
            "--config",
            staged.config_uri,
            "--metrics-out",
            metrics_path.as_uri(),
            *submission.resume_arguments(self.staging.state_uri(submission.task_key)),
        ]
        self.log.info("Driver bundle %s", staged.bundle.py_files_uri)
        self.log.info("Running: %s", " ".join(_redact_command(command)))
        env = self._environment(submission.environment)
        archive = self._class_data(conf)
        if archive.options:  # spark-submit gives SPARK_SUBMIT_OPTS to the driver JVM
            env["SPARK_SUBMIT_OPTS"] = " ".join([env.get("SPARK_SUBMIT_OPTS", ""), *archive.options]).strip()
            self.log.info("Driver JVM class-data archive %s", archive.archive)
        compiler = jit.driver_options(env, conf.get("spark.driver.extraJavaOptions", ""))
        if compiler:  # C2's thresholds for a run of seconds (spark_job.engine.jit)
            env["SPARK_SUBMIT_OPTS"] = " ".join([env.get("SPARK_SUBMIT_OPTS", ""), *compiler]).strip()
        popen = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=run_dir,
            env=env,
            text=True,
            errors="replace",
            bufsize=1,
            # Its own session and process group: cancel() signals spark-submit, its JVM and the Python
            # driver together, and a Ctrl-C in a terminal running the worker does not reach them twice.
            start_new_session=True,
        )
        self.log.info("spark-submit started: pid %d, process group %d", popen.pid, popen.pid)
        # Without secrets: the maker's spark-submit runs a built-in pipeline with this environment.
        if archive.make_in_background(popen.pid, self._environment()):
            self.log.info("No class-data archive for this JDK and Spark yet: one is made once this run has ended")
        # The group and its leader's start time: a later attempt stops this group, and only this one.
        (run_dir / _PGID_FILE).write_text(f"{popen.pid} {start_time(popen.pid) or ''}".rstrip() + "\n")
        run = PipelineRun(
            runtime_kind=self.runtime.kind,
            run_id=str(popen.pid),
            details={
                "pgid": popen.pid,
                "master": self.runtime.master,
                "run_dir": str(run_dir),
                "task_dir": str(Path(self.staging.run_uri(submission.task_key))),
                "metrics_uri": str(metrics_path),
            },
        )
        output = DriverOutput(self.log, self.runtime.spark_log_level, logging.getLogger(SPARK_LOGGER))
        event_log = str(conf.get("spark.eventLog.enabled", "")).lower() == "true"
        self._processes[run.run_id] = _Process(popen, output, event_log=event_log)
        return run

    def _class_data(self, conf: Mapping[str, str]) -> class_data.DriverArchive:
        """The driver JVM's class-data archive: options to use it, or the right to make it (``class_data``)."""
        if not self.runtime.class_data:
            return class_data.DriverArchive()
        return class_data.for_driver(
            self.spark_home,
            self._environment(),
            conf.get("spark.driver.extraClassPath", ""),
            conf.get("spark.driver.extraJavaOptions", ""),
        )

    def _run_conf(self, submission: PipelineSubmission, run_dir: Path) -> dict[str, str]:
        """Settings a run gets unless the runtime's ``conf`` or the config's ``spark_conf`` has its own: an
        event log for a history server, and the FAIR pools of the sequences declared (Spark warns about
        each pool it has to make up)."""
        spark_conf = submission.document.get("spark_conf") or {}
        given = {**self.runtime.conf, **{str(k): str(v) for k, v in spark_conf.items()}}
        conf: dict[str, str] = {}
        if given.get("spark.eventLog.enabled", "true").lower() == "true":
            conf["spark.eventLog.enabled"] = "true"
            if "spark.eventLog.dir" not in given:
                conf["spark.eventLog.dir"] = self._event_log_dir()
        # The driver runs each sequence in a FAIR pool of its own unless the config chose a scheduler mode.
        if "spark.scheduler.mode" not in spark_conf and ALLOCATION_FILE_CONF not in given:
            names = [str(seq.get("name")) for seq in submission.document.get("sequences") or []]
            conf[ALLOCATION_FILE_CONF] = write_allocation_file(names, run_dir)
        return conf

    def _event_log_dir(self) -> str:
        """The event log folder as a URI (made when it is a local path: Spark refuses a missing one)."""
        folder = self.runtime.event_log_dir or str(self.work_dir / "spark-events")
        if "://" in folder or folder.startswith("file:"):
            if folder.startswith("file:"):
                Path(folder.removeprefix("file://").removeprefix("file:")).mkdir(parents=True, exist_ok=True)
            return folder
        path = Path(folder).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path.as_uri()

    def wait(self, run: PipelineRun, poll_interval: float = 10.0) -> RunState:
        """Stream the run's output into the log until it exits; return its final state."""
        process = self._process(run)
        stdout = process.popen.stdout
        if stdout is not None:
            with stdout:
                for line in stdout:
                    self._handle_line(process, line.rstrip("\n"))
            process.output.close()
        process.popen.wait()
        return self.poll(run)

    def poll(self, run: PipelineRun) -> RunState:
        process = self._processes.get(run.run_id)
        if process is None:
            # Not started by this hook: all we can tell is whether the process group still exists.
            return RunState.RUNNING if group_alive(int(run.details["pgid"])) else self._state_from_metrics(run)
        code = process.popen.poll()
        if code is None:
            return RunState.RUNNING
        if process.cancelled:
            return RunState.CANCELLED
        return RunState.SUCCEEDED if code == 0 else RunState.FAILED

    def cancel(self, run: PipelineRun) -> None:
        """SIGTERM the whole process group, then SIGKILL what is left after ``kill_grace_s``."""
        pgid = int(run.details["pgid"])
        process = self._processes.get(run.run_id)
        if process is not None:
            if process.popen.poll() is not None and not group_alive(pgid):
                return
            process.cancelled = True
        self._stop_group(pgid, process)

    def _stop_earlier_attempts(self, submission: PipelineSubmission) -> None:
        """Stop spark-submit groups that earlier attempts of this task left running.

        A worker that died hard (SIGKILL, lost machine) could not cancel its run; its spark-submit,
        in a session of its own, would otherwise keep running next to the retry. A group counts as
        that attempt's only while its leader is the process started then (same pid, same start time),
        or, once the leader is gone, while one of its processes still names the attempt's run directory.
        """
        for run_dir in sorted((self.work_dir / "runs").glob(f"{submission.task_key}__try*")):
            if run_dir.name == submission.run_key or not (run_dir / _PGID_FILE).is_file():
                continue
            recorded = (run_dir / _PGID_FILE).read_text().split()
            try:
                pgid, leader_start = int(recorded[0]), (int(recorded[1]) if len(recorded) > 1 else None)
            except (IndexError, ValueError):
                self.log.warning("Ignoring %s: not a process group record", run_dir / _PGID_FILE)
                continue
            if group_alive(pgid) and is_our_group(pgid, leader_start, str(run_dir)):
                self.log.warning(
                    "Earlier attempt %s is still running (process group %d): stopping it", run_dir.name, pgid
                )
                self._stop_group(pgid, None)

    def _stop_group(self, pgid: int, process: _Process | None) -> None:
        """SIGTERM the group, SIGKILL it after ``kill_grace_s``: a detached reaper does the SIGKILL
        too, so the group dies on time even when this process is killed while it waits."""
        self.log.info("Stopping spark-submit process group %d", pgid)
        if not signal_group(pgid, signal.SIGTERM):
            return
        reaper = start_reaper(pgid, self.runtime.kill_grace_s)
        try:
            if self._wait_for_group(pgid, process, self.runtime.kill_grace_s):
                # Gone within the grace period, or SIGKILLed by the reaper as the period ended.
                try:  # the reaper ends as soon as it sees the group gone
                    killed = reaper.wait(timeout=_SIGKILL_WAIT_S) == REAPER_KILLED
                except subprocess.TimeoutExpired:
                    killed = False
                self.log.info("spark-submit process group %d %s", pgid, "killed" if killed else "stopped")
                return
            self.log.warning("spark-submit process group %d still running after SIGTERM: sending SIGKILL", pgid)
            signal_group(pgid, signal.SIGKILL)
            if self._wait_for_group(pgid, process, _SIGKILL_WAIT_S):
                self.log.info("spark-submit process group %d killed", pgid)
            else:
                self.log.error("spark-submit process group %d survived SIGKILL for %ds", pgid, _SIGKILL_WAIT_S)
        finally:
            try:
                reaper.wait(timeout=_SIGKILL_WAIT_S)
            except subprocess.TimeoutExpired:
                reaper.kill()

    @staticmethod
    def _wait_for_group(pgid: int, process: _Process | None, timeout_s: float) -> bool:
        """Whether the group is gone within ``timeout_s``. Never blocks on the leader: ``poll`` gives
        up rather than wait when the thread that runs ``wait`` holds the process's lock."""
        deadline = time.monotonic() + timeout_s
        while True:
            if process is not None:
                process.popen.poll()  # reap the leader, else it lingers as a zombie in the group
            if not group_alive(pgid):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def announced_metrics(self, run: PipelineRun) -> dict[str, Any] | None:
        process = self._processes.get(run.run_id)
        return process.metrics if process is not None else None

    def cleanup(self, run: PipelineRun, state: RunState) -> None:
        """Remove a successful run's directory (config.json, metrics.json) and its task's commit log (no try
        of a succeeded task instance follows; a cleared one has a new run key); keep a failed one to inspect
        and the commit log for the retry."""
        if state == RunState.SUCCEEDED:
            shutil.rmtree(run.details["run_dir"], ignore_errors=True)
            if task_dir := run.details.get("task_dir"):
                shutil.rmtree(task_dir, ignore_errors=True)
        else:
            self.log.info("Run files kept for inspection in %s", run.details["run_dir"])

    def describe_failure(self, run: PipelineRun) -> str | None:
        process = self._processes.get(run.run_id)
        if process is None:
            return None
        code = process.popen.returncode
        if process.cancelled:
            return "spark-submit was stopped (the task was killed or timed out)"
        what = {
            2: "the driver rejected the config (exit code 2)",
            1: "the pipeline failed (exit code 1)",
        }.get(code, f"spark-submit exited with code {code}")
        tail = "\n".join(process.tail)
        return f"{what}; last output lines:\n{tail}" if tail else what

    def run_url(self, run: PipelineRun) -> str | None:
        """While the run lives, the driver's Spark UI (``local`` master) or the standalone master's page
        of the application; once it ended, the run's page on the history server when one is configured,
        else the master's page (a standalone master keeps it; a local driver's UI ended with it)."""
        process = self._processes.get(run.run_id)
        if process is None:
            return None
        if process.popen.poll() is not None:
            history = self.runtime.history_server_url
            if history and process.event_log and process.app_id:
                return f"{history.rstrip('/')}/history/{quote(process.app_id)}/jobs/"
            if not self.runtime.master.startswith("spark://"):
                return None
        return self._application_url(process)

    def _application_url(self, process: _Process) -> str | None:
        if self.runtime.master.startswith("spark://"):
            base = self.runtime.master_ui_url
            return f"{base.rstrip('/')}/app/?appId={quote(process.app_id)}" if base and process.app_id else None
        return process.ui_url

    def runtime_info(self, run: PipelineRun) -> dict[str, Any]:
        """What the metrics document's ``runtime`` block says about a local run."""
        return {"kind": self.runtime.kind, "master": self.runtime.master, "pid": int(run.details["pgid"])}

    # Internals. ------------------------------------------------------------------------------------

    def _process(self, run: PipelineRun) -> _Process:
        try:
            return self._processes[run.run_id]
        except KeyError:
            raise SparkRuntimeError(
                f"spark-submit pid {run.run_id} was not started by this hook: a local run cannot be "
                "re-attached after the worker process that started it is gone"
            ) from None

    def _handle_line(self, process: _Process, line: str) -> None:
        marker = parse_marker_line(line)
        if marker is not None and marker[0] == APPLICATION_MARKER:
            announced = marker[1] or {}
            process.app_id, process.ui_url = announced.get("app_id"), announced.get("ui_url")
            url = self._application_url(process)
            self.log.info("Spark application %s%s", process.app_id, f": {url}" if url else "")
            if url and self.on_run_url is not None:
                self.on_run_url(url)
            return
        if marker is not None:
            process.metrics = marker[1]
            self.log.info("Driver metrics received (%d bytes)", len(line))
            return
        process.tail.append(line)
        process.output.feed(line)

    def _environment(self, secrets: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.runtime.env)
        env.update(secrets or {})
        env["SPARK_HOME"] = str(self.spark_home)
        env[LEVELLED_LOG_ENV] = "1"  # the driver's lines carry their level: each keeps it in the task log
        # The driver runs under the worker's interpreter (it has the provider's dependencies); executors
        # of a standalone cluster keep their own python, which a pure SQL pipeline does not even start.
        if "PYSPARK_DRIVER_PYTHON" not in env and "PYSPARK_PYTHON" not in env:
            env["PYSPARK_DRIVER_PYTHON"] = sys.executable
            if self.runtime.master.startswith("local"):
                env["PYSPARK_PYTHON"] = sys.executable
        return env

    def _state_from_metrics(self, run: PipelineRun) -> RunState:
        metrics = self.fetch_metrics(run)
        if metrics is not None and metrics.get("status") == "succeeded":
            return RunState.SUCCEEDED
        return RunState.FAILED


def _redact_command(command: list[str]) -> list[str]:
    shown = []
    for arg in command:
        key, sep, _ = arg.partition("=")
        shown.append(f"{key}=***" if sep and _SENSITIVE.search(key) else arg)
    return shown
