"""The platform's activities against real PostgreSQL (and the relay that sends what the record
puts in the outbox, to a real SMTP peer).

Each activity runs in `ActivityEnvironment` (they read `activity.info()`), on a fresh
application so that tests never share rows or mail.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import asyncpg
import pytest
from temporalio import activity
from temporalio.testing import ActivityEnvironment

import activities
from activities import platform_activities
from activities.admission import AdmissionCheck, Admissions
from activities.catalogue import Catalogue
from activities.contracts import ContractNumberCheck, Contracts
from activities.decisions import DecisionCheck, Decisions
from activities.records import Records
from activities.verification import DecisionChecks, Verifications
from onboarding.domain import keys
from onboarding.domain.admission import prepare_publication, prepare_subscription
from onboarding.domain.models import (
    CatalogueLookup,
    ContractTerms,
    LicenceLookup,
    Notice,
    Role,
    SubscriptionApplication,
)
from onboarding.domain.record import (
    ApiPublished,
    ApplicationOnRecord,
    Audited,
    Commit,
    Committed,
    ContractRecorded,
    KeyIssued,
    KeysRevoked,
    NoticeQueued,
)
from onboarding.mail.relay import Relay
from starter import start_application
from tests.support import data, drive, sealing
from tests.support.key_issuance import commit
from tests.support.leaks import delivered_key
from tests.support.stand_ins import activity_name, with_stand_ins


def run(method, arg):
    return ActivityEnvironment().run(method, arg)


async def new_application(pool, settings, apis: list[str] | None = None) -> SubscriptionApplication:
    app = prepare_subscription(data.subscription_form(apis), settings)
    await commit(pool, settings, app, ApplicationOnRecord(
        seq=0, process="subscription", organisation=app.organisation,
        requested_apis=app.requested_apis))
    return app


def contact(app: SubscriptionApplication) -> str:
    return str(app.organisation.contact_emails[0])


def key_for(app: SubscriptionApplication, environment: str = "sandbox", seq: int = 1) -> KeyIssued:
    return KeyIssued(seq=seq, environment=environment, scopes=app.requested_apis,
                     valid_days=180, recipients=[contact(app)], language="en")


async def key_rows(pool: asyncpg.Pool, application_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM api_keys WHERE application_id = $1 ORDER BY issued_at", application_id)


async def audit_rows(pool: asyncpg.Pool, application_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT entry_id, action, result, reason, details FROM audit_trail "
        "WHERE application_id = $1 ORDER BY seq", application_id)


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


# --- the commit: keys ---------------------------------------------------------------------------


async def test_only_the_hash_and_display_prefix_of_a_key_are_stored(pool, settings, inbox):
    """The key reaches the applicant by mail and nowhere else: the platform keeps SHA-256 of it
    and a display prefix, and no table holds the key (or its secret part) in any form."""
    app = await new_application(pool, settings)
    written = await commit(pool, settings, app, key_for(app))
    notice = f"{app.application_id}/key/sandbox/delivery"
    relay = Relay(pool, settings)
    await relay.send_one(notice)
    await relay.mailer.aclose()

    [mail] = inbox.with_notice(notice)
    assert mail["X-Envelope-To"] == contact(app)
    key = delivered_key(mail)
    assert key.startswith("cmsb_")
    [row] = await key_rows(pool, app.application_id)
    [summary] = written.keys
    assert bytes(row["key_hash"]) == keys.key_hash(key)
    assert key.startswith(row["display_prefix"]) and len(row["display_prefix"]) < len(key) // 2
    assert (str(row["key_id"]), row["display_prefix"], row["status"]) == (
        summary.key_id, summary.display_prefix, "active")

    secret_part = key.removeprefix("cmsb_")
    for needle in (key, secret_part, secret_part[:24], key.encode().hex()):
        assert await rows_containing(pool, needle) == {}, needle
    # The scan can find things: the display prefix is on record (key row, notice, audit).
    assert {"api_keys", "notices", "audit_log"} <= set(
        await rows_containing(pool, row["display_prefix"]))


async def test_a_commit_written_twice_writes_everything_once(pool, settings):
    """A retry after the first attempt committed (its result lost) finds what it wrote: the
    same key, one delivery notice, each audit line once."""
    app = await new_application(pool, settings)
    entries = [Audited(seq=1, action="final_approval", result="applied"),
               key_for(app, seq=2),
               NoticeQueued(seq=3, notice=Notice(
                   notice_id=f"{app.application_id}/member-notice/final-approval",
                   application_id=app.application_id, template="member_notice_new_user",
                   language="en", recipients=[data.BANK_PROVIDER],
                   context={"organisation": "x", "apis": "account-balance"}))]
    first = await commit(pool, settings, app, *entries)
    again = await commit(pool, settings, app, *entries)

    assert first.keys == again.keys and len(first.keys) == 1
    assert len(await key_rows(pool, app.application_id)) == 1
    assert await pool.fetchval(
        "SELECT count(*) FROM notices WHERE application_id = $1", app.application_id) == 2
    rows = await audit_rows(pool, app.application_id)
    assert [(r["entry_id"], r["action"]) for r in rows] == [
        (f"{app.application_id}/1", "final_approval"), (f"{app.application_id}/2", "api_key_issued"),
        (f"{app.application_id}/3", "notice_queued")]


async def test_revoking_revokes_every_active_key_once(pool, settings):
    """Withdrawal, rejection and lapse revoke every key of the application, and a retried
    revocation changes nothing and audits nothing twice; other applications keep their keys."""
    app, other = await new_application(pool, settings), await new_application(pool, settings)
    await commit(pool, settings, app, key_for(app, "sandbox", 1), key_for(app, "production", 2))
    await commit(pool, settings, other, key_for(other))

    revoked = await commit(pool, settings, app, KeysRevoked(seq=3, reason="withdrawn"))
    assert {(k.environment, k.status) for k in revoked.keys} == {("sandbox", "revoked"),
                                                                 ("production", "revoked")}
    rows = await key_rows(pool, app.application_id)
    assert {(r["status"], r["revoked_reason"]) for r in rows} == {("revoked", "withdrawn")}
    assert all(r["revoked_at"] is not None for r in rows)

    again = await commit(pool, settings, app, KeysRevoked(seq=3, reason="withdrawn"))
    assert again.keys == revoked.keys
    assert [(r["revoked_at"], r["revoked_reason"]) for r in await key_rows(
        pool, app.application_id)] == [(r["revoked_at"], r["revoked_reason"]) for r in rows]
    actions = [r["action"] for r in await audit_rows(pool, app.application_id)]
    assert actions.count("api_key_revoked") == 2
    [other_row] = await key_rows(pool, other.application_id)
    assert other_row["status"] == "active"

    nothing = await new_application(pool, settings)
    assert (await commit(pool, settings, nothing, KeysRevoked(seq=1, reason="rejected"))).keys == []
    assert "api_key_revoked" not in [r["action"] for r in await audit_rows(
        pool, nothing.application_id)]


# --- the commit: contracts, notices, the catalogue ----------------------------------------------


def contract(number: str | None = None, **terms) -> ContractTerms:
    return ContractTerms(**{**data.contract(number), **terms})


async def test_a_contract_is_recorded_once_and_another_applications_number_is_not(pool, settings):
    app, other = await new_application(pool, settings), await new_application(pool, settings)
    terms = contract()
    entry = ContractRecorded(seq=1, contract_type="platform", terms=terms,
                             recorded_by=data.PLATFORM)
    await commit(pool, settings, app, entry)
    await commit(pool, settings, app, entry)
    rows = await pool.fetch("SELECT contract_type, contract_number, recorded_by FROM contracts "
                            "WHERE application_id = $1", app.application_id)
    assert [tuple(r) for r in rows] == [("platform", terms.contract_number, data.PLATFORM)]

    # Checked when the decision arrives ...
    number = ContractNumberCheck(contract_type="platform", contract_number=terms.contract_number,
                                application_id=other.application_id)
    acts = Contracts(pool, settings)
    assert await run(acts.check_contract_number, number) == (
        f"contract number {terms.contract_number} is already recorded for another application")
    assert await run(acts.check_contract_number, number.model_copy(
        update={"application_id": app.application_id})) == ""
    assert "NUL" in await run(acts.check_contract_number, number.model_copy(
        update={"contract_number": "C-\x00"}))
    # The same check, with the decision's verification (one local activity), and only once its
    # sender is verified.
    verify = Verifications(pool, settings).verify_and_check_decision
    by_platform = DecisionChecks(decision=check(Role.PLATFORM_TEAM, data.PLATFORM),
                                 contract=number)
    assert (await run(verify, by_platform)).reason == (
        f"contract number {terms.contract_number} is already recorded for another application")
    assert (await run(verify, by_platform.model_copy(update={"contract": number.model_copy(
        update={"application_id": app.application_id})}))).reason == ""
    assert "does not hold" in (await run(verify, by_platform.model_copy(update={
        "decision": check(Role.PLATFORM_TEAM, data.REVIEWER)}))).reason
    # The licence on file, for the step a decision leads to: looked up once it is verified.
    lookup = LicenceLookup(business_registration_number=app.organisation
                           .business_registration_number, on=date.today())
    asked = by_platform.model_copy(update={"contract": None, "licence": lookup})
    assert (await run(verify, asked)).licence is None  # none on file
    refused = asked.model_copy(update={"decision": check(Role.PLATFORM_TEAM, data.REVIEWER)})
    assert (await run(verify, refused)).licence is None
    # ... and should another application take the number meanwhile, not recorded, on record.
    await commit(pool, settings, other, entry)
    assert await pool.fetchval("SELECT count(*) FROM contracts WHERE application_id = $1",
                               other.application_id) == 0
    [refused] = [r for r in await audit_rows(pool, other.application_id)
                 if r["action"] == "contract_not_recorded"]
    assert refused["result"] == "failed" and "another application" in refused["reason"]


async def test_a_valid_market_data_licence_on_file_is_found_and_an_expired_one_is_not(
        pool, settings):
    with_both, expired_only = (await new_application(pool, settings),
                               await new_application(pool, settings))
    expired = dict(signed_on="2020-01-01", valid_from="2020-01-01", valid_until="2021-12-31")
    valid = dict(signed_on="2026-12-01", valid_from="2026-12-01", valid_until="2028-11-30")
    current = contract(**valid)
    await commit(pool, settings, with_both,
                 ContractRecorded(seq=1, contract_type="market_data_licence",
                                  terms=contract(**expired), recorded_by=data.SALES),
                 ContractRecorded(seq=2, contract_type="market_data_licence", terms=current,
                                  recorded_by=data.SALES))
    await commit(pool, settings, expired_only,
                 ContractRecorded(seq=1, contract_type="market_data_licence",
                                  terms=contract(**expired), recorded_by=data.SALES),
                 # A platform contract is not a market-data licence.
                 ContractRecorded(seq=2, contract_type="platform", terms=contract(**valid),
                                  recorded_by=data.PLATFORM))
    acts = Contracts(pool, settings)

    def lookup(app, on):
        return LicenceLookup(
            business_registration_number=app.organisation.business_registration_number, on=on)

    assert await run(acts.find_market_data_licence, lookup(with_both, date(2027, 6, 1))) == current
    assert await run(acts.find_market_data_licence, lookup(with_both, date(2028, 12, 1))) is None
    assert await run(acts.find_market_data_licence, lookup(expired_only, date(2027, 6, 1))) is None


async def test_a_notice_goes_to_the_role_and_one_without_recipients_is_not_written(
        pool, settings):
    app = await new_application(pool, settings)
    to_role = Notice(notice_id=f"{app.application_id}/reminder", application_id=app.application_id,
                     template="reminder", language="en", recipient_role=Role.PLATFORM_TEAM,
                     context={"step": "x", "waiting_on": "platform_team", "since": "2026-12-01"})
    to_nobody = to_role.model_copy(update={"notice_id": f"{app.application_id}/nobody",
                                           "recipient_role": None})
    await commit(pool, settings, app, NoticeQueued(seq=1, notice=to_role),
                 NoticeQueued(seq=2, notice=to_nobody))
    recipients = await pool.fetchval("SELECT recipients FROM notices WHERE notice_id = $1",
                                     to_role.notice_id)
    holders = [r["staff_id"] for r in await pool.fetch(
        "SELECT staff_id FROM staff_roles WHERE role = 'platform_team' ORDER BY staff_id")]
    assert list(recipients) == holders and data.PLATFORM in holders
    assert await pool.fetchval("SELECT count(*) FROM notices WHERE notice_id = $1",
                               to_nobody.notice_id) == 0


async def test_a_publication_of_another_providers_api_id_is_refused_and_the_rest_written(
        pool, settings):
    """The API id is taken (by the operator's own API here): the publication is refused on the
    record, and what else the commit held is written all the same."""
    form = data.publication_form("stock-quotes")
    app = prepare_publication(form, settings)
    written = await commit(
        pool, settings, app,
        ApplicationOnRecord(seq=0, process="publication", organisation=app.organisation,
                            requested_apis=[app.api.api_id]),
        Audited(seq=1, action="api_test_review", result="applied"),
        ApiPublished(seq=2, api=app.api, specification=app.specification,
                     summary=app.specification_summary, stage="sandbox"))
    assert written.publication_refused == (
        "api_id stock-quotes is already in the catalogue for another provider")
    rows = await audit_rows(pool, app.application_id)
    assert [(r["action"], r["result"]) for r in rows] == [
        ("api_test_review", "applied"), ("api_publication_refused", "failed")]
    assert await pool.fetchval("SELECT publication_application_id FROM api_catalogue "
                               "WHERE api_id = 'stock-quotes'") is None


# --- looked up when a decision arrives ----------------------------------------------------------


def check(role: Role, sealed_for: str | None, typed: str | None = None,
          **fields) -> DecisionCheck:
    """A decision sealed for `sealed_for` (the test staff's identities, enrolled at
    TEST_ISSUER), its `decided_by` typed as `typed`."""
    application, decision_id = "subscription-x", uuid.uuid4().hex
    content = {"application_id": application, "decision": "x", "decision_id": decision_id,
               **({"decided_by": typed} if typed else {})}
    seal = sealing.SEALER.seal(sealing.person(sealed_for), application, "x", decision_id,
                               content) if sealed_for else None
    return DecisionCheck(**{
        "application_id": application, "organisation": "1234567890", "decision": "x",
        "decision_id": decision_id, "content": content, "attestation": seal, "role": role,
        "decided_by": typed, "applicant_contacts": ["dev@fintech.example.com"],
        "received_at": datetime.now(UTC), **fields})


async def test_a_decisions_sender_is_verified_against_the_roster_and_the_contacts(
        pool, settings):
    """The real roster (PostgreSQL), on the identity the seal names."""
    verify = Decisions(pool, settings).verify_decision
    dual = data.REVIEWER_AND_APPROVER
    for typed in (None, dual, dual.upper()):
        verified = await run(verify, check(Role.FINAL_APPROVER, dual, typed))
        assert (verified.person, verified.reason) == (dual, "")
        assert verified.identity == sealing.person(dual)
    assert (await run(verify, check(Role.FINAL_APPROVER, data.REVIEWER))).reason == (
        f"{data.REVIEWER} does not hold the role final_approver")
    assert (await run(verify, check(Role.APPLICANT, "DEV@fintech.example.com"))).reason == ""
    assert "not a registered contact" in (
        await run(verify, check(Role.APPLICANT, data.REVIEWER))).reason
    assert "four eyes" in (await run(verify, check(
        Role.FINAL_APPROVER, dual, not_by=[sealing.person(dual).ref()]))).reason
    # Taken by a typed name before decisions were sealed: matched through the enrolment.
    assert "four eyes" in (await run(verify, check(
        Role.FINAL_APPROVER, dual, not_by_staff=[dual.upper()]))).reason
    unsealed = await run(verify, check(Role.PLATFORM_TEAM, None, data.PLATFORM))
    assert (unsealed.person, unsealed.identity, unsealed.reason) == (
        None, None, "identity not verified")
    assert (await run(verify, check(Role.PLATFORM_TEAM, data.PLATFORM, "x\x00y"))).reason == (
        f"decided_by x\x00y is not the verified identity ({data.PLATFORM})")


async def test_the_catalogue_lookup_reports_unknown_and_withdrawn_apis(pool, settings):
    """An application may only request APIs the catalogue offers; the facts come back in the
    order asked, with the providers to notify."""
    withdrawn = f"withdrawn-{uuid.uuid4().hex[:8]}"
    await pool.execute(
        """INSERT INTO api_catalogue (api_id, name, category, is_market_data, stage)
           VALUES ($1, 'Withdrawn API', 'banking', false, 'withdrawn')""", withdrawn)
    missing = f"no-such-api-{uuid.uuid4().hex[:8]}"
    facts = await run(Catalogue(pool, settings).look_up_catalogue, CatalogueLookup(
        api_ids=["account-balance", missing, "stock-quotes", withdrawn]))

    assert [a.api_id for a in facts.apis] == ["account-balance", "stock-quotes"]
    assert facts.unknown == [missing, withdrawn]
    by_id = {a.api_id: a for a in facts.apis}
    assert by_id["stock-quotes"].is_market_data and not by_id["account-balance"].is_market_data
    assert by_id["stock-quotes"].provider_contact_emails == [data.MARKET_DATA_PROVIDER]


async def test_admission_looks_the_requested_apis_up_when_asked(pool, settings):
    """One local activity for a subscription's admission and its catalogue lookup."""
    application = prepare_subscription(data.subscription_form(["stock-quotes"]), settings)
    asked = AdmissionCheck(process="subscription", application=application.model_dump(
        mode="json"), workflow_id=application.application_id,
        first_execution_run_id=uuid.uuid4().hex, catalogue=True)
    admit = Admissions(pool, settings).admit_application
    verdict = await run(admit, asked)
    assert verdict.refusals == [] and verdict.catalogue is not None
    assert [a.api_id for a in verdict.catalogue.apis] == ["stock-quotes"]
    assert verdict.catalogue.apis[0].is_market_data
    assert (await run(admit, asked.model_copy(update={"catalogue": False}))).catalogue is None


# --- registration and failures ------------------------------------------------------------------


def test_every_activity_of_every_class_is_registered(pool, settings, monkeypatch):
    """Registration is found by looking, not kept by hand: a new activity is registered."""
    names = sorted(activity_name(fn) for fn in platform_activities(pool, settings))
    assert len(names) == len(set(names))
    assert {"write_record", "verify_decision", "look_up_catalogue", "check_specification",
            "check_service_launch", "find_market_data_licence", "check_contract_number",
            "record_progress", "issue_api_key", "send_notice"} <= set(names)

    @activity.defn(name="count_applications")
    async def count_applications(self) -> int:
        return 0

    monkeypatch.setattr(Catalogue, "count_applications", count_applications, raising=False)
    assert "count_applications" in [activity_name(fn)
                                    for fn in platform_activities(pool, settings)]
    assert Catalogue in activities.activity_classes()


class FailsOnce(Records):
    """Its first commit fails, as a lost database connection would."""

    failed = False

    @activity.defn(name="write_record")
    async def write_record(self, commit: Commit) -> Committed:
        if not FailsOnce.failed:
            FailsOnce.failed = True
            raise ConnectionResetError("the database went away")
        return await super().write_record(commit)


async def test_a_failed_activity_attempt_is_on_the_audit_log(dev_server, run_worker, settings,
                                                           pool, task_queue):
    """Failures are outcomes too: each failed attempt is audited once, then the retry succeeds."""
    application = prepare_subscription(data.subscription_form(), settings)
    async with run_worker(dev_server.client,
                          with_stand_ins(pool, settings, FailsOnce(pool, settings))):
        handle = await start_application(
            dev_server.client, settings.model_copy(update={"temporal_task_queue": task_queue}),
            application)
        await drive.wait_for_step(handle, "pre_verification")
    failed = await pool.fetch(
        "SELECT action, reason, details FROM audit_trail WHERE application_id = $1 "
        "AND result = 'failed'", application.application_id)
    assert [(f["action"], f["details"]["attempt"]) for f in failed] == [("write_record", 1)]
    assert "ConnectionResetError: the database went away" in failed[0]["reason"]
    await handle.terminate("test over")


@pytest.mark.parametrize("environment", ["sandbox", "production"])
async def test_a_key_is_issued_for_its_environment_with_its_validity(pool, settings, environment):
    app = await new_application(pool, settings)
    written = await commit(pool, settings, app, key_for(app, environment))
    [key] = written.keys
    assert key.environment == environment
    assert key.display_prefix.startswith("cmsb_" if environment == "sandbox" else "cmpr_")
    assert 179 <= (key.expires_at - datetime.now(UTC)).days <= 180
