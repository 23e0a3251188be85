"""The one timer a process's deadlines wait on, kept from one wait to the next.

A step waiting on a person waits until its decision comes or its nearest deadline passes.
With `workflow.wait_condition(timeout=...)` that is a timer started when the step begins and
cancelled when its decision comes: two events and two of the server's timer writes per step,
though the next step's deadline is later still. `DeadlineClock.wait_condition` keeps the timer
when the wait ends: the next wait whose deadline is no earlier waits on it too, and when it
fires before that deadline (the step began after the one it was started for), the wait starts
one for its own. A procedure decided within its first reminder's days costs one timer; one
whose steps take days costs at most one more workflow task per step, when an earlier step's
timer fires. It is never cancelled but for a sooner deadline, and ends with the run.

Deterministic: a timer and `workflow.now()`, nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from temporalio import workflow


class DeadlineClock:
    def __init__(self) -> None:
        self._timer: asyncio.Task[None] | None = None
        self._rings_at: datetime | None = None

    async def wait_condition(self, condition: Callable[[], bool], until: datetime,
                             summary: str) -> None:
        """Like `workflow.wait_condition(condition, timeout=until - now)`: returns when the
        condition holds, raises asyncio.TimeoutError when `until` passes first."""
        while not condition():
            if workflow.now() >= until:
                raise asyncio.TimeoutError
            timer = self._timer_by(until, summary)
            await workflow.wait_condition(lambda: condition() or timer.done())

    def _timer_by(self, until: datetime, summary: str) -> asyncio.Task[None]:
        """A pending timer that fires no later than `until`: the one running, or a new one."""
        if self._timer is not None and not self._timer.done():
            assert self._rings_at is not None
            if self._rings_at <= until:
                return self._timer
            self._timer.cancel()  # fires after `until`: one sooner instead
        self._rings_at = until
        self._timer = asyncio.create_task(workflow.sleep(until - workflow.now(),
                                                         summary=summary))
        return self._timer
