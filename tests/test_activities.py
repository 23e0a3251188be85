"""The platform's activities against real PostgreSQL and a real SMTP peer.

Each activity runs in `ActivityEnvironment` (they read `activity.info()`), on a fresh
application so that tests never share rows or mail.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import date
from email.message import Message

import aiosmtplib
import asyncpg
import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.platform import PlatformActivities
from onboarding.domain import keys
from onboarding.domain.admission import prepare_subscription
from onboarding.domain.models import (
    ApplicationRecord,
    CatalogueLookup,
    ContractRecord,
    ContractTerms,
    KeyIssuance,
    KeyRevocation,
    LicenceLookup,
    Notice,
    ProgressRecord,
    Role,
    StaffLookup,
    SubscriptionApplication,
)
from onboarding.mail.mailer import Mailer, build_message
from starter import start_application
from tests.support import data, drive
from tests.support.inbox import Inbox
from tests.support.eventually import eventually
from tests.support.net import free_port
from tests.support.servers import serve_smtp


def run(method, arg):
    return ActivityEnvironment().run(method, arg)


@pytest.fixture
async def acts(pool, settings) -> AsyncIterator[PlatformActivities]:
    acts = PlatformActivities(pool, settings)
    yield acts
    await acts.aclose()


async def new_application(acts: PlatformActivities, apis: list[str] | None = None
                          ) -> SubscriptionApplication:
    app = prepare_subscription(data.subscription_form(apis), acts.settings)
    await run(acts.record_application,
              ApplicationRecord(application=app, workflow_id=app.application_id))
    return app


def contact(app: SubscriptionApplication) -> str:
    return str(app.organisation.contact_emails[0])


def issuance(app: SubscriptionApplication, environment: str = "sandbox") -> KeyIssuance:
    return KeyIssuance(
        issuance_id=f"{app.application_id}/key/{environment}/{uuid.uuid4().hex[:8]}",
        application_id=app.application_id,
        business_registration_number=app.organisation.business_registration_number,
        environment=environment,
        scopes=app.requested_apis,
        valid_days=180,
        recipients=[contact(app)],
        language="en",
    )


def body(message: Message) -> str:
    return message.get_payload(decode=True).decode().replace("\r\n", "\n")


def delivered_key(message: Message) -> str:
    found = re.findall(r"^API key: (\S+)$", body(message), re.MULTILINE)
    assert len(found) == 1, body(message)
    return found[0]


async def key_rows(pool: asyncpg.Pool, application_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM api_keys WHERE application_id = $1 ORDER BY issued_at", application_id
    )


async def notice_row(pool: asyncpg.Pool, notice_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM notices WHERE notice_id = $1", notice_id)


async def audit_actions(pool: asyncpg.Pool, application_id: str) -> list[str]:
    return [r["action"] for r in await pool.fetch(
        "SELECT action FROM audit_log WHERE application_id = $1 ORDER BY seq", application_id)]


async def rows_containing(pool: asyncpg.Pool, needle: str) -> dict[str, int]:
    """Rows of every table in the public schema whose text (jsonb rendering: text, jsonb,
    arrays, bytea as hex) contains `needle`."""
    tables = [r["table_name"] for r in await pool.fetch(
        """SELECT table_name FROM information_schema.tables
           WHERE table_schema = 'public' AND table_type = 'BASE TABLE'""")]
    assert {"api_keys", "notices", "audit_log"} <= set(tables)
    hits = {}
    for table in tables:
        count = await pool.fetchval(
            f'SELECT count(*) FROM "{table}" t WHERE strpos(lower(to_jsonb(t)::text), lower($1)) > 0',
            needle,
        )
        if count:
            hits[table] = count
    return hits


# --- API keys -----------------------------------------------------------------------------------


async def test_only_the_hash_and_display_prefix_of_a_key_are_stored(acts, pool, inbox):
    """The key reaches the applicant by mail and nowhere else: the platform keeps SHA-256 of it
    and a display prefix, and no table holds the key (or its secret part) in any form."""
    app = await new_application(acts)
    request = issuance(app)
    summary = await run(acts.issue_api_key, request)

    [mail] = inbox.with_notice(f"{request.issuance_id}/delivery")
    assert mail["X-Envelope-To"] == contact(app)
    key = delivered_key(mail)
    assert key.startswith("cmsb_")

    [row] = await key_rows(pool, app.application_id)
    assert bytes(row["key_hash"]) == keys.key_hash(key)
    assert key.startswith(row["display_prefix"]) and len(row["display_prefix"]) < len(key) // 2
    assert (str(row["key_id"]), row["display_prefix"], row["status"]) == (
        summary.key_id, summary.display_prefix, "active")

    secret_part = key.removeprefix("cmsb_")
    for needle in (key, secret_part, secret_part[:24], key.encode().hex()):
        assert await rows_containing(pool, needle) == {}, needle
    # The scan can find things: the display prefix is on record (key row, notice, audit).
    assert {"api_keys", "notices", "audit_log"} <= set(await rows_containing(pool, row["display_prefix"]))


async def test_a_retried_issuance_returns_the_same_key_and_sends_one_mail(acts, pool, inbox):
    """A retry after the first attempt completed (its result lost) finds the key it issued:
    no second key, no second mail, no second audit entry."""
    app = await new_application(acts)
    request = issuance(app)
    first = await run(acts.issue_api_key, request)
    second = await run(acts.issue_api_key, request)

    assert second == first
    assert len(await key_rows(pool, app.application_id)) == 1
    assert len(inbox.with_notice(f"{request.issuance_id}/delivery")) == 1
    assert (await audit_actions(pool, app.application_id)).count("api_key_issued") == 1
    assert (await audit_actions(pool, app.application_id)).count("notice_sent") == 1


async def test_a_crash_between_writing_the_key_and_delivering_it_redelivers_the_same_key(
        acts, pool, settings, inbox):
    """The first attempt writes the key and then cannot send the mail (SMTP down): it fails, and
    the retry delivers the same key once; the applicant gets a key that matches the hash."""
    app = await new_application(acts)
    request = issuance(app)
    notice_id = f"{request.issuance_id}/delivery"
    broken = PlatformActivities(pool, settings.model_copy(  # nothing listens on a free port
        update={"smtp_port": free_port(), "smtp_timeout_seconds": 5}))

    with pytest.raises(aiosmtplib.SMTPConnectError):
        await run(broken.issue_api_key, request)
    [row] = await key_rows(pool, app.application_id)
    assert (await notice_row(pool, notice_id))["status"] == "pending"
    assert inbox.with_notice(notice_id) == []

    summary = await run(acts.issue_api_key, request)
    assert summary.key_id == str(row["key_id"])
    assert [r["key_id"] for r in await key_rows(pool, app.application_id)] == [row["key_id"]]
    [mail] = inbox.with_notice(notice_id)
    assert keys.key_hash(delivered_key(mail)) == bytes(row["key_hash"])
    sent = await notice_row(pool, notice_id)
    assert (sent["status"], sent["attempts"]) == ("sent", 1) and sent["sent_at"] is not None


async def test_without_smtp_issuance_fails_and_retries_until_the_key_can_be_delivered(
        acts, pool, settings, inbox):
    """A key that cannot be mailed must not be lost: the activity raises a retryable error, and
    a later attempt with SMTP delivers that same key."""
    app = await new_application(acts)
    request = issuance(app)
    notice_id = f"{request.issuance_id}/delivery"
    no_smtp = PlatformActivities(pool, settings.model_copy(update={"smtp_host": None}))

    for _ in range(2):
        with pytest.raises(ApplicationError, match="SMTP") as raised:
            await run(no_smtp.issue_api_key, request)
        assert raised.value.non_retryable is False
    [row] = await key_rows(pool, app.application_id)
    assert (await notice_row(pool, notice_id))["status"] == "pending"
    assert inbox.with_notice(notice_id) == []

    summary = await run(acts.issue_api_key, request)
    assert summary.key_id == str(row["key_id"])
    [mail] = inbox.with_notice(notice_id)
    assert keys.key_hash(delivered_key(mail)) == bytes(row["key_hash"])
    assert len(await key_rows(pool, app.application_id)) == 1


async def test_a_retry_never_delivers_a_key_that_does_not_match_the_stored_hash(
        acts, pool, settings, inbox):
    """Whatever a retry delivers must be the key whose hash is on record."""
    app = await new_application(acts)
    request = issuance(app)
    notice_id = f"{request.issuance_id}/delivery"
    broken = PlatformActivities(pool, settings.model_copy(update={"smtp_host": None}))
    with pytest.raises(ApplicationError):
        await run(broken.issue_api_key, request)
    [row] = await key_rows(pool, app.application_id)

    rotated = PlatformActivities(pool, settings.model_copy(
        update={"key_issuance_secret": SecretStr("rotated-" + uuid.uuid4().hex * 2)}))
    try:
        await run(rotated.issue_api_key, request)
    except ApplicationError:
        pass  # refusing to deliver is acceptable; delivering a wrong key is not
    for mail in inbox.with_notice(notice_id):
        assert keys.key_hash(delivered_key(mail)) == bytes(row["key_hash"])


async def test_revoking_revokes_every_active_key_once(acts, pool):
    """Withdrawal, rejection and lapse revoke every key of the application, and a retried
    revocation changes nothing and audits nothing twice; other applications keep their keys."""
    app, other = await new_application(acts), await new_application(acts)
    sandbox = await run(acts.issue_api_key, issuance(app, "sandbox"))
    production = await run(acts.issue_api_key, issuance(app, "production"))
    untouched = await run(acts.issue_api_key, issuance(other, "sandbox"))

    revoked = await run(acts.revoke_api_keys,
                        KeyRevocation(application_id=app.application_id, reason="withdrawn"))
    assert {k.key_id for k in revoked} == {sandbox.key_id, production.key_id}
    assert {k.status for k in revoked} == {"revoked"}
    rows = await key_rows(pool, app.application_id)
    assert {(r["status"], r["revoked_reason"]) for r in rows} == {("revoked", "withdrawn")}
    assert all(r["revoked_at"] is not None for r in rows)
    assert (await audit_actions(pool, app.application_id)).count("api_key_revoked") == 2

    again = await run(acts.revoke_api_keys,
                      KeyRevocation(application_id=app.application_id, reason="lapsed"))
    assert again == revoked
    rows_again = await key_rows(pool, app.application_id)
    assert [(r["revoked_at"], r["revoked_reason"]) for r in rows_again] == [
        (r["revoked_at"], r["revoked_reason"]) for r in rows]
    assert (await audit_actions(pool, app.application_id)).count("api_key_revoked") == 2

    [other_row] = await key_rows(pool, other.application_id)
    assert (str(other_row["key_id"]), other_row["status"]) == (untouched.key_id, "active")


async def test_revoking_an_application_without_keys_returns_nothing(acts, pool):
    app = await new_application(acts)
    assert await run(acts.revoke_api_keys,
                     KeyRevocation(application_id=app.application_id, reason="rejected")) == []
    assert "api_key_revoked" not in await audit_actions(pool, app.application_id)


# --- notices ------------------------------------------------------------------------------------


def received_notice(app: SubscriptionApplication, **fields) -> Notice:
    return Notice(**{
        "notice_id": f"{app.application_id}/received/{uuid.uuid4().hex[:8]}",
        "application_id": app.application_id,
        "template": "application_received",
        "language": "en",
        "recipients": [contact(app)],
        "context": {"application_id": app.application_id,
                    "organisation": app.organisation.legal_name,
                    "service": app.service.name},
        **fields,
    })


async def test_a_notice_sent_twice_is_written_and_mailed_once(acts, pool, inbox):
    """A retried send finds the notice it already wrote and sent."""
    app = await new_application(acts)
    notice = received_notice(app)
    await run(acts.send_notice, notice)
    await run(acts.send_notice, notice)

    assert await pool.fetchval(
        "SELECT count(*) FROM notices WHERE notice_id = $1", notice.notice_id) == 1
    row = await notice_row(pool, notice.notice_id)
    assert (row["status"], row["attempts"], list(row["recipients"])) == ("sent", 1, [contact(app)])
    [mail] = inbox.with_notice(notice.notice_id)
    assert mail["X-Envelope-To"] == contact(app)
    assert app.organisation.legal_name in body(mail)
    actions = await audit_actions(pool, app.application_id)
    assert (actions.count("notice_queued"), actions.count("notice_sent")) == (1, 1)


async def test_a_notice_to_a_role_goes_to_the_staff_holding_it(acts, pool, inbox):
    """Reminders and escalations reach everyone holding the role, and only them."""
    app = await new_application(acts)
    notice = received_notice(app, recipients=[], recipient_role=Role.PLATFORM_TEAM)
    await run(acts.send_notice, notice)

    holders = sorted(r["staff_id"] for r in await pool.fetch(
        "SELECT staff_id FROM staff_roles WHERE role = 'platform_team'"))
    assert data.PLATFORM in holders and data.REVIEWER not in holders
    [mail] = inbox.with_notice(notice.notice_id)
    assert sorted(mail["X-Envelope-To"].split(", ")) == holders
    assert list((await notice_row(pool, notice.notice_id))["recipients"]) == holders


async def test_without_smtp_a_notice_stays_pending_in_the_outbox(acts, pool, settings, inbox):
    """Without SMTP nothing is mailed and the notice waits in the outbox; a later send with SMTP
    delivers it once."""
    app = await new_application(acts)
    notice = received_notice(app)
    no_smtp = PlatformActivities(pool, settings.model_copy(update={"smtp_host": None}))
    await run(no_smtp.send_notice, notice)

    row = await notice_row(pool, notice.notice_id)
    assert (row["status"], row["attempts"], row["sent_at"]) == ("pending", 0, None)
    assert inbox.with_notice(notice.notice_id) == []

    await run(acts.send_notice, notice)
    assert (await notice_row(pool, notice.notice_id))["status"] == "sent"
    assert len(inbox.with_notice(notice.notice_id)) == 1


class RefusingInbox(Inbox):
    """An SMTP server of the test's own: answers the next `refuse` messages with 451."""

    refuse = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.refuse:
            self.refuse -= 1
            return "451 try again later"
        return await super().handle_DATA(server, session, envelope)


