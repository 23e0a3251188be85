"""No credential without a living process (issue 11 §3): the `key-reconciliation` Schedule revokes
every active key whose owning process closed other than by reaching production. On the dev
server (the time-skipping server has no schedules), run at once with
`temporal schedule trigger --schedule-id key-reconciliation`: a terminated application's key is
refused by the key verification endpoint afterwards; a waiting application's key and a
production application's keys are kept. The endpoint answers from memory (its key cache, its
answers living an hour here): the refusal can only come from PostgreSQL's notification of the
reconciliation's revocation."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import pytest
from pydantic import SecretStr
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from onboarding.devstack.embedded import wheel_binary
from onboarding.store import keys as key_store
from onboarding.temporal.schedules import KEY_RECONCILIATION, ensure_key_reconciliation
from onboarding.domain.live_service import live_service_id
from tests.support import data, drive
from tests.support.drive import approval
from tests.support.eventually import eventually
from tests.support.inbox import notice_id, notices
from tests.support.leaks import delivered_key
from tests.support.servers import database_on, park_key_reconciliation, prepared_pool
from tests.support.gateway import Gateway, listening
from worker import running


@dataclass
class Platform:
    settings: object
    pool: asyncpg.Pool


@pytest.fixture
async def own(database_url, settings, task_queue) -> AsyncIterator[Platform]:
    """A database of this test's own, migrated and seeded, and the settings naming it."""
    async with database_on(database_url, f"reconciliation_{uuid.uuid4().hex[:8]}") as url:
        ours = settings.model_copy(update={"database_url": SecretStr(url),
                                           "temporal_task_queue": task_queue})
        pool = await prepared_pool(ours)
        try:
            yield Platform(ours, pool)
        finally:
            await pool.close()


@pytest.fixture
async def schedule(dev_server, settings, task_queue) -> AsyncIterator[None]:
    """The schedule, made for this test's task queue (the dev server is shared: one left by
    another test's worker is replaced), and gone afterwards."""
    client = dev_server.client
    handle = client.get_schedule_handle(KEY_RECONCILIATION)
    with contextlib.suppress(RPCError):
        await handle.delete()
    ours = settings.model_copy(update={"temporal_task_queue": task_queue})
    assert await ensure_key_reconciliation(client, ours)
    assert not await ensure_key_reconciliation(client, ours)  # idempotent
    yield
    await park_key_reconciliation(client, settings)


async def reconciliation_run(client):
    """The schedule's latest run once it completed (the schedule names its runs by time)."""
    async for listed in client.list_workflows(
            'WorkflowType = "KeyReconciliation" AND ExecutionStatus = "Completed"'):
        return client.get_workflow_handle(listed.id, run_id=listed.run_id)
    return None


