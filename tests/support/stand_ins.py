"""Activities standing in for the platform's, registered under the same names."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from temporalio import activity

from activities import platform_activities
from activities.records import Records
from onboarding.core.config import Settings
from onboarding.domain.record import Commit, Committed


def activity_name(fn: Any) -> str:
    return fn.__temporal_activity_definition.name


def with_stand_ins(pool: asyncpg.Pool, settings: Settings, *stand_ins: Any) -> list[Any]:
    """The platform's activities, those named by a stand-in (an object whose @activity.defn
    methods bear their names) replaced by its."""
    theirs = [getattr(s, name) for s in stand_ins for name in dir(type(s))
              if hasattr(getattr(type(s), name), "__temporal_activity_definition")]
    replaced = {activity_name(fn) for fn in theirs}
    return [fn for fn in platform_activities(pool, settings)
            if activity_name(fn) not in replaced] + theirs


class HeldCommit(Records):
    """The real commit, held while `holds(commit)` until the test lets it go, as a loaded
    database would: so that the test can act while it is written. Held `after_write`, the
    transaction has committed and the answer is held: a worker stalled or cut off then."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings,
                 holds: Callable[[Commit], bool], after_write: bool = False) -> None:
        super().__init__(pool, settings)
        self.holds, self.after_write = holds, after_write
        self.reached, self.released = asyncio.Event(), asyncio.Event()

    @activity.defn(name="write_record")
    async def write_record(self, commit: Commit) -> Committed:
        held = self.holds(commit) and not self.released.is_set()
        if held and not self.after_write:
            await self._hold()
        answer = await super().write_record(commit)
        if held and self.after_write:
            await self._hold()
        return answer

    async def _hold(self) -> None:
        self.reached.set()
        await self.released.wait()

    @asynccontextmanager
    async def while_held(self, timeout: float) -> AsyncIterator[None]:
        """`async with held.while_held(t):` once a held commit is reached (within t seconds),
        the block runs while it is held; then it is let go, whatever the block did."""
        await asyncio.wait_for(self.reached.wait(), timeout)
        try:
            yield
        finally:
            self.released.set()