async def test_a_send_that_fails_leaves_the_notice_pending_and_the_retry_sends_the_same_mail(
        acts, pool, settings):
    """Connections are kept between notices; a send that fails on one still fails the attempt,
    leaving the notice pending, and the retry sends the same message (same Message-ID) once."""
    inbox = RefusingInbox()
    smtp = serve_smtp(inbox)
    sender = PlatformActivities(pool, settings.model_copy(update={"smtp_port": smtp.port}))
    try:
        app = await new_application(acts)
        first, second = received_notice(app), received_notice(app)
        await run(sender.send_notice, first)
        inbox.refuse = 1
        with pytest.raises(aiosmtplib.SMTPDataError):
            await run(sender.send_notice, second)
        row = await notice_row(pool, second.notice_id)
        assert (row["status"], row["attempts"], row["sent_at"]) == ("pending", 0, None)

        await run(sender.send_notice, second)
        await run(sender.send_notice, second)  # and a retry after that sends nothing more
    finally:
        await sender.aclose()
        smtp.stop()
    assert [len(inbox.with_notice(n.notice_id)) for n in (first, second)] == [1, 1]
    [mail] = inbox.with_notice(second.notice_id)
    assert mail["Message-ID"] == build_message(settings, second.notice_id, [], "", "")["Message-ID"]
    assert (await notice_row(pool, second.notice_id))["status"] == "sent"
    actions = await audit_actions(pool, app.application_id)
    assert (actions.count("notice_queued"), actions.count("notice_sent")) == (2, 2)


