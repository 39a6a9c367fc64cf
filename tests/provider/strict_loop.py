"""Run a trigger as the triggerer does, and fail if it blocks the event loop.

Two checks around the trigger's whole cycle (building its hook, every poll, the cancel):

- deterministic: an audit hook records every blocking operation made *on the loop's thread*: a
  module imported for the first time, a file opened, a socket connected or resolved, a process
  started, a ``time.sleep``. Work the trigger hands to a thread is not on the loop's thread.
- asyncio's own slow-callback detection (debug mode, ``loop.slow_callback_duration``), which
  Airflow's triggerer reports as "a badly-written trigger".
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from airflow_provider_sparkpipe.triggers.spark_pipeline import SparkPipelineTrigger

BLOCKING_EVENTS = frozenset(
    {"import", "open", "socket.connect", "socket.getaddrinfo", "subprocess.Popen", "os.system", "time.sleep"}
)
SLOW_CALLBACK_S = 0.5

_watched: dict[str, Any] = {"thread": None, "seen": []}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in BLOCKING_EVENTS or _watched["thread"] != threading.get_ident():
        return
    if event == "open" and str(args[0]).endswith(".py"):
        return  # debug mode's tracebacks read source lines; a first import shows as "import"
    _watched["seen"].append(f"{event} {args[0]!r}" if args else event)


sys.addaudithook(_audit)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_on_a_strict_loop(make: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``make()`` on a fresh debug-mode loop; raise AssertionError naming what blocked it."""
    loop = asyncio.new_event_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_CALLBACK_S
    records = _Records()
    asyncio_log = logging.getLogger("asyncio")
    asyncio_log.addHandler(records)
    try:
        loop.run_until_complete(asyncio.sleep(0))  # the loop's own start-up is not the trigger's
        _watched["thread"], _watched["seen"] = threading.get_ident(), []
        try:
            result = loop.run_until_complete(make())
        finally:
            _watched["thread"] = None
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio_log.removeHandler(records)
        loop.close()
    blocked = list(_watched["seen"])
    slow = [m for m in records.messages if "took" in m and "seconds" in m]
    assert not blocked, f"blocking calls on the event loop's thread: {blocked[:20]}"
    assert not slow, f"slow callbacks on the event loop: {slow}"
    return result


def first_event(trigger: SparkPipelineTrigger) -> dict[str, Any]:
    """The trigger's first event, from a full cycle on a strict loop."""

    async def collect() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger fired no event")

    return run_on_a_strict_loop(collect)


def kill(trigger: SparkPipelineTrigger) -> None:
    """What the triggerer does when a user kills the deferred task, on a strict loop."""
    run_on_a_strict_loop(trigger.on_kill)