def trigger(address: str) -> None:
    done = subprocess.run(
        [wheel_binary("temporal"), "schedule", "trigger", "--address", address,
         "--schedule-id", KEY_RECONCILIATION],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr


async def key_of(inbox, application, environment: str) -> str:
    notice = f"{application.application_id}/key/{environment}/delivery"
    mail = await eventually(lambda: inbox.with_notice(notice), what=f"the {environment} key")
    return delivered_key(mail[0])


async def test_a_terminated_applications_key_is_revoked_when_the_schedule_runs(
        dev_server, own, task_queue, inbox, schedule):
    client, settings, pool = dev_server.client, own.settings, own.pool
    terminated, waiting, live = (data.new_application(settings, ["account-balance"])
                                 for _ in range(3))
    async with running(client, settings, pool), \
            listening(pool, settings.database_url.get_secret_value()) as cache, \
            Gateway(pool, cache) as gateway:
        handles = {}
        for application in (terminated, waiting, live):
            handles[application.application_id] = handle = await drive.start(
                client, settings, task_queue, application)
            await drive.drive_to(handle, application, "sandbox_testing")
        live_handle = handles[live.application_id]
        await drive.drive_to(live_handle, live, "production_switch")
        await live_handle.signal(*approval("production_switch", live))
        assert (await drive.result(live_handle)).outcome == "in_production"
        keys = {a.application_id: await key_of(inbox, a, "sandbox")
                for a in (terminated, waiting, live)}
        production_key = await key_of(inbox, live, "production")
        # Someone with access to Temporal ends it, bypassing the process: its key stays active.
        await handles[terminated.application_id].terminate("ended by an operator")
        status, body = await gateway.verify({"X-Api-Key": keys[terminated.application_id]})
        assert body["valid"] is True
        lookups = cache.stats.lookups
        status, body = await gateway.verify({"X-Api-Key": keys[terminated.application_id]})
        assert body["valid"] is True and cache.stats.lookups == lookups  # from memory

        await asyncio.to_thread(trigger, client.service_client.config.target_host)

        async def refused() -> dict | None:
            _, shown = await gateway.verify({"X-Api-Key": keys[terminated.application_id]})
            return shown if not shown["valid"] else None

        body = await eventually(refused, what="the terminated application's key refused")
        assert body["reason"] == "revoked"
        run = await eventually(lambda: reconciliation_run(client), 30, "the run completed")
        result = await run.result()
        # The terminated and the waiting applications, and the live service that owns the keys
        # of the one in production (running: they stay).
        assert (result["processes_asked"], len(result["revoked"])) == (3, 1)
        for kept in (keys[waiting.application_id], keys[live.application_id], production_key):
            assert (await gateway.verify({"X-Api-Key": kept}))[1]["valid"] is True

    app_id = terminated.application_id
    row = await pool.fetchrow(
        "SELECT status, revoked_reason FROM api_keys WHERE application_id = $1", app_id)
    assert row["status"] == "revoked" and "(terminated)" in row["revoked_reason"]
    assert await pool.fetchval("SELECT status FROM applications WHERE application_id = $1",
                               app_id) == "terminated"
    audited = await pool.fetch(
        """SELECT actor, reason FROM audit_trail WHERE application_id = $1
           AND action = 'api_key_revoked'""", app_id)
    assert [a["actor"] for a in audited] == ["key-reconciliation"]
    told = f"keys-revoked/{app_id}"
    mail = await eventually(lambda: notices(inbox, app_id, told), what="the applicant told")
    assert notice_id(mail[0]) == f"{app_id}/{told}"
    # Run again: nothing more to revoke, nothing sent twice.
    await asyncio.to_thread(trigger, dev_server.client.service_client.config.target_host)
    await asyncio.sleep(1)
    assert len(notices(inbox, app_id, told)) == 1
    # A key listed while its application was open is checked again when revoked: one that
    # reached production in between, its keys now its live service's, keeps them.
    live_keys = [r["key_id"] for r in await pool.fetch(
        "SELECT key_id::text FROM api_keys WHERE application_id = $1", live.application_id)]
    assert len(live_keys) == 2
    assert await key_store.revoke_each(pool, live_keys, "listed before production",
                                       owner=live.application_id) == []
    await client.get_workflow_handle(live_service_id(live.application_id)).terminate("test over")


async def test_the_schedule_runs_every_configured_interval(dev_server, settings, task_queue):
    client = dev_server.client
    handle = client.get_schedule_handle(KEY_RECONCILIATION)
    with contextlib.suppress(RPCError):
        await handle.delete()
    ours = settings.model_copy(update={"temporal_task_queue": task_queue,
                                       "key_reconciliation_minutes": 7})
    try:
        assert await ensure_key_reconciliation(client, ours)
        described = await handle.describe()
        assert [i.every for i in described.schedule.spec.intervals] == [timedelta(minutes=7)]
        assert described.schedule.action.workflow == "KeyReconciliation"
        assert described.schedule.action.task_queue == task_queue
    finally:
        await park_key_reconciliation(client, settings)
