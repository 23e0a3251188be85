"""The outbox relay against real PostgreSQL and real SMTP servers: each notice in the outbox is
sent once, to whom it names, again identical after a crash, never a key that does not work."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from pydantic import SecretStr

from onboarding.domain import keys
from onboarding.domain.admission import prepare_subscription
from onboarding.domain.models import Notice, Role
from onboarding.mail import relay as relay_module
from onboarding.mail.mailer import build_message
from onboarding.mail.relay import Relay
from onboarding.store import applications, catalogue, outbox
from onboarding.store import keys as key_store
from tests.support import data
from tests.support.eventually import eventually
from tests.support.inbox import Inbox, body, notice_id
from tests.support.leaks import delivered_key
from tests.support.records import audit
from tests.support.servers import serve_smtp


class RefusingInbox(Inbox):
    """An SMTP server of the test's own: answers the next `refuse` messages with 451."""

    refuse = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.refuse:
            self.refuse -= 1
            return "451 try again later"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def own_smtp():
    inbox = RefusingInbox()
    controller = serve_smtp(inbox)
    inbox.port = controller.port
    yield inbox
    controller.stop()


@pytest.fixture
async def relay_to(pool, settings):
    """Relays sending to the given SMTP port (the session's by default), with `changes` to
    the settings; their SMTP connections closed afterwards."""
    made: list[Relay] = []

    def make(port: int | None = None, **changes: Any) -> Relay:
        ours = settings.model_copy(update={"smtp_port": port or settings.smtp_port, **changes})
        made.append(Relay(pool, ours))
        return made[-1]

    yield make
    for r in made:
        await r.mailer.aclose()


async def new_application_id(pool, settings) -> str:
    """An application on record (its notices belong to it)."""
    app = prepare_subscription(data.subscription_form(), settings)
    await applications.record(pool, application_id=app.application_id, process="subscription",
                              organisation=app.organisation, workflow_id=app.application_id,
                              requested_apis=app.requested_apis)
    return app.application_id


async def enqueue(pool, application_id: str, to: list[str], **fields: Any) -> str:
    notice = f"{application_id}/test/{uuid.uuid4().hex[:8]}"
    await outbox.enqueue(pool, **{
        "notice_id": notice, "application_id": application_id, "template": "changes_requested",
        "language": "en", "recipients": to,
        "context": {"organisation": "Fintech Co.", "step": "pre_verification",
                    "note": "Explain how quotes are shown"}, **fields})
    return notice


async def due_now(pool, notice: str) -> None:
    """As if the time a failed notice was put off for had passed."""
    await pool.execute("UPDATE notices SET next_attempt_at = now() WHERE notice_id = $1", notice)


async def row(pool, notice: str):
    return await pool.fetchrow("SELECT * FROM notices WHERE notice_id = $1", notice)


async def test_a_notice_written_twice_is_sent_once(pool, settings, relay_to, inbox):
    app_id = await new_application_id(pool, settings)
    notice = await enqueue(pool, app_id, ["dev@fintech.example.com"])
    assert not await outbox.enqueue(pool, notice_id=notice, application_id=app_id,
                                    template="changes_requested", language="en",
                                    recipients=["someone@else.example.com"], context={})
    relay = relay_to()
    assert await relay.send_one(notice)
    assert not await relay.send_one(notice)

    [mail] = inbox.with_notice(notice)
    assert mail["X-Envelope-To"] == "dev@fintech.example.com"
    assert "Explain how quotes are shown" in body(mail)
    sent = await row(pool, notice)
    assert (sent["status"], sent["attempts"], sent["last_error"]) == ("sent", 1, None)
    assert [e["action"] for e in await audit(pool, app_id)].count("notice_sent") == 1


async def test_a_notice_to_a_role_goes_to_everyone_holding_it(pool):
    holders = await catalogue.staff_holding(pool, Role.PLATFORM_TEAM)
    notice = Notice(notice_id="x", application_id="x", template="reminder", language="en",
                    recipient_role=Role.PLATFORM_TEAM, recipients=["dev@fintech.example.com"])
    assert data.PLATFORM in holders and data.REVIEWER not in holders
    assert await outbox.recipients(pool, notice) == sorted([*holders, "dev@fintech.example.com"])


async def test_without_smtp_notices_wait_in_the_outbox(pool, settings, relay_to, inbox):
    app_id = await new_application_id(pool, settings)
    notice = await enqueue(pool, app_id, ["dev@fintech.example.com"])
    stop = asyncio.Event()
    idle = asyncio.create_task(relay_to(smtp_host=None).run(stop))
    await asyncio.sleep(0.5)
    assert (await row(pool, notice))["status"] == "pending"
    assert inbox.with_notice(notice) == []
    stop.set()
    await idle

    await relay_to().send_one(notice)
    assert len(inbox.with_notice(notice)) == 1


async def test_a_failed_send_puts_the_notice_off_and_the_retry_sends_the_same_mail(
        pool, relay_to, own_smtp, settings):
    app_id = await new_application_id(pool, settings)
    notice = await enqueue(pool, app_id, ["dev@fintech.example.com"])
    relay = relay_to(own_smtp.port)
    own_smtp.refuse = 1
    await relay.send_one(notice)
    put_off = await row(pool, notice)
    assert (put_off["status"], put_off["attempts"]) == ("pending", 1)
    assert "451" in put_off["last_error"] and put_off["next_attempt_at"] > put_off["created_at"]
    assert not await relay.send_one(notice)  # not due yet

    await due_now(pool, notice)
    assert await relay.send_one(notice)
    assert not await relay.send_one(notice)
    [mail] = own_smtp.with_notice(notice)
    assert mail["Message-ID"] == build_message(settings, notice, [], "", "")["Message-ID"]
    sent = await row(pool, notice)
    assert (sent["status"], sent["attempts"], sent["last_error"]) == ("sent", 2, None)


