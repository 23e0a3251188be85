"""The platform's activities against real PostgreSQL (and the relay that sends what they put
in the outbox, to a real SMTP peer).

Each activity runs in `ActivityEnvironment` (they read `activity.info()`), on a fresh
application so that tests never share rows or mail.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import date
from email.message import Message

import asyncpg
import pytest
from temporalio import activity
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
    ProgressRecord,
    Role,
    StaffLookup,
    SubscriptionApplication,
)
from onboarding.mail.relay import Relay
from starter import start_application
from tests.support import data, drive


def run(method, arg):
    return ActivityEnvironment().run(method, arg)


@pytest.fixture
def acts(pool, settings) -> PlatformActivities:
    return PlatformActivities(pool, settings)


@pytest.fixture
async def relay(pool, settings) -> AsyncIterator[Relay]:
    relay = Relay(pool, settings)
    yield relay
    await relay.mailer.aclose()


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


async def test_only_the_hash_and_display_prefix_of_a_key_are_stored(acts, pool, inbox, relay):
    """The key reaches the applicant by mail and nowhere else: the platform keeps SHA-256 of it
    and a display prefix, and no table holds the key (or its secret part) in any form."""
    app = await new_application(acts)
    request = issuance(app)
    summary = await run(acts.issue_api_key, request)
    await relay.send_one(f"{request.issuance_id}/delivery")

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


async def test_a_retried_issuance_returns_the_same_key_and_sends_one_mail(acts, pool, inbox,
                                                                          relay):
    """A retry after the first attempt completed (its result lost) finds the key it issued:
    no second key, no second mail, no second audit entry."""
    app = await new_application(acts)
    request = issuance(app)
    first = await run(acts.issue_api_key, request)
    second = await run(acts.issue_api_key, request)
    await relay.send_one(f"{request.issuance_id}/delivery")

    assert second == first
    assert len(await key_rows(pool, app.application_id)) == 1
    assert len(inbox.with_notice(f"{request.issuance_id}/delivery")) == 1
    assert (await audit_actions(pool, app.application_id)).count("api_key_issued") == 1
    assert (await audit_actions(pool, app.application_id)).count("notice_sent") == 1


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
    assert [(r["contract_type"], r["contract_number"]) for r in rows] == [
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
    assert (rows[0]["actor"], rows[0]["action"], rows[0]["result"]) == (
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


class FailsOnce(PlatformActivities):
    """Its first attempt to record an application fails, as a lost database connection would."""

    failed = False

    @activity.defn(name="record_application")
    async def record_application(self, record: ApplicationRecord) -> None:
        if not self.failed:
            self.failed = True
            raise ConnectionResetError("the database went away")
        await super().record_application(record)


async def test_a_failed_activity_attempt_is_on_the_audit_log(dev_server, run_worker, settings, pool,
                                                           task_queue):
    """Failures are outcomes too: each failed attempt is audited once, then the retry succeeds."""
    application = prepare_subscription(data.subscription_form(), settings)
    async with run_worker(dev_server.client, FailsOnce(pool, settings).all()):
        handle = await start_application(
            dev_server.client, settings.model_copy(update={"temporal_task_queue": task_queue}),
            application)
        await drive.wait_for_step(handle, "pre_verification")
    failed = await pool.fetch(
        "SELECT action, reason, details FROM audit_log WHERE application_id = $1 AND result = 'failed'",
        application.application_id)
    assert [(f["action"], f["details"]["attempt"]) for f in failed] == [("record_application", 1)]
    assert "ConnectionResetError: the database went away" in failed[0]["reason"]
    await handle.terminate("test over")
