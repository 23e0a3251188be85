"""The outbox relay: every notice written to the outbox is sent once, by whichever worker
process gets to it first.

Each worker process runs one (worker.py). It wakes when a notice is written (PostgreSQL
`LISTEN notices`: the record's transaction notifies on commit) and, in case a notification
was missed (a connection lost, a relay started late, SMTP down for a while), every
POLL_SECONDS. A notice is claimed with `FOR UPDATE SKIP LOCKED` in a transaction that stays
open while it is sent and is committed with the notice marked sent, so relays in several
processes never send the same notice at once.

Crash-safe as before: a process that dies between handing a message to SMTP and committing
leaves the notice pending (PostgreSQL ends the transaction with the connection), and it is sent
again, identical: the same Message-ID (derived from the notice id) and, for a key's delivery,
the same key (derived again from the issuance id). That one duplicate cannot be avoided, and
mail systems recognise it. A failed attempt is counted, its error kept on the notice, and the
notice put off (PUT_OFF_SECONDS, doubling up to a cap).

Why a relay in the worker rather than a sender driven by Temporal (an activity per notice, or
a sender workflow): delivery then costs an application's history nothing (no activity, no
retry timer per notice: a lifecycle's notices were a quarter of its activities), an SMTP
outage grows no history, a closed application's last notices go out like any other, and
replicas share the work through the database they already use. What Temporal would have
given, retries that can be seen, is on the notice row (attempts, last_error, next_attempt_at)
and in the audit log (`notice_sent`).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from email.message import Message

import asyncpg

from onboarding.core.config import Settings
from onboarding.core.logs import get_logger
from onboarding.domain import keys, notices
from onboarding.mail.mailer import MAX_CONNECTIONS, Mailer, build_message
from onboarding.store import audit, outbox
from onboarding.store import keys as key_store

log = get_logger("relay")

POLL_SECONDS = 5.0
PUT_OFF_SECONDS = 2.0
PUT_OFF_AT_MOST = timedelta(minutes=10)
LISTEN_RETRY_SECONDS = 2.0


class NotDeliverable(Exception):
    """The notice cannot be sent as it stands (a key issued under another secret)."""


class Relay:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, *,
                 lanes: int = MAX_CONNECTIONS) -> None:
        self.pool = pool
        self.settings = settings
        self.mailer = Mailer(settings)
        self.lanes = lanes
        self._due = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Send what is due until `stop` is set; the notice being sent is finished first."""
        if not self.settings.smtp_host:
            log.info("notices kept in the outbox: SMTP is not configured")
            await stop.wait()
            return
        listening = asyncio.create_task(self._listen(stop))
        lanes = [asyncio.create_task(self._lane(stop)) for _ in range(self.lanes)]
        try:
            await stop.wait()
        finally:
            self._due.set()  # let the lanes see `stop`
            listening.cancel()
            await asyncio.gather(listening, *lanes, return_exceptions=True)
            await self.mailer.aclose()

    async def send_due(self) -> int:
        """Send every notice due now, one after another; how many were sent."""
        sent = 0
        while await self.send_one():
            sent += 1
        return sent

    async def send_one(self, notice_id: str | None = None) -> bool:
        """Claim one due notice (that one, if named) and send it; False when none was due."""
        async with self.pool.acquire() as conn, conn.transaction():
            notice = await outbox.claim(conn, notice_id)
            if notice is None:
                return False
            try:
                message = await self._message(conn, notice)
                await self.mailer.send(message)
            except Exception as err:  # noqa: BLE001 - every failure puts the notice off
                delay = min(timedelta(seconds=PUT_OFF_SECONDS * 2 ** notice["attempts"]),
                            PUT_OFF_AT_MOST)
                await outbox.put_off(conn, notice["notice_id"], f"{type(err).__name__}: {err}",
                                     delay)
                log.warning("notice not sent", notice_id=notice["notice_id"],
                            template=notice["template"], error=f"{type(err).__name__}: {err}",
                            retry_in_seconds=delay.total_seconds())
                return True
            await outbox.mark_sent(conn, notice["notice_id"])
            await audit.append(conn, [audit.Entry(
                entry_id=f"{notice['notice_id']}/sent", application_id=notice["application_id"],
                workflow_id=None, action="notice_sent", result="succeeded",
                details={"notice_id": notice["notice_id"], "template": notice["template"]})])
        log.info("notice sent", notice_id=notice["notice_id"], template=notice["template"],
                 application_id=notice["application_id"])
        return True

    async def _message(self, conn: asyncpg.Connection, notice: asyncpg.Record) -> Message:
        context = {"application_id": notice["application_id"], **notice["context"]}
        if notice["template"] == "api_key_delivery":
            context = await self._with_key(conn, context)
        subject, body = notices.render(notice["template"], notice["language"], context)
        return build_message(self.settings, notice["notice_id"], list(notice["recipients"]),
                             subject, body)

    async def _with_key(self, conn: asyncpg.Connection, context: dict) -> dict:
        """A delivery notice's context with the key in it: derived again from the issuance id,
        and sent only if it is the key whose hash is on record."""
        if not self.settings.key_issuance_secret:
            raise NotDeliverable("KEY_ISSUANCE_SECRET is not configured on this worker")
        row = await key_store.issued(conn, context["issuance_id"])
        if row is None:
            raise NotDeliverable(f"no key on record for issuance {context['issuance_id']}")
        key = keys.derive_key(self.settings.key_issuance_secret.get_secret_value(),
                              context["issuance_id"], row["environment"])
        if keys.key_hash(key) != bytes(row["key_hash"]):
            # The secret changed since the key was issued: never mail a key that does not
            # work. An operator must restore the secret; the notice waits until then.
            raise NotDeliverable(f"key {row['key_id']} was issued with another "
                                 "KEY_ISSUANCE_SECRET; restore that secret to deliver it")
        return {**context, "api_key": key, "scopes": ", ".join(row["scopes"]),
                "expires_at": row["expires_at"].date().isoformat()}

    async def _lane(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), POLL_SECONDS)
            self._due.clear()
            try:
                while not stop.is_set() and await self.send_one():
                    pass
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                # The database is away: try again at the next poll.
                log.warning("outbox not reachable", error=f"{type(err).__name__}: {err}")

    async def _listen(self, stop: asyncio.Event) -> None:
        """Wake the lanes on every NOTIFY; reconnect when the connection is lost."""
        assert self.settings.database_url
        while not stop.is_set():
            try:
                conn = await asyncpg.connect(self.settings.database_url.get_secret_value())
            except (OSError, asyncpg.PostgresError) as err:
                log.warning("relay cannot listen", error=f"{type(err).__name__}: {err}")
                await asyncio.sleep(LISTEN_RETRY_SECONDS)
                continue
            lost = asyncio.Event()
            try:
                conn.add_termination_listener(lambda _: lost.set())
                await conn.add_listener(outbox.CHANNEL, lambda *_: self._due.set())
                self._due.set()  # what was written while nobody listened
                while not lost.is_set() and not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), POLL_SECONDS)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                log.warning("relay stopped listening", error=f"{type(err).__name__}: {err}")
            finally:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)