# --- contracts and licences -----------------------------------------------------------------------


def contract_record(app: SubscriptionApplication, kind: str = "platform",
                    number: str | None = None, **terms) -> ContractRecord:
    return ContractRecord(
        kind=kind,
        terms=ContractTerms(**{**data.contract(number), **terms}),
        business_registration_number=app.organisation.business_registration_number,
        application_id=app.application_id,
        recorded_by=data.PLATFORM,
    )


async def test_recording_the_same_contract_twice_writes_one_row(acts, pool):
    app = await new_application(acts)
    record = contract_record(app)
    await run(acts.record_contract, record)
    await run(acts.record_contract, record)
    rows = await pool.fetch("SELECT * FROM contracts WHERE application_id = $1", app.application_id)
    assert [(r["kind"], r["contract_number"]) for r in rows] == [
        ("platform", record.terms.contract_number)]
    assert (await audit_actions(pool, app.application_id)).count("contract_recorded") == 1


async def test_a_contract_number_of_another_application_is_refused(acts, pool):
    """A contract number identifies one contract: another application cannot claim it, and
    retrying will not help (non-retryable)."""
    app, other = await new_application(acts), await new_application(acts)
    record = contract_record(app)
    await run(acts.record_contract, record)

    with pytest.raises(ApplicationError) as refused:
        await run(acts.record_contract, contract_record(other, number=record.terms.contract_number))
    assert refused.value.type == "ContractNumberTaken"
    assert refused.value.non_retryable is True
    assert await pool.fetchval(
        "SELECT count(*) FROM contracts WHERE application_id = $1", other.application_id) == 0
    assert "contract_recorded" not in await audit_actions(pool, other.application_id)


