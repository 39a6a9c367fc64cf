"""``SparkPipelineHook``: the interface every runtime's hook implements (submit, poll, cancel, metrics)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_provider_sparkpipe.get_provider_info import SPARKPIPE_UI_FIELD_BEHAVIOUR

if TYPE_CHECKING:
    from airflow_provider_sparkpipe.runtimes.base import SparkRuntime


class RunState(StrEnum):
    """The state of one submitted pipeline run, as every runtime reports it."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)


@dataclass(frozen=True)
class PipelineSubmission:
    """Everything a runtime needs to run one pipeline once.

    Parameters:
        document: the validated config after ``${var}`` substitution, ``query_file`` inlined and
            ``${env:NAME}`` kept as written (secrets resolve on the driver): staged as ``config.json``.
        app_name: the Spark application name.
        task_key: unique per task instance (dag, task, run, map index) and per clear of it, safe in
            paths and job ids; a runtime uses it to find a run an earlier attempt (a retry) of the same
            task left behind.
        try_number: the attempt.
        labels: short key/values identifying the run (dag_id, task_id, run_id) for the runtime's UI.
        environment: secrets for the driver's environment (credentials of Airflow connections the
            config names), read by its ``${env:NAME}`` references; never staged or logged. Only
            runtimes with ``passes_environment`` receive a non-empty one.
    """

    document: Mapping[str, Any]
    app_name: str
    task_key: str
    try_number: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def run_key(self) -> str:
        """Unique per attempt: ``<task_key>__try<n>``."""
        return f"{self.task_key}__try{self.try_number}"


@dataclass
class PipelineRun:
    """A handle on one submitted run: what polling, cancelling and reading metrics need.

    ``details`` stays JSON-serialisable so that a deferred operator can hand the run to a trigger.
    """

    runtime_kind: str
    run_id: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"runtime_kind": self.runtime_kind, "run_id": self.run_id, "details": self.details}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PipelineRun:
        return cls(str(data["runtime_kind"]), str(data["run_id"]), dict(data.get("details") or {}))


class SparkPipelineHook(BaseHook):
    """Base of the runtime hooks, and the hook of the ``sparkpipe`` connection type.

    A subclass per runtime implements :meth:`submit`, :meth:`poll`, :meth:`cancel` and
    :meth:`fetch_metrics` on top of the official provider hooks; :meth:`wait` has a generic
    implementation it may replace. The triggerer calls these blocking methods from a thread.
    Instantiated for a connection (``BaseHook.get_hook``, the UI's *Test* button), the base class
    resolves the runtime the connection describes.

    Parameters:
        runtime: the runtime object; when None, the one described by ``sparkpipe_conn_id``.
        sparkpipe_conn_id: the id of a ``sparkpipe`` connection.
    """

    conn_name_attr = "sparkpipe_conn_id"
    default_conn_name = "sparkpipe_default"
    conn_type = "sparkpipe"
    hook_name = "Spark pipeline (sparkpipe)"

    def __init__(
        self, runtime: SparkRuntime | None = None, sparkpipe_conn_id: str = default_conn_name, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.sparkpipe_conn_id = sparkpipe_conn_id
        self._runtime = runtime
        # Called with the run's UI address when the hook learns it while the run lives (a local
        # driver's Spark UI); the operator shows it as the task's link at once.
        self.on_run_url: Callable[[str], None] | None = None

    @property
    def runtime(self) -> SparkRuntime:
        if self._runtime is None:
            from airflow_provider_sparkpipe.runtimes.base import runtime_from_connection

            self._runtime = runtime_from_connection(self.get_connection(self.sparkpipe_conn_id))
        return self._runtime

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form layout for Airflow versions that read it from the hook (before 3.2)."""
        behaviour = SPARKPIPE_UI_FIELD_BEHAVIOUR
        return {
            "hidden_fields": list(behaviour["hidden-fields"]),
            "relabeling": dict(behaviour["relabeling"]),
            "placeholders": dict(behaviour["placeholders"]),
        }

    def test_connection(self) -> tuple[bool, str]:
        """Check that the connection describes a valid runtime and that the runtime is usable."""
        try:
            runtime = self.runtime
            hook = self if type(self) is not SparkPipelineHook else runtime.hook()
            return True, hook.check()
        except Exception as exc:
            return False, str(exc)

    # The runtime interface. ------------------------------------------------------------------------

    def check(self) -> str:
        """Verify the runtime can be used (binaries, credentials); return a one-line description."""
        return self.runtime.describe()

    def submit(self, submission: PipelineSubmission) -> PipelineRun:
        """Stage the driver and the config and start the run (or re-attach to the same run key)."""
        raise NotImplementedError(f"{type(self).__name__} does not submit pipelines; use runtime.hook()")

    def poll(self, run: PipelineRun) -> RunState:
        """The current state of a run, without waiting."""
        raise NotImplementedError(f"{type(self).__name__} does not poll pipelines; use runtime.hook()")

    def cancel(self, run: PipelineRun) -> None:
        """Stop a run and everything it started; a finished run is left as it is."""
        raise NotImplementedError(f"{type(self).__name__} does not cancel pipelines; use runtime.hook()")

    def fetch_metrics(self, run: PipelineRun) -> dict[str, Any] | None:
        """The metrics document the driver wrote for a finished run, or None if it wrote none."""
        raise NotImplementedError(f"{type(self).__name__} does not read metrics; use runtime.hook()")

    def cleanup(self, run: PipelineRun, state: RunState) -> None:
        """Remove what the run staged once its metrics are read (nothing by default)."""

    def describe_failure(self, run: PipelineRun) -> str | None:
        """Why a run failed when the driver wrote no metrics (exit status, job state message)."""
        return None

    def runtime_info(self, run: PipelineRun) -> dict[str, Any]:
        """The metrics document's ``runtime`` block: at least ``kind``, plus the runtime's job ids."""
        return {"kind": run.runtime_kind, "run_id": run.run_id}

    def run_url(self, run: PipelineRun) -> str | None:
        """The run's page in the runtime's own UI (a console, a Spark master), when there is one.

        Asked right after the submit and again when the run has ended; :attr:`on_run_url` tells of
        an address learnt in between."""
        return None

    def wait(self, run: PipelineRun, poll_interval: float = 10.0) -> RunState:
        """Block until the run finishes; return its final state."""
        while not (state := self.poll(run)).finished:
            time.sleep(poll_interval)
        return state
