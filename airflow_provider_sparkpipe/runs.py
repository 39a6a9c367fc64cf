"""The run types both sides share: what a runtime is asked to run (``PipelineSubmission``), the handle
on a submitted run (``PipelineRun``) and its state (``RunState``).

Runtimes (plain data) and hooks (behaviour) import this module; it imports neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


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
            runtimes whose hook has ``passes_environment`` receive a non-empty one.
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