async def test_a_crash_between_sending_and_marking_sent_resends_the_same_mail(
        pool, settings, relay_to, inbox, monkeypatch):
    """The one duplicate that cannot be avoided: identical, so mail systems recognise it."""
    app_id = await new_application_id(pool, settings)
    notice = await enqueue(pool, app_id, ["dev@fintech.example.com"])
    relay = relay_to()

    async def crash(conn, notice_id):
        raise ConnectionResetError("the worker died here")

    with monkeypatch.context() as m:
        m.setattr(outbox, "mark_sent", crash)
        with pytest.raises(ConnectionResetError):
            await relay.send_one(notice)
    assert (await row(pool, notice))["status"] == "pending"
    await relay.send_one(notice)

    first, again = inbox.with_notice(notice)
    assert first["Message-ID"] == again["Message-ID"] and body(first) == body(again)
    assert (await row(pool, notice))["status"] == "sent"


async def test_relays_in_two_processes_send_each_notice_once(pool, settings, relay_to, inbox):
    app_id = await new_application_id(pool, settings)
    sent = [await enqueue(pool, app_id, [f"dev{n}@fintech.example.com"]) for n in range(12)]
    relays = [relay_to(), relay_to()]
    await asyncio.gather(*(r.send_due() for r in relays))
    assert sorted(notice_id(m) for m in inbox.messages if notice_id(m) in sent) == sorted(sent)


async def test_a_notice_written_wakes_the_relay(pool, settings, relay_to, inbox, monkeypatch):
    """Woken by PostgreSQL's NOTIFY on commit, not by its poll (set here to a minute)."""
    monkeypatch.setattr(relay_module, "POLL_SECONDS", 60)
    stop = asyncio.Event()
    running = asyncio.create_task(relay_to().run(stop))
    try:
        await asyncio.sleep(0.5)  # listening, and what was due before is sent
        app_id = await new_application_id(pool, settings)
        notice = await enqueue(pool, app_id, ["dev@fintech.example.com"])
        await eventually(lambda: inbox.with_notice(notice), 10, "the notice sent")
    finally:
        stop.set()
        await running


# --- a key's delivery ---------------------------------------------------------------------------


async def key_on_record(pool, settings, environment: str = "sandbox") -> tuple[str, str]:
    """A key issued (its row and its delivery notice), without a workflow: (application, issuance)."""
    app_id = await new_application_id(pool, settings)
    issuance = f"{app_id}/key/{environment}"
    key = keys.derive_key(settings.key_issuance_secret.get_secret_value(), issuance, environment)
    async with pool.acquire() as conn, conn.transaction():
        summary, _ = await key_store.issue(
            conn, issuance_id=issuance, application_id=app_id,
            business_registration_number=app_id.split("-")[1], environment=environment,
            scopes=["account-balance"], valid_days=30, key=key)
        await outbox.enqueue(conn, notice_id=f"{issuance}/delivery", application_id=app_id,
                             template="api_key_delivery", language="en",
                             recipients=["dev@fintech.example.com"],
                             context={"environment": environment, "issuance_id": issuance,
                                      "key_id": summary.key_id,
                                      "display_prefix": summary.display_prefix})
    return app_id, issuance


async def test_a_delivery_carries_the_key_derived_again_whose_hash_is_on_record(
        pool, settings, relay_to, inbox):
    app_id, issuance = await key_on_record(pool, settings)
    notice = f"{issuance}/delivery"
    context = (await row(pool, notice))["context"]
    assert set(context) == {"environment", "issuance_id", "key_id", "display_prefix"}
    await relay_to().send_one(notice)

    [mail] = inbox.with_notice(notice)
    key = delivered_key(mail)
    stored = await key_store.issued(pool, issuance)
    assert keys.key_hash(key) == bytes(stored["key_hash"])
    assert key.startswith(stored["display_prefix"]) and "account-balance" in body(mail)
    logged = await pool.fetchval("SELECT last_error FROM notices WHERE notice_id = $1", notice)
    assert logged is None


async def test_a_key_issued_under_another_secret_is_never_mailed(pool, settings, relay_to, inbox):
    """Whatever is delivered must be the key whose hash is on record: with the secret changed
    the delivery waits, saying why, until the secret is restored."""
    _, issuance = await key_on_record(pool, settings)
    notice = f"{issuance}/delivery"
    rotated = relay_to(key_issuance_secret=SecretStr("rotated-" + uuid.uuid4().hex * 2))
    await rotated.send_one(notice)
    waiting = await row(pool, notice)
    assert waiting["status"] == "pending" and "another KEY_ISSUANCE_SECRET" in waiting["last_error"]
    assert inbox.with_notice(notice) == []

    await due_now(pool, notice)
    await relay_to().send_one(notice)
    [mail] = inbox.with_notice(notice)
    assert keys.key_hash(delivered_key(mail)) == bytes(
        (await key_store.issued(pool, issuance))["key_hash"])

