"""No credential without a living process (issue 11 §3): every active key whose owning process
closed other than by reaching production (terminated, failed, timed out, cancelled, ended
without revoking it, or gone from Temporal) is revoked, audited and its applicant told. Run by
the `key-reconciliation` Schedule (onboarding/temporal/schedules.py) through the
KeyReconciliation workflow (workflows/reconciliation.py).

A process is asked of Temporal (describe) only when the record does not already say its keys
are settled (an application in production keeps its keys: onboarding/store/keys.py). A process
still running keeps its keys, however long it waits. Idempotent: a key is revoked once (the
update takes only active keys), its audit line and the notice by their ids.
"""

from __future__ import annotations

import asyncpg
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from onboarding.core.config import Settings
from onboarding.core.logs import get_logger
from onboarding.domain.models import Model
from onboarding.store import audit, outbox
from onboarding.store import keys as key_store

log = get_logger("reconciliation")


class Reconciled(Model):
    """What one reconciliation did: the processes asked, the keys revoked (by key id)."""

    processes_asked: int = 0
    revoked: list[str] = []


class Reconciliation:
    def __init__(self, pool: asyncpg.Pool, settings: Settings,
                 client: Client | None = None) -> None:
        self.pool = pool
        self.client = client

    @activity.defn
    async def reconcile_keys(self) -> Reconciled:
        assert self.client is not None, "the worker gives this activity its Temporal client"
        held = await key_store.held_by_open_processes(self.pool)
        by_owner: dict[str, list[key_store.HeldKey]] = {}
        for key in held:
            by_owner.setdefault(key.owner_workflow_id, []).append(key)
        revoked: list[str] = []
        for owner, keys in by_owner.items():
            activity.heartbeat(owner)
            closed = await self.closed(owner)
            if closed is None:
                continue
            revoked += await self.revoke(keys, closed)
        log.info("keys reconciled", processes=len(by_owner), revoked=len(revoked))
        return Reconciled(processes_asked=len(by_owner), revoked=revoked)

    async def closed(self, workflow_id: str) -> str | None:
        """How the process ended ('terminated', 'failed', ..., 'gone'), None while it runs."""
        try:
            described = await self.client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return "gone"
            raise
        if described.status in (WorkflowExecutionStatus.RUNNING,
                                WorkflowExecutionStatus.CONTINUED_AS_NEW):
            return None
        status = described.status.name.lower() if described.status else "unknown"
        return "completed without reaching production" if status == "completed" else status

    async def revoke(self, keys: list[key_store.HeldKey], closed: str) -> list[str]:
        application_id = keys[0].application_id
        reason = f"its process ended without reaching production ({closed})"
        async with self.pool.acquire() as conn, conn.transaction():
            revoked = await key_store.revoke_each(conn, [k.key_id for k in keys], reason,
                                                  owner=keys[0].owner_workflow_id)
            if not revoked:
                return []
            await audit.append(conn, [audit.Entry(
                entry_id=f"{key.key_id}/revoked", application_id=application_id,
                workflow_id=keys[0].owner_workflow_id, action="api_key_revoked",
                result="succeeded", actor="key-reconciliation", reason=reason,
                details={"key_id": key.key_id, "environment": key.environment,
                         "process": keys[0].owner_workflow_id, "closed": closed})
                for key in revoked])
            await conn.execute(
                """UPDATE applications SET status = $2, updated_at = now()
                   WHERE application_id = $1 AND status = 'open'""",
                application_id, closed.split(" ")[0])
            if keys[0].contacts:
                await outbox.enqueue(
                    conn, notice_id=f"{application_id}/keys-revoked/{keys[0].owner_workflow_id}",
                    application_id=application_id, template="keys_revoked_process_closed",
                    language=keys[0].language, recipients=keys[0].contacts,
                    context={"application_id": application_id, "closed": closed,
                             "keys": ", ".join(f"{k.environment} {k.display_prefix}…"
                                               for k in revoked)})
        log.warning("keys of a closed process revoked", application_id=application_id,
                    process=keys[0].owner_workflow_id, closed=closed,
                    keys=[k.key_id for k in revoked])
        return [k.key_id for k in revoked]
