"""The re-attach rule every remote runtime follows (``hooks/base.py``: ``Attempts``), against a runtime
whose runs are a list in memory: what a retry re-attaches to, the number it submits next, and the
one request each lookup costs. Dataproc's and EMR's own tests follow the rule through their APIs."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from airflow_provider_sparkpipe.hooks.base import Attempts, attempt_number
from airflow_provider_sparkpipe.runs import PipelineRun, RunState

STEM = "sp-daily-0123456789"


@dataclass
class Runtime:
    """A runtime's runs as (name, id, state); ``requests`` counts what the rule asked of it."""

    runs: list[tuple[str, str, RunState]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    REATTACH_STATES: ClassVar[frozenset[RunState]] = frozenset({RunState.PENDING, RunState.RUNNING, RunState.SUCCEEDED})

    def list_attempts(self, stem: str) -> Iterable[tuple[str, str, RunState]]:
        self.requests.append("list")
        return list(self.runs)

    def stored_attempt_number(self, run: PipelineRun, stem: str) -> int | None:
        return attempt_number(run.details.get("name", ""), stem)

    def attempt_state(self, run: PipelineRun) -> RunState | None:
        self.requests.append("get")
        return next((state for _, remote_id, state in self.runs if remote_id == run.run_id), None)


def attempts(runtime: Runtime) -> Attempts[RunState]:
    return Attempts(STEM, runtime, logging.getLogger("sparkpipe.test"), "job")


@pytest.mark.parametrize(
    ("name", "number"),
    [
        (f"{STEM}-1", 1),
        (f"{STEM}-12", 12),
        (f"{STEM}-3 dag__task__run__-1", 3),  # an EMR step's name goes on after a space
        (f"{STEM}-x", None),
        (f"{STEM}-3-4", None),
        (f"{STEM}-", None),
        (f"{STEM}7-1", None),
        ("sp-other-0123456789-1", None),
        ("", None),
    ],
)
def test_an_attempts_number_is_read_from_its_name(name: str, number: int | None) -> None:
    assert attempt_number(name, STEM) == number


def test_a_stem_is_matched_as_text_not_as_a_pattern() -> None:
    assert attempt_number("a.b-1", "a.b") == 1
    assert attempt_number("aXb-1", "a.b") is None


def test_the_first_submission_is_attempt_1() -> None:
    runtime = Runtime()
    choice = attempts(runtime).choose(None)
    assert (choice.number, choice.name, choice.reattach_to) == (1, f"{STEM}-1", None)
    assert runtime.requests == ["list"]


@pytest.mark.parametrize("state", [RunState.PENDING, RunState.RUNNING, RunState.SUCCEEDED])
def test_a_retry_re_attaches_while_the_latest_attempt_runs_or_once_it_succeeded(
    state: RunState, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = Runtime([(f"{STEM}-1", "id-1", RunState.FAILED), (f"{STEM}-2", "id-2", state)])
    with caplog.at_level(logging.INFO, "sparkpipe.test"):
        choice = attempts(runtime).choose(None)
    assert choice.reattach_to is not None and choice.reattach_to.remote_id == "id-2"
    assert (choice.number, choice.name) == (2, f"{STEM}-2")
    assert (
        f"job id-2 (attempt 2 of this task) is {state.value}: re-attaching instead of submitting again" in caplog.text
    )


@pytest.mark.parametrize("state", [RunState.FAILED, RunState.CANCELLED])
def test_after_a_failed_or_cancelled_attempt_the_next_number_is_submitted(
    state: RunState, caplog: pytest.LogCaptureFixture
) -> None:
    # Only the latest attempt decides: an earlier one still running is not re-attached to.
    runtime = Runtime([(f"{STEM}-2", "id-2", state), (f"{STEM}-1", "id-1", RunState.RUNNING)])
    with caplog.at_level(logging.INFO, "sparkpipe.test"):
        choice = attempts(runtime).choose(None)
    assert (choice.number, choice.name, choice.reattach_to) == (3, f"{STEM}-3", None)
    assert f"job id-2 (attempt 2 of this task) ended {state.value}: submitting attempt 3" in caplog.text


def test_runs_of_other_tasks_are_not_attempts() -> None:
    runtime = Runtime([("sp-other-0123456789-5", "other", RunState.RUNNING), (f"{STEM}-1 x", "id-1", RunState.FAILED)])
    choice = attempts(runtime).choose(None)
    assert (choice.number, choice.reattach_to) == (2, None)


def test_the_run_an_earlier_try_stored_is_read_with_one_request_and_no_listing() -> None:
    runtime = Runtime([(f"{STEM}-4", "id-4", RunState.RUNNING)])
    stored = PipelineRun("fake", "id-4", {"name": f"{STEM}-4"})
    choice = attempts(runtime).choose(stored)
    assert choice.reattach_to is not None and choice.reattach_to.remote_id == "id-4"
    assert runtime.requests == ["get"]


def test_a_stored_run_that_no_longer_exists_is_followed_by_the_next_attempt(caplog: pytest.LogCaptureFixture) -> None:
    runtime = Runtime()
    stored = PipelineRun("fake", "id-4", {"name": f"{STEM}-4"})
    with caplog.at_level(logging.INFO, "sparkpipe.test"):
        choice = attempts(runtime).choose(stored)
    assert (choice.number, choice.reattach_to) == (5, None)
    assert "ended deleted: submitting attempt 5" in caplog.text
    assert runtime.requests == ["get"]


def test_a_stored_run_of_another_task_is_no_hint() -> None:
    runtime = Runtime([(f"{STEM}-1", "id-1", RunState.SUCCEEDED)])
    stored = PipelineRun("fake", "elsewhere", {"name": "sp-other-0123456789-7"})
    choice = attempts(runtime).choose(stored)
    assert choice.reattach_to is not None and choice.reattach_to.remote_id == "id-1"
    assert runtime.requests == ["list"]
