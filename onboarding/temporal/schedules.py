"""Temporal Schedules the platform runs, created idempotently by `make up`, by the worker at
start and by docker-compose's temporal-setup job (with the `temporal` CLI: the same id, type
and interval).

- `key-reconciliation`: every KEY_RECONCILIATION_MINUTES (15 by default), the KeyReconciliation
  workflow revokes every active key whose owning process closed other than by reaching
  production (workflows/reconciliation.py). `temporal schedule trigger --schedule-id
  key-reconciliation` runs it at once.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from onboarding.core.config import Settings

KEY_RECONCILIATION = "key-reconciliation"
KEY_RECONCILIATION_WORKFLOW = "KeyReconciliation"


async def ensure_key_reconciliation(client: Client, settings: Settings) -> bool:
    """The schedule, created if missing; True when this call created it. An existing one is
    left as it is (an operator may have paused or changed it)."""
    try:
        await client.create_schedule(KEY_RECONCILIATION, Schedule(
            action=ScheduleActionStartWorkflow(
                KEY_RECONCILIATION_WORKFLOW, id=f"{KEY_RECONCILIATION}-run",
                task_queue=settings.temporal_task_queue),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(
                every=timedelta(minutes=settings.key_reconciliation_minutes))]),
            # A run still at work when the next is due: the next is skipped, not queued.
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP)))
    except ScheduleAlreadyRunningError:
        return False
    return True
