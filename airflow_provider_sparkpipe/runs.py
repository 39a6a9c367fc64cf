"""The run types both sides share: what a runtime is asked to run (``PipelineSubmission``), the handle
on a submitted run (``PipelineRun``) and its state (``RunState``).

Runtimes (plain data) and hooks (behaviour) import this module; it imports neither.
"""

from __future__ import annotations

import hashlib
import json
import re
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
        resume_key: the driver's ``--run-key``: the same for every try of one task instance, another
            one for another task instance or a cleared one (:func:`resume_key`); None runs every
            sequence (the operator's ``resume=False`` or ``full_refresh``).
    """

    document: Mapping[str, Any]
    app_name: str
    task_key: str
    try_number: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)
    resume_key: str | None = None

    @property
    def run_key(self) -> str:
        """Unique per attempt: ``<task_key>__try<n>``."""
        return f"{self.task_key}__try{self.try_number}"

    def resume_arguments(self, state_uri: str | None) -> list[str]:
        """The driver's ``--run-key KEY --state-dir STATE`` (its commit log, kept across the task's tries
        in ``state_uri``: :meth:`~airflow_provider_sparkpipe.staging.Staging.state_uri`); none without a
        resume key or a place for the log."""
        if not self.resume_key or not state_uri:
            return []
        return ["--run-key", self.resume_key, "--state-dir", state_uri]


_SAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_READABLE_KEY_LENGTH = 80


def resume_key(dag_id: str, task_id: str, run_id: str, map_index: int, clear: int = 0) -> str:
    """The run key of a task instance: the same for all its tries, distinct for any other (``clear``, the
    first try number of a cleared task instance, makes its own).

    A safe file name and command-line word: ``<dag_id>.<task_id>-<hash>``, the readable part cut to 80
    characters and rid of anything but letters, digits, ``.``, ``_`` and ``-`` (never leading), the hash
    (sha256 of all five parts, 20 hex digits) telling instances apart; the run id and map index only in
    the hash. Nothing of it is secret: ids Airflow shows in its UI.
    """
    identity = json.dumps([dag_id, task_id, run_id, int(map_index), int(clear)])
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:20]
    readable = _SAFE_KEY_CHARS.sub("_", f"{dag_id}.{task_id}")[:_READABLE_KEY_LENGTH].strip("._-")
    return f"{readable}-{digest}" if readable else f"sparkpipe-{digest}"


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
