"""The worker's activity interceptors: every failed attempt on the audit log, and a heartbeat
for every running attempt.

- Failures: successful activities that change the world write their audit lines in the same
  transaction as the change (activities/records.py). AuditActivityFailures adds the other
  half: each failed attempt is written to the audit log, keyed by activity and attempt so
  that it is written once.
- Heartbeats: the workflows give each regular activity a heartbeat timeout
  (workflows/process.py, ACTIVITY), so that the work of a crashed worker is retried within
  seconds rather than after the activity's start-to-close timeout. The activities know
  nothing of it: Heartbeats heartbeats for each attempt while it runs, from the worker's event
  loop, so only a worker that is gone (or stuck) misses it. An attempt that ends within the
  first interval, nearly all of them, sends no heartbeat at all.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from onboarding.core.logs import get_logger
from onboarding.store import audit

log = get_logger("audit")


class AuditActivityFailures(Interceptor):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _AuditingFailures(next, self.pool)


class _AuditingFailures(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, pool: asyncpg.Pool) -> None:
        super().__init__(next)
        self.pool = pool

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await self.next.execute_activity(input)
        except Exception as err:
            info = activity.info()
            try:
                await audit.append(self.pool, [audit.Entry(
                    entry_id=f"{info.workflow_id}/{info.workflow_run_id}/activity/"
                             f"{info.activity_id}/attempt/{info.attempt}",
                    application_id=info.workflow_id, workflow_id=info.workflow_id,
                    action=info.activity_type, result="failed",
                    reason=f"{type(err).__name__}: {err}"[:1000],
                    details={"attempt": info.attempt, "activity_id": info.activity_id})])
            except Exception:  # the database may be what failed: the log still has it
                log.warning("could not audit an activity failure", exc_info=True)
            raise


class Heartbeats(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Heartbeating(next)


class _Heartbeating(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        timeout = activity.info().heartbeat_timeout
        if not timeout:
            return await self.next.execute_activity(input)
        beating = asyncio.create_task(_beat(timeout.total_seconds() / 3))
        try:
            return await self.next.execute_activity(input)
        finally:
            beating.cancel()


async def _beat(every: float) -> None:
    while True:
        await asyncio.sleep(every)
        activity.heartbeat()
