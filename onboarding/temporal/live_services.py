"""The one-off migration: every application that reached production before the live service
existed gets its live service, so that no existing key is left unwatched.

    python -m onboarding.temporal.live_services     (DATABASE_URL, TEMPORAL_*)

Run by every worker when it starts (worker.py), and by hand if need be. Idempotent: it looks
only at applications in production holding an active key no live service owns (a live service
takes its keys over when it begins), and starts each one's live service under its derived id:
a service already running (its subscription started it a moment ago) or one that ended by its
own termination (its keys are revoked) is left as it is.
"""

from __future__ import annotations

import asyncio

import asyncpg
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from onboarding.core.config import Settings, get_settings
from onboarding.core.db import create_pool
from onboarding.core.logs import configure_logging, get_logger
from onboarding.domain.live_service import live_service_id
from onboarding.domain.models import LiveServiceStart
from onboarding.store import live_services
from onboarding.temporal.client import connect

log = get_logger("live_services")


async def start_missing(client: Client, pool: asyncpg.Pool, settings: Settings) -> list[str]:
    """The live services started now (their workflow ids)."""
    started = []
    for app in await live_services.unwatched_in_production(pool):
        workflow_id = live_service_id(app.application_id)
        try:
            await client.start_workflow(
                "LiveService", LiveServiceStart(
                    application_id=app.application_id,
                    subscription_workflow_id=app.workflow_id,
                    organisation_id=app.business_registration_number,
                    language=app.language, started_by="migration"),  # type: ignore[arg-type]
                id=workflow_id, task_queue=settings.temporal_task_queue,
                # One that failed or was terminated from outside left keys nobody watches.
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                static_summary=f"Live service of {app.business_registration_number}")
        except WorkflowAlreadyStartedError:
            continue
        started.append(workflow_id)
    log.info("live services started for applications already in production",
             started=len(started))
    return started


async def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    client = await connect(settings)
    pool = await create_pool(settings)
    try:
        await start_missing(client, pool, settings)
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
