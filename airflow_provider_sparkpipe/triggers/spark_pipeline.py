"""``SparkPipelineTrigger``: polls a submitted run from the triggerer for deferrable runtimes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_sparkpipe.hooks.base import SparkPipelineHook, hook_for
from airflow_provider_sparkpipe.runs import PipelineRun, RunState
from airflow_provider_sparkpipe.runtimes.registry import runtime_from_dict


class SparkPipelineTrigger(BaseTrigger):
    """Poll one run until it finishes, then fire one event ``{"state": ..., "run": {...}}``.

    The event always carries the run (its ids), also when polling failed (``"error"``) or the
    deadline passed (``"timed_out": true``), so the operator can still report and clean up.

    Parameters:
        runtime: the runtime as :meth:`SparkRuntime.to_dict` gives it.
        run: the run as :meth:`PipelineRun.to_dict` gives it.
        poll_interval: seconds between two polls.
        deadline: epoch seconds after which the run is cancelled and a timeout reported (the task's
            ``execution_timeout``); None waits for ever.
        cancel_on_kill: cancel the run when a user kills the deferred task (mark failed/success, clear).
    """

    def __init__(
        self,
        runtime: dict[str, Any],
        run: dict[str, Any],
        poll_interval: float = 10.0,
        deadline: float | None = None,
        cancel_on_kill: bool = True,
    ) -> None:
        super().__init__()
        self.runtime = runtime
        self.run_data = run
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.cancel_on_kill = cancel_on_kill

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "runtime": self.runtime,
                "run": self.run_data,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "cancel_on_kill": self.cancel_on_kill,
            },
        )

    def _hook(self) -> SparkPipelineHook[Any]:
        """The runtime's hook: importing its module and the cloud SDK it uses is blocking work."""
        return hook_for(runtime_from_dict(self.runtime))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # Everything that blocks (importing a cloud SDK, building its client, reading credentials,
        # each API call) runs in the triggerer's thread pool, never on its event loop.
        try:
            hook = await asyncio.to_thread(self._hook)
            run = PipelineRun.from_dict(self.run_data)
            while not (state := await asyncio.to_thread(hook.poll, run)).finished:
                if self.deadline is not None and time.time() >= self.deadline:
                    self.log.info("Deadline passed: cancelling run %s", run.run_id)
                    await asyncio.to_thread(hook.cancel, run)
                    yield TriggerEvent({"state": RunState.CANCELLED.value, "run": self.run_data, "timed_out": True})
                    return
                wait = self.poll_interval
                if self.deadline is not None:
                    wait = max(0.0, min(wait, self.deadline - time.time()))
                await asyncio.sleep(wait)
        except Exception as exc:
            yield TriggerEvent({"state": RunState.FAILED.value, "run": self.run_data, "error": str(exc)})
            return
        yield TriggerEvent({"state": state.value, "run": self.run_data})

    async def on_kill(self) -> None:
        """A user killed the deferred task: stop the remote run (not called on triggerer restarts)."""
        if self.cancel_on_kill:
            run = PipelineRun.from_dict(self.run_data)
            self.log.info("Task killed: cancelling run %s", run.run_id)
            hook = await asyncio.to_thread(self._hook)
            await asyncio.to_thread(hook.cancel, run)
