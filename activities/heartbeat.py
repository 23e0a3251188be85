"""A heartbeat for every running activity, so that the work of a crashed worker is retried
within seconds rather than after the activity's start-to-close timeout (2 minutes for key
issuance).

The workflows give each activity a heartbeat timeout (workflows/procedure.py, ACTIVITY): the
server retries an attempt that has not heartbeated for that long. The activities themselves know
nothing of it: this interceptor heartbeats for each attempt while it runs, from the worker's
event loop, so only a worker that is gone (or stuck) misses it. An attempt that ends within the
first interval, nearly all of them, sends no heartbeat at all.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor


class Heartbeats(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next)


class _Inbound(ActivityInboundInterceptor):
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
