"""Every activity outcome on the record: failures too.

Successful activities that change the world audit themselves, in the same transaction as the
change (activities/platform.py). This interceptor adds the other half: each failed attempt is
written to the audit log, keyed by activity and attempt so that it is written once.
"""

from __future__ import annotations

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
        return _Inbound(next, self.pool)


class _Inbound(ActivityInboundInterceptor):
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