async def test_every_contract_recorded_is_audited(acts, pool):
    """Each change to the world is audited in the same transaction, including a second contract
    of the same kind (e.g. after a decision carrying the first was refused)."""
    app = await new_application(acts)
    await run(acts.record_contract, contract_record(app))
    await run(acts.record_contract, contract_record(app))
    assert await pool.fetchval(
        "SELECT count(*) FROM contracts WHERE application_id = $1", app.application_id) == 2
    assert (await audit_actions(pool, app.application_id)).count("contract_recorded") == 2


async def test_a_valid_market_data_licence_on_file_is_found_and_an_expired_one_is_not(acts):
    """A licence on file satisfies a later application while it is valid, and only then."""
    with_both, expired_only = await new_application(acts), await new_application(acts)
    expired = dict(signed_on="2020-01-01", valid_from="2020-01-01", valid_until="2021-12-31")
    valid = dict(signed_on="2026-12-01", valid_from="2026-12-01", valid_until="2028-11-30")
    await run(acts.record_contract, contract_record(with_both, "market_data_licence", **expired))
    current = contract_record(with_both, "market_data_licence", **valid)
    await run(acts.record_contract, current)
    await run(acts.record_contract, contract_record(expired_only, "market_data_licence", **expired))
    # A platform contract is not a market-data licence.
    await run(acts.record_contract, contract_record(expired_only, "platform", **valid))

    def lookup(app, on):
        return LicenceLookup(
            business_registration_number=app.organisation.business_registration_number, on=on)

    assert await run(acts.find_market_data_licence, lookup(with_both, date(2027, 6, 1))) == current.terms
    assert await run(acts.find_market_data_licence, lookup(with_both, date(2028, 11, 30))) == current.terms
    assert await run(acts.find_market_data_licence, lookup(with_both, date(2028, 12, 1))) is None
    assert await run(acts.find_market_data_licence, lookup(expired_only, date(2027, 6, 1))) is None
    found_then = await run(acts.find_market_data_licence, lookup(expired_only, date(2021, 6, 1)))
    assert found_then is not None and found_then.valid_until == date(2021, 12, 31)


