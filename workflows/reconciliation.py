"""The key-reconciliation workflow: what the `key-reconciliation` Schedule starts, every 15
minutes by default (onboarding/temporal/schedules.py). One activity does the work
(activities/reconciliation.py): every active key whose owning process closed other than by
reaching production is revoked, audited and its applicant told."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reconciliation import Reconciled, Reconciliation


@workflow.defn(name="KeyReconciliation")
class KeyReconciliationWorkflow:
    @workflow.run
    async def run(self) -> Reconciled:
        return await workflow.execute_activity_method(
            Reconciliation.reconcile_keys,
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(minutes=1),
            # The next run comes anyway: a few attempts, then the schedule's next.
            retry_policy=RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(minutes=1)),
            summary="revoke the keys of closed processes")
