"""``SparkPipelineTrigger``: polls a submitted run from the triggerer for deferrable runtimes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_sparkpipe.hooks.base import PipelineRun, RunState
from airflow_provider_sparkpipe.runtimes.base import runtime_from_dict


class SparkPipelineTrigger(BaseTrigger):
    """Poll one run until it finishes, then fire one event ``{"state": ..., "run": {...}}``.

    Parameters:
        runtime: the runtime as :meth:`SparkRuntime.to_dict` gives it.
        run: the run as :meth:`PipelineRun.to_dict` gives it.
        poll_interval: seconds between two polls.
    """

    def __init__(self, runtime: dict[str, Any], run: dict[str, Any], poll_interval: float = 10.0) -> None:
        super().__init__()
        self.runtime = runtime
        self.run_data = run
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"runtime": self.runtime, "run": self.run_data, "poll_interval": self.poll_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            hook = runtime_from_dict(self.runtime).hook()
            run = PipelineRun.from_dict(self.run_data)
            while not (state := await hook.apoll(run)).finished:
                await asyncio.sleep(self.poll_interval)
        except Exception as exc:
            yield TriggerEvent({"state": RunState.FAILED.value, "run": self.run_data, "error": str(exc)})
            return
        yield TriggerEvent({"state": state.value, "run": self.run_data})
