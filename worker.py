"""The worker: runs the application workflows and the platform's activities.

    python worker.py        (configuration from the environment: see README)

One asyncpg pool is shared by all activities. SIGTERM or SIGINT stops polling for new work and
lets running activities finish (up to WORKER_GRACEFUL_SHUTDOWN_SECONDS) before exiting.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.audit import AuditActivityFailures
from activities.heartbeat import Heartbeats
from activities.platform import PlatformActivities
from onboarding.core.config import Settings
from onboarding.core.db import create_pool
from onboarding.core.logs import ActivityLogContext, get_logger
from onboarding.core.service import run_until_stopped
from onboarding.temporal.client import connect
from onboarding.temporal.codec import for_worker
from workflows.publication import PublicationWorkflow
from workflows.subscription import SubscriptionWorkflow

WORKFLOWS = [SubscriptionWorkflow, PublicationWorkflow]
# Deterministic libraries the models use: loaded once, not re-imported for every workflow run.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "email_validator", "idna", "stdnum"
    )
)


def build_worker(client: Client, settings: Settings, activities: PlatformActivities) -> Worker:
    # The client's connection, with the worker's tolerance of undecryptable payloads.
    client = Client(**{**client.config(), "data_converter": for_worker(client.data_converter)})
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=WORKFLOWS,
        activities=activities.all(),
        interceptors=[ActivityLogContext(), AuditActivityFailures(activities.pool), Heartbeats()],
        workflow_runner=WORKFLOW_RUNNER,
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_graceful_shutdown_seconds),
    )


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
    client = await connect(settings, runtime=runtime_for(settings))
    pool = await create_pool(settings)
    activities = PlatformActivities(pool, settings)
    try:
        worker = build_worker(client, settings, activities)
        log.info(
            "worker started",
            temporal=settings.temporal_address,
            namespace=settings.temporal_namespace,
            task_queue=settings.temporal_task_queue,
            metrics_port=settings.metrics_port or None,
        )
        async with worker:
            await stop.wait()
            log.info("worker stopping: letting running activities finish")
    finally:
        await activities.aclose()
        await pool.close()
    log.info("worker stopped")


def main() -> None:
    run_until_stopped(run_worker)


if __name__ == "__main__":
    main()