# --- catalogue, staff, progress -------------------------------------------------------------------


async def test_the_catalogue_lookup_reports_unknown_and_withdrawn_apis(acts, pool):
    """An application may only request APIs the catalogue offers; the facts come back in the
    order asked, with the providers to notify."""
    withdrawn = f"withdrawn-{uuid.uuid4().hex[:8]}"
    await pool.execute(
        """INSERT INTO api_catalogue (api_id, name, category, is_market_data, stage)
           VALUES ($1, 'Withdrawn API', 'banking', false, 'withdrawn')""", withdrawn)
    missing = f"no-such-api-{uuid.uuid4().hex[:8]}"
    facts = await run(acts.look_up_catalogue, CatalogueLookup(
        api_ids=["account-balance", missing, "stock-quotes", withdrawn]))

    assert [a.api_id for a in facts.apis] == ["account-balance", "stock-quotes"]
    assert facts.unknown == [missing, withdrawn]
    by_id = {a.api_id: a for a in facts.apis}
    assert by_id["stock-quotes"].is_market_data and not by_id["account-balance"].is_market_data
    assert by_id["stock-quotes"].provider_contact_emails == [data.MARKET_DATA_PROVIDER]
    assert by_id["account-balance"].provider_contact_emails == [data.BANK_PROVIDER]


