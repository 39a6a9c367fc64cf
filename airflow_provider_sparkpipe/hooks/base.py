"""``SparkPipelineHook``: the interface every runtime's hook implements (submit, poll, cancel, metrics);
``hook_for``, which finds the hook a runtime names; and ``Attempts``, the re-attach rule of the runtimes
whose runs live outside the worker."""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from airflow.sdk import BaseHook

from airflow_provider_sparkpipe.exceptions import SparkRuntimeError
from airflow_provider_sparkpipe.get_provider_info import SPARKPIPE_UI_FIELD_BEHAVIOUR
from airflow_provider_sparkpipe.runs import PipelineRun, PipelineSubmission, RunState
from airflow_provider_sparkpipe.runtimes.base import SparkRuntime
from airflow_provider_sparkpipe.runtimes.registry import runtime_from_connection
from airflow_provider_sparkpipe.staging import Staging

RuntimeT = TypeVar("RuntimeT", bound=SparkRuntime)
StateT = TypeVar("StateT")
StateT_co = TypeVar("StateT_co", covariant=True)


class SparkPipelineHook(BaseHook, Generic[RuntimeT]):
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

    passes_environment: ClassVar[bool] = False
    """Whether the hook hands ``PipelineSubmission.environment`` (connection secrets) to the driver."""

    supports_deferral: ClassVar[bool] = False
    """Whether a submitted run can be polled from the triggerer (a remote job, not a local process)."""

    def __init__(
        self, runtime: RuntimeT | None = None, sparkpipe_conn_id: str = default_conn_name, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.sparkpipe_conn_id = sparkpipe_conn_id
        self._runtime = runtime
        # Called with the run's UI address when the hook learns it while the run lives (a local
        # driver's Spark UI); the operator shows it as the task's link at once.
        self.on_run_url: Callable[[str], None] | None = None

    @property
    def runtime(self) -> RuntimeT:
        """This hook's runtime (the one its connection describes when none was given)."""
        if self._runtime is None:
            self._runtime = runtime_from_connection(self.get_connection(self.sparkpipe_conn_id))  # type: ignore[assignment]
        assert self._runtime is not None
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
            hook = self if type(self) is not SparkPipelineHook else hook_for(runtime)
            return True, hook.check()
        except Exception as exc:
            return False, str(exc)

    # The runtime interface. ------------------------------------------------------------------------

    def check(self) -> str:
        """Verify the runtime can be used (binaries, credentials); return a one-line description."""
        return self.runtime.describe()

    def submit(self, submission: PipelineSubmission, previous: PipelineRun | None = None) -> PipelineRun:
        """Stage the driver and the config and start the run, or re-attach to the run of an earlier try.

        ``previous``: the run the last try of this task instance submitted, as the operator kept it in
        Airflow's task state store (None without one): a hook that can re-attach asks for its state
        instead of looking the task's runs up."""
        raise NotImplementedError(f"{type(self).__name__} does not submit pipelines; use hook_for(runtime)")

    def poll(self, run: PipelineRun) -> RunState:
        """The current state of a run, without waiting."""
        raise NotImplementedError(f"{type(self).__name__} does not poll pipelines; use hook_for(runtime)")

    def cancel(self, run: PipelineRun) -> None:
        """Stop a run and everything it started; a finished run is left as it is."""
        raise NotImplementedError(f"{type(self).__name__} does not cancel pipelines; use hook_for(runtime)")

    def fetch_metrics(self, run: PipelineRun) -> dict[str, Any] | None:
        """The metrics document the driver wrote for a finished run, or None if it wrote none.

        The staged ``metrics.json`` (``run.details["metrics_uri"]``) when the run has one, else the
        document of the driver's ``SPARKPIPE_METRICS`` line (:meth:`announced_metrics`)."""
        uri = run.details.get("metrics_uri")
        if uri and self.staging is not None:
            metrics = self.staging.read_metrics(str(uri))
            if metrics is not None:
                return metrics
        return self.announced_metrics(run)

    @cached_property
    def staging(self) -> Staging | None:
        """Where this hook stages the bundle, configs and metrics (:mod:`airflow_provider_sparkpipe.staging`)."""
        return None

    def announced_metrics(self, run: PipelineRun) -> dict[str, Any] | None:
        """The metrics the driver printed on its ``SPARKPIPE_METRICS`` line, when the hook reads its output."""
        return None

    def cleanup(self, run: PipelineRun, state: RunState) -> None:
        """Remove what the run staged once its metrics are read (nothing by default)."""

    def describe_failure(self, run: PipelineRun) -> str | None:
        """Why a run failed when the driver wrote no metrics (exit status, job state message)."""
        return None

    def runtime_info(self, run: PipelineRun) -> dict[str, Any]:
        """The metrics document's ``runtime`` block: at least ``kind``, plus the runtime's job ids."""
        return {"kind": run.runtime_kind, "run_id": run.run_id}

    def usage(self, run: PipelineRun) -> dict[str, Any] | None:
        """What a finished run consumed as the runtime's own API reports it (units in the key names),
        merged by the operator into the metrics' ``runtime.usage`` beside the driver's figures."""
        return None

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


def hook_class_of(runtime: SparkRuntime | type[SparkRuntime]) -> type[SparkPipelineHook[Any]]:
    """The hook class a runtime names in ``hook_class``, imported."""
    path = getattr(runtime, "hook_class", None)
    where = f"runtime {getattr(runtime, 'kind', runtime)!r}"
    if not isinstance(path, str) or "." not in path:
        raise SparkRuntimeError(f"{where}: hook_class must be the dotted path of a SparkPipelineHook, not {path!r}")
    module_name, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise SparkRuntimeError(f"{where}: cannot import its hook_class {path!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, SparkPipelineHook)):
        raise SparkRuntimeError(f"{where}: hook_class {path!r} is not a SparkPipelineHook")
    return cls


def hook_for(runtime: SparkRuntime) -> SparkPipelineHook[Any]:
    """The hook that runs pipelines on ``runtime``: its ``hook_class``, built for it."""
    return hook_class_of(runtime)(runtime)


# The re-attach rule. -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteAttempt(Generic[StateT]):
    """One remote run of a task instance: its attempt number (it is named ``<stem>-<number>``), the id
    the runtime gave it and its state in the runtime's own words (None: it no longer exists)."""

    number: int
    remote_id: str
    state: StateT | None


class AttemptSource(Protocol[StateT_co]):
    """What a runtime's hook tells :class:`Attempts`: its runs of a task instance and a run's state."""

    REATTACH_STATES: ClassVar[frozenset[Any]]
    """The states of the latest attempt a retry re-attaches to: pending, running and succeeded ones."""

    def list_attempts(self, stem: str) -> Iterable[tuple[str, str, StateT_co]]:
        """(name, remote id, state) of the runs that may be attempts of ``stem``, from one list request."""
        ...

    def stored_attempt_number(self, run: PipelineRun, stem: str) -> int | None:
        """The attempt number of the run an earlier try kept in Airflow's task state store, None when it
        is no attempt of ``stem`` (a cleared task, another runtime)."""
        ...

    def attempt_state(self, run: PipelineRun) -> StateT_co | None:
        """The state of that stored run, from one request (None: it no longer exists)."""
        ...


@dataclass(frozen=True)
class AttemptChoice(Generic[StateT]):
    """What ``submit`` does: follow the latest attempt again (``reattach_to``), or submit ``name``.

    Parameters:
        number: the attempt the run is: the latest one's when re-attaching, else the next one.
        name: ``<stem>-<number>``, the id or name of the run to submit.
        reattach_to: the latest attempt when a retry follows it instead of submitting, else None.
    """

    number: int
    name: str
    reattach_to: RemoteAttempt[StateT] | None = None


@dataclass(frozen=True)
class Attempts(Generic[StateT]):
    """The re-attach rule of the runtimes whose runs live outside the worker (Dataproc, EMR).

    A task instance names its remote runs ``<stem>-1``, ``<stem>-2``, ... (a name may go on after a
    space). Only the latest attempt's state decides: while it is pending or running, or once it
    succeeded, a retry re-attaches to it (a lost worker never starts a second run, a recorded success
    never runs the pipeline again); after it failed, was cancelled or vanished, attempt ``n + 1`` is
    submitted. The latest is the run an earlier try kept in the task state store (one request for its
    state), else the highest number the runtime lists (one list request). The hook supplies the listing
    and the state (:class:`AttemptSource`) and what a run is made of.

    Parameters:
        stem: the task instance's name stem, unique per task key.
        source: the hook.
        log: where the choice is logged.
        noun: what a run is called in the log (``Dataproc job``, ``EMR step``).
    """

    stem: str
    source: AttemptSource[StateT]
    log: Any
    noun: str = "run"

    def name(self, number: int) -> str:
        """The name of attempt ``number``."""
        return f"{self.stem}-{number}"

    def latest(self, previous: PipelineRun | None) -> RemoteAttempt[StateT] | None:
        """The attempt of the highest number: ``previous`` when it is one of this stem, else the listed one."""
        if previous is not None and (number := self.source.stored_attempt_number(previous, self.stem)) is not None:
            return RemoteAttempt(number, previous.run_id, self.source.attempt_state(previous))
        found = [
            RemoteAttempt(number, remote_id, state)
            for name, remote_id, state in self.source.list_attempts(self.stem)
            if (number := attempt_number(name, self.stem)) is not None
        ]
        return max(found, key=lambda attempt: attempt.number, default=None)

    def choose(self, previous: PipelineRun | None) -> AttemptChoice[StateT]:
        """Re-attach to the latest attempt or submit the next one, as the rule says; logs the choice."""
        latest = self.latest(previous)
        if latest is not None and latest.state is not None and latest.state in self.source.REATTACH_STATES:
            self.log.info(
                "%s %s (attempt %d of this task) is %s: re-attaching instead of submitting again",
                self.noun,
                latest.remote_id,
                latest.number,
                _state_text(latest.state),
            )
            return AttemptChoice(latest.number, self.name(latest.number), reattach_to=latest)
        number = latest.number + 1 if latest is not None else 1
        if latest is not None:
            ended = _state_text(latest.state) if latest.state is not None else "deleted"
            self.log.info(
                "%s %s (attempt %d of this task) ended %s: submitting attempt %d",
                self.noun,
                latest.remote_id,
                latest.number,
                ended,
                number,
            )
        return AttemptChoice(number, self.name(number))


def attempt_number(name: str, stem: str) -> int | None:
    """``n`` of a run named ``<stem>-<n>`` (or ``<stem>-<n> <more>``), None for a name of another stem."""
    match = re.match(rf"{re.escape(stem)}-([0-9]+)(?:\s|$)", name or "")
    return int(match.group(1)) if match else None


def _state_text(state: object) -> str:
    """A state as the log says it: a RunState's value, a runtime's raw state as it is."""
    return str(getattr(state, "value", state))
