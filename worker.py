"""The worker: runs the application workflows and the platform's activities.

    python worker.py        (configuration from the environment: docs/configuration.md)

One asyncpg pool is shared by all activities and by the outbox relay, which sends the notices
the activities write (onboarding/mail/relay.py). At start it creates the key-reconciliation
schedule if it is missing (onboarding/temporal/schedules.py). SIGTERM or SIGINT stops polling for new work
and lets running activities (and the notice being sent) finish, up to
WORKER_GRACEFUL_SHUTDOWN_SECONDS, before exiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg

from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities import platform_activities
from activities.interceptors import AuditActivityFailures, Heartbeats
from onboarding.core.config import Settings
from onboarding.core.db import create_pool
from onboarding.core.logs import ActivityLogContext, get_logger
from onboarding.core.service import run_until_stopped
from onboarding.mail.relay import Relay
from onboarding.temporal.client import connect
from onboarding.temporal.codec import for_worker
from onboarding.temporal.sandbox import workflow_runner
from onboarding.temporal.live_services import start_missing
from onboarding.temporal.schedules import KEY_RECONCILIATION, ensure_key_reconciliation
from workflows.api_retirement import ApiRetirementWorkflow
from workflows.live_service import LiveServiceWorkflow
from workflows.publication import PublicationWorkflow
from workflows.reconciliation import KeyReconciliationWorkflow
from workflows.subscription import SubscriptionWorkflow

WORKFLOWS = [SubscriptionWorkflow, PublicationWorkflow, LiveServiceWorkflow,
             ApiRetirementWorkflow, KeyReconciliationWorkflow]
# The SDK's sandbox; what it passes through and keeps: onboarding/temporal/sandbox.py.
WORKFLOW_RUNNER = workflow_runner()


def build_worker(client: Client, settings: Settings, pool: asyncpg.Pool,
                 activities: Sequence[Any]) -> Worker:
    # The client's connection, with the worker's tolerance of undecryptable payloads.
    client = Client(**{**client.config(), "data_converter": for_worker(client.data_converter)})
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=WORKFLOWS,
        activities=activities,
        interceptors=[ActivityLogContext(), AuditActivityFailures(pool), Heartbeats()],
        workflow_runner=WORKFLOW_RUNNER,
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_graceful_shutdown_seconds),
    )


@asynccontextmanager
async def running(client: Client, settings: Settings, pool: asyncpg.Pool,
                  activities: Sequence[Any] | None = None) -> AsyncIterator[Worker]:
    """What a worker process runs: the worker (the platform's activities, unless others are
    given) and the outbox relay, until the block ends."""
    if activities is None:
        activities = platform_activities(pool, settings, client)
    stop = asyncio.Event()
    relay = asyncio.create_task(Relay(pool, settings).run(stop))
    try:
        async with build_worker(client, settings, pool, activities) as worker:
            yield worker
    finally:
        stop.set()
        await relay


def runtime_for(settings: Settings) -> Runtime | None:
    if not settings.metrics_port:
        return None
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=f"0.0.0.0:{settings.metrics_port}")
        )
    )


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    log = get_logger("worker")
    if not settings.key_issuance_secret:
        raise SystemExit("KEY_ISSUANCE_SECRET is not set: the worker cannot issue API keys")
    if not settings.payload_encryption_keys:
        raise SystemExit("PAYLOAD_ENCRYPTION_KEYS is not set: the worker would hand Temporal "
                         "organisation and contact data unencrypted")
    if not settings.sealing_verification_keys:
        raise SystemExit("SEALING_VERIFICATION_KEYS is not set: the worker could not tell who "
                         "sealed a decision, and would apply none")
    client = await connect(settings, runtime=runtime_for(settings))
    pool = await create_pool(settings)
    try:
        if await ensure_key_reconciliation(client, settings):
            log.info("schedule created", schedule=KEY_RECONCILIATION,
                     every_minutes=settings.key_reconciliation_minutes)
        async with running(client, settings, pool):
            # Applications in production before the live service existed get theirs.
            migration = asyncio.create_task(start_missing(client, pool, settings))
            log.info(
                "worker started",
                temporal=settings.temporal_address,
                namespace=settings.temporal_namespace,
                task_queue=settings.temporal_task_queue,
                metrics_port=settings.metrics_port or None,
            )
            await stop.wait()
            log.info("worker stopping: letting running activities finish")
            if not migration.done():
                migration.cancel()
            elif migration.exception() is not None:
                log.warning("live service migration failed", error=str(migration.exception()))
    finally:
        await pool.close()
    log.info("worker stopped")


def main() -> None:
    run_until_stopped(run_worker)


if __name__ == "__main__":
    main()