async def test_staff_roles_are_looked_up_whatever_the_case_of_the_id_given(acts):
    """A person types their address as they like: the lookup lower-cases the id given."""
    both = sorted([Role.PRE_VERIFICATION_REVIEWER, Role.FINAL_APPROVER])
    for given in (data.REVIEWER_AND_APPROVER, data.REVIEWER_AND_APPROVER.upper(),
                  "Dual@Operator.Example.COM"):
        roles = await run(acts.look_up_staff_roles, StaffLookup(staff_id=given))
        assert sorted(roles.roles) == both, given
    assert (await run(acts.look_up_staff_roles, StaffLookup(staff_id="nobody@operator.example.com"))
            ).roles == []


async def test_a_staff_member_granted_with_capitals_is_found(acts, pool):
    staff_id = f"Jane.Doe-{uuid.uuid4().hex[:6]}@Operator.example.com"
    await pool.execute(
        "INSERT INTO staff_roles (staff_id, role) VALUES ($1, 'platform_team')", staff_id)
    try:
        roles = await run(acts.look_up_staff_roles, StaffLookup(staff_id=staff_id))
        assert roles.roles == [Role.PLATFORM_TEAM]
    finally:
        await pool.execute("DELETE FROM staff_roles WHERE staff_id = $1", staff_id)


async def test_progress_recorded_twice_is_audited_once_and_moves_the_step(acts, pool):
    """A retried progress record writes one audit line; the application's step follows."""
    app = await new_application(acts)
    record = ProgressRecord(
        entry_id=f"{app.application_id}/progress/{uuid.uuid4().hex[:8]}",
        application_id=app.application_id,
        workflow_id=app.application_id,
        actor=data.REVIEWER,
        action="pre_verification",
        outcome="applied",
        details={"on": date(2026, 12, 1), "criteria": data.CRITERIA_HOLD},
        step="market_data_licence",
    )
    await run(acts.record_progress, record)
    await run(acts.record_progress, record)

    rows = await pool.fetch("SELECT * FROM audit_log WHERE entry_id = $1", record.entry_id)
    assert len(rows) == 1
    assert (rows[0]["actor"], rows[0]["action"], rows[0]["outcome"]) == (
        data.REVIEWER, "pre_verification", "applied")
    assert rows[0]["details"] == {"on": "2026-12-01", "criteria": data.CRITERIA_HOLD}
    application = await pool.fetchrow(
        "SELECT status, current_step FROM applications WHERE application_id = $1",
        app.application_id)
    assert dict(application) == {"status": "open", "current_step": "market_data_licence"}

    await run(acts.record_progress, record.model_copy(update={
        "entry_id": record.entry_id + "/closed", "step": "rejected", "status": "rejected"}))
    application = await pool.fetchrow(
        "SELECT status, current_step FROM applications WHERE application_id = $1",
        app.application_id)
    assert dict(application) == {"status": "rejected", "current_step": "rejected"}


async def test_a_failed_activity_attempt_is_on_the_audit_log(dev_server, run_worker, settings, pool,
                                                           task_queue):
    """Failures are outcomes too: each failed attempt is audited once, then the retry succeeds."""
    broken_then_fixed = PlatformActivities(pool, settings.model_copy(update={"smtp_port": 1}))
    application = prepare_subscription(data.subscription_form(), settings)
    async with run_worker(dev_server.client, broken_then_fixed):
        handle = await start_application(
            dev_server.client, settings.model_copy(update={"temporal_task_queue": task_queue}),
            application)
        await eventually(lambda: pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE application_id = $1 AND outcome = 'failed'",
            application.application_id), 20, "a failed attempt on the audit log")
        broken_then_fixed.settings = settings  # SMTP is back
        broken_then_fixed.mailer = Mailer(settings)
        await drive.wait_for_step(handle, "pre_verification")
    failed = await pool.fetch(
        "SELECT action, reason, details FROM audit_log WHERE application_id = $1 AND outcome = 'failed'",
        application.application_id)
    assert failed[0]["action"] == "send_notice"
    assert failed[0]["details"]["attempt"] == 1
    assert len({(f["details"]["attempt"]) for f in failed}) == len(failed)
    await handle.terminate("test over")
