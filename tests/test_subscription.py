"""The subscription workflow end to end: real Temporal servers, a real worker, PostgreSQL, SMTP.

Ordinary paths run on the dev server; deadlines (days and weeks) on the time-skipping server.
Every application is driven as its people would: wait until the status query shows the step,
then send the decision.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date, timedelta
from email.message import Message

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

import starter
from onboarding.domain.admission import prepare_subscription
from onboarding.domain.models import (
    ApplicationStatus,
    ContractTerms,
    DeadlinePolicy,
    DecisionReceipt,
)
from onboarding.domain.record import Commit
from onboarding.store import applications, contracts
from onboarding.temporal import search_attributes as sa
from tests.support import data, drive
from tests.support.data import (
    APPROVER,
    BANK_PROVIDER,
    CRITERIA_HOLD,
    MANAGER,
    MARKET_DATA_PROVIDER,
    PLATFORM,
    REVIEWER,
    REVIEWER_AND_APPROVER,
    SALES,
    applicant,
    contract,
    decision,
    new_application,
)
from tests.support.drive import PATH, approval, by_id, decisions_recorded, drive_to, start
from tests.support.eventually import eventually
from tests.support.inbox import body, envelope, notice_id, notices
from tests.support.records import audit, on_record
from tests.support.stand_ins import HeldCommit, with_stand_ins
from workflows import versions

ORDINARY = ["account-balance"]
WITH_MARKET_DATA = ["stock-quotes", "account-balance"]

APPROVED_KINDS = ["pre_verification", "market_data_licence", "platform_contract",
                  "final_approval", "sandbox_testing_complete", "sandbox_verification",
                  "production_switch"]

REJECTED_BY = {
    "pre_verification": REVIEWER,
    "market_data_licence": SALES,
    "platform_contract": PLATFORM,
    "final_approval": APPROVER,
    "sandbox_verification": PLATFORM,
    "production_switch": APPROVER,
}


# --- 1-3: the happy paths --------------------------------------------------------------------


async def test_happy_path_without_market_data_reaches_production(
    dev_server, run_worker, settings, pool, task_queue, inbox, capfd
):
    client = dev_server.client
    application = new_application(settings, ORDINARY)
    app_id, contact = application.application_id, applicant(application)
    async with run_worker(client):
        handle = await start(client, settings, task_queue, application)
        at_approval = await drive_to(handle, application, "final_approval")
        assert at_approval.waiting_on == "final_approver"
        assert at_approval.keys == []
        testing = await drive_to(handle, application, "sandbox_testing")
        # The sandbox key is out before sandbox testing starts, the production key is not.
        assert [k.environment for k in testing.keys] == ["sandbox"]
        assert testing.waiting_on == "applicant"
        await drive_to(handle, application, "production_switch")
        name, payload = approval("production_switch", application)
        await handle.signal(name, payload)
        status = await drive.result(handle)
        description = await handle.describe()
        saved = await handle.fetch_history()
        history = saved.to_json()

    assert (status.outcome, status.step, status.waiting_on) == \
        ("in_production", "in_production", "")
    # Every change since v2 taken with one version marker (workflows/versions.py), not one each.
    markers = [e.SerializeToString() for e in saved.events
               if e.marker_recorded_event_attributes.marker_name == "core_patch"]
    assert len(markers) == 1 and versions.BUNDLE.encode() in markers[0], markers
    assert [d.decision for d in status.decisions] == [k for k in APPROVED_KINDS
                                                  if k != "market_data_licence"]
    assert all(d.applied and d.reason == "" for d in status.decisions)
    assert status.deadlines == []

    # Both keys, active, for the approved APIs, known only by their display prefix.
    keys = {k.environment: k for k in status.keys}
    assert set(keys) == {"sandbox", "production"}
    for environment, prefix in (("sandbox", "cmsb_"), ("production", "cmpr_")):
        key = keys[environment]
        assert key.status == "active" and key.scopes == ORDINARY
        assert key.display_prefix.startswith(prefix) and len(key.display_prefix) == 12

    rows = {r["environment"]: r for r in await pool.fetch(
        """SELECT key_id::text, environment, status, display_prefix, key_hash, scopes,
                  business_registration_number FROM api_keys WHERE application_id = $1""",
        app_id)}
    assert set(rows) == {"sandbox", "production"}
    for environment, row in rows.items():
        assert row["status"] == "active" and list(row["scopes"]) == ORDINARY
        assert row["key_id"] == keys[environment].key_id
        assert row["display_prefix"] == keys[environment].display_prefix
        assert row["business_registration_number"] == \
            application.organisation.business_registration_number

    # Each key mailed exactly once, to the applicant's contact only; the mail holds the key
    # whose hash is kept, and the key appears nowhere else (status, audit, workflow history,
    # search attributes, the worker's logs, other mail).
    logs = capfd.readouterr()
    everything_recorded = (status.model_dump_json() + repr(await audit(pool, app_id)) + history
                           + repr(description.typed_search_attributes) + logs.out + logs.err)
    assert app_id in history and "api key issued" in logs.err  # we looked in the right places
    for environment in ("sandbox", "production"):
        delivered = notices(inbox, app_id, f"key/{environment}/delivery")
        assert len(delivered) == 1, [m["Subject"] for m in delivered]
        assert envelope(delivered[0]) == {contact}
        found = re.search(r"API key: (\S+)", body(delivered[0]))
        assert found, body(delivered[0])
        key = found[1]
        assert key.startswith(keys[environment].display_prefix) and len(key) > 12
        assert hashlib.sha256(key.encode()).digest() == bytes(rows[environment]["key_hash"])
        assert key not in everything_recorded
        others = [m for m in inbox.messages if m is not delivered[0] and key in body(m)]
        assert others == []
    key_mails = [m for m in inbox.to(contact) if "API key" in m["Subject"]]
    assert len(key_mails) == 2

    # Member notices to the provider of the API, at final approval and at production.
    for suffix in ("member-notice/final-approval", "member-notice/production"):
        sent = notices(inbox, app_id, suffix)
        assert len(sent) == 1 and envelope(sent[0]) == {BANK_PROVIDER}, suffix
    assert len(notices(inbox, app_id, "in-production")) == 1
    assert len(notices(inbox, app_id, "received")) == 1

    # The record: application row, audit log with the applied decisions in order.
    row = await pool.fetchrow(
        "SELECT status, current_step FROM applications WHERE application_id = $1", app_id)
    assert dict(row) == {"status": "in_production", "current_step": "in_production"}
    log = await audit(pool, app_id, app_id)  # not its live service's
    assert [e["action"] for e in log if e["result"] == "applied"] == [
        "pre_verification", "platform_contract", "final_approval", "sandbox_testing_complete",
        "sandbox_verification", "production_switch",
    ]
    assert [e["actor"] for e in log if e["result"] == "applied"] == [
        REVIEWER, PLATFORM, APPROVER, contact, PLATFORM, APPROVER]
    actions = [e["action"] for e in log]
    assert "market_data_licence_not_needed" in actions
    assert actions.count("api_key_issued") == 2
    assert actions.index("api_key_issued") > actions.index("final_approval")
    assert [a for a in actions if a != "notice_sent"][-1] == "application_closed"
    assert not [e for e in log if e["result"] in ("refused", "failed")]
    contracts = await pool.fetch(
        "SELECT contract_type FROM contracts WHERE application_id = $1 ORDER BY 1", app_id)
    assert [r["contract_type"] for r in contracts] == ["platform", "service"]

    attributes = description.typed_search_attributes
    assert attributes.get(sa.APPLICATION_STEP) == "in_production"
    assert attributes.get(sa.WAITING_ON) == "nobody"
    assert attributes.get(sa.APPLICATION_KIND) == "subscription"
    assert attributes.get(sa.ORGANISATION_ID) == \
        application.organisation.business_registration_number


async def test_market_data_api_waits_for_the_licence_contract(
    dev_server, run_worker, settings, pool, task_queue, inbox
):
    client = dev_server.client
    application = new_application(settings, WITH_MARKET_DATA)
    app_id = application.application_id
    async with run_worker(client):
        handle = await start(client, settings, task_queue, application)
        waiting = await drive_to(handle, application, "market_data_licence", licence=True)
        assert waiting.waiting_on == "market_data_sales"
        licence = decision(SALES, verdict="concluded", contract=contract())
        await handle.signal("market_data_licence", licence)
        await drive.wait_for_step(handle, "platform_contract")
        await drive_to(handle, application, "production_switch", licence=True)
        name, payload = approval("production_switch", application)
        await handle.signal(name, payload)
        status = await drive.result(handle)

    assert status.outcome == "in_production"
    assert [d.decision for d in status.decisions] == APPROVED_KINDS
    assert all(d.applied for d in status.decisions)
    assert by_id(status)[licence["decision_id"]].decided_by == SALES
    row = await pool.fetchrow(
        """SELECT contract_number, business_registration_number, recorded_by, valid_until
           FROM contracts WHERE application_id = $1 AND contract_type = 'market_data_licence'""", app_id)
    assert row is not None
    assert row["contract_number"] == licence["contract"]["contract_number"]
    assert row["business_registration_number"] == \
        application.organisation.business_registration_number
    assert row["recorded_by"] == SALES
    assert row["valid_until"] == date.fromisoformat(licence["contract"]["valid_until"])
    actions = [e["action"] for e in await audit(pool, app_id)]
    assert actions.index("market_data_licence") < actions.index("platform_contract")
    assert "contract_recorded" in actions
    # Both providers hear of the new user: the market-data provider and the bank.
    notice = notices(inbox, app_id, "member-notice/final-approval")
    assert len(notice) == 1 and envelope(notice[0]) == {MARKET_DATA_PROVIDER, BANK_PROVIDER}


@pytest.mark.parametrize("licence_valid", [True, False], ids=["valid", "expired"])
async def test_a_licence_on_file_skips_the_licence_step(
    dev_server, run_worker, settings, pool, task_queue, licence_valid
):
    client = dev_server.client
    application = new_application(settings, ["index-values"])
    org = application.organisation
    app_id = application.application_id
    today = date.today()
    valid_until = today + timedelta(days=365) if licence_valid else today - timedelta(days=1)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO organisations (business_registration_number,
                   corporate_registration_number, legal_name, representative, contact_emails)
               VALUES ($1, $2, $3, $4, $5)""",
            org.business_registration_number, org.corporate_registration_number,
            org.legal_name, org.representative, [applicant(application)],
        )
        await conn.execute(
            """INSERT INTO contracts (contract_type, contract_number, business_registration_number,
                   signed_on, valid_from, valid_until, recorded_by)
               VALUES ('market_data_licence', $1, $2, $3, $3, $4, $5)""",
            f"L-{app_id[-12:]}", org.business_registration_number,
            today - timedelta(days=400), valid_until, SALES,
        )
    async with run_worker(client):
        handle = await start(client, settings, task_queue, application)
        name, payload = approval("pre_verification", application)
        await drive.signal_at(handle, "pre_verification", name, payload)
        next_step = "platform_contract" if licence_valid else "market_data_licence"
        await drive.wait_for_step(handle, next_step)
        await handle.signal("withdraw", decision(applicant(application)))
        status = await drive.result(handle)

    assert status.outcome == "withdrawn"
    log = await audit(pool, app_id)
    entered = [e["details"].get("waiting_on") for e in log if e["action"] == "step_entered"]
    actions = [e["action"] for e in log]
    if licence_valid:
        assert "market_data_licence_on_file" in actions
        on_file = next(e for e in log if e["action"] == "market_data_licence_on_file")
        assert on_file["details"]["contract_number"] == f"L-{app_id[-12:]}"
        assert "market_data_sales" not in entered
    else:
        assert "market_data_licence_on_file" not in actions
        assert "market_data_sales" in entered


# --- 4: the request-changes loop -------------------------------------------------------------


async def test_request_changes_then_resubmit_returns_to_pre_verification(
    dev_server, run_worker, settings, pool, task_queue, inbox
):
    client = dev_server.client
    application = new_application(settings, ORDINARY)
    app_id, contact = application.application_id, applicant(application)
    amended_service = {**application.service.model_dump(mode="json"), "name": "Index tracker"}
    async with run_worker(client):
        handle = await start(client, settings, task_queue, application)
        await drive.signal_at(handle, "pre_verification", "pre_verification",
                              decision(REVIEWER, verdict="request_changes",
                                       note="Explain how quotes are shown to users"))
        waiting = await drive.wait_for_step(handle, "changes_requested")
        assert waiting.waiting_on == "applicant"
        assert "lapse" in [d.purpose for d in waiting.deadlines]

        unknown = await handle.execute_update(
            "resubmit",
            decision(contact, service=amended_service,
                     requested_apis=["index-values", "no-such-api"]),
            result_type=DecisionReceipt,
        )
        assert not unknown.applied
        assert "no-such-api" in unknown.reason and "index-values" not in unknown.reason
        stranger = await handle.execute_update(
            "resubmit",
            decision("someone@elsewhere.example.com", service=amended_service,
                     requested_apis=["index-values"]),
            result_type=DecisionReceipt,
        )
        assert not stranger.applied and "not a registered contact" in stranger.reason
        assert (await drive.status(handle)).step == "changes_requested"

        await handle.signal("resubmit", decision(contact.upper(), service=amended_service,
                                                 requested_apis=["index-values"]))
        back = await drive.wait_for_step(handle, "pre_verification")
        assert back.waiting_on == "pre_verification_reviewer"
        name, payload = approval("pre_verification", application)
        await handle.signal(name, payload)
        # The amended APIs count now: index-values is a market-data API.
        await drive.wait_for_step(handle, "market_data_licence")
        await handle.signal("withdraw", decision(contact))
        status = await drive.result(handle)

    assert status.outcome == "withdrawn"
    assert [(d.decision, d.applied) for d in status.decisions] == [
        ("pre_verification", True), ("resubmit", False), ("resubmit", False),
        ("resubmit", True), ("pre_verification", True), ("withdraw", True)]
    changes = notices(inbox, app_id, f"changes/{status.decisions[0].decision_id}")
    assert len(changes) == 1 and envelope(changes[0]) == {contact}
    assert "Explain how quotes are shown to users" in body(changes[0])
    refused = [e for e in await audit(pool, app_id) if e["result"] == "refused"]
    assert [e["action"] for e in refused] == ["resubmit", "resubmit"]
    assert list(await pool.fetchval(
        "SELECT requested_apis FROM applications WHERE application_id = $1", app_id)
    ) == ["index-values"]
    assert "no-such-api" in refused[0]["reason"]


# --- 5-6: rejection and withdrawal -----------------------------------------------------------


@pytest.mark.parametrize("step", list(REJECTED_BY))
async def test_rejection_at_each_step(dev_server, run_worker, settings, pool, task_queue, inbox,
                                      step):
    client = dev_server.client
    application = new_application(settings, WITH_MARKET_DATA)
    app_id, contact = application.application_id, applicant(application)
    note = f"Rejected at {step}: does not meet the platform's terms"
    async with run_worker(client):
        handle = await start(client, settings, task_queue, application)
        await drive_to(handle, application, step, licence=True)
        await handle.signal(step, decision(REJECTED_BY[step], verdict="reject", note=note))
        status = await drive.result(handle)
        description = await handle.describe()
        # The relay sends it after the last commit: while the worker (and its relay) runs.
        await eventually(lambda: notices(inbox, app_id, "rejected"), what="the rejection notice")

    assert (status.outcome, status.step) == ("rejected", "rejected")
    assert status.decisions[-1].decision == step and status.decisions[-1].applied
    assert all(d.applied for d in status.decisions)
    mail = notices(inbox, app_id, "rejected")
    assert len(mail) == 1 and envelope(mail[0]) == {contact}
    assert step in body(mail[0]) and note in body(mail[0])

    had_key = PATH.index(step) > PATH.index("final_approval")
    keys = await pool.fetch(
        "SELECT environment, status, revoked_reason FROM api_keys WHERE application_id = $1",
        app_id)
    if had_key:
        assert [dict(k) for k in keys] == [
            {"environment": "sandbox", "status": "revoked", "revoked_reason": "rejected"}]
        assert [(k.environment, k.status) for k in status.keys] == [("sandbox", "revoked")]
    else:
        assert keys == [] and status.keys == []
    row = await pool.fetchrow(
        "SELECT status, current_step FROM applications WHERE application_id = $1", app_id)
    assert dict(row) == {"status": "rejected", "current_step": "rejected"}
    assert description.typed_search_attributes.get(sa.APPLICATION_STEP) == "rejected"


async def test_withdrawal_after_the_sandbox_key_revokes_it(
    dev_server, run_worker, settings, pool, task_queue, inbox
):
    client = dev_server.client
    application = new_application(settings, ORDINARY)
    app_id, contact = application.application_id, applicant(application)
    async with run_worker(client):
        handle = await start(client, settings, task_queue, application)
        testing = await drive_to(handle, application, "sandbox_testing")
        assert [(k.environment, k.status) for k in testing.keys] == [("sandbox", "active")]
        await handle.signal("withdraw", decision(contact, note="We are pivoting"))
        status = await drive.result(handle)
        await eventually(lambda: notices(inbox, app_id, "withdrawn"), what="the notice")

    assert (status.outcome, status.step) == ("withdrawn", "withdrawn")
    assert [(k.environment, k.status) for k in status.keys] == [("sandbox", "revoked")]
    row = await pool.fetchrow(
        """SELECT status, revoked_at IS NOT NULL AS revoked, revoked_reason FROM api_keys
           WHERE application_id = $1 AND environment = 'sandbox'""", app_id)
    assert dict(row) == {"status": "revoked", "revoked": True, "revoked_reason": "withdrawn"}
    assert await pool.fetchval(
        "SELECT count(*) FROM api_keys WHERE application_id = $1", app_id) == 1
    assert "api_key_revoked" in [e["action"] for e in await audit(pool, app_id)]
    mail = notices(inbox, app_id, "withdrawn")
    assert len(mail) == 1 and envelope(mail[0]) == {contact}


# --- 7: refusals on the record ---------------------------------------------------------------


async def test_refused_decisions_are_recorded_and_the_workflow_carries_on(
    dev_server, run_worker, settings, pool, task_queue
):
    client = dev_server.client
    application = new_application(settings, ORDINARY)
    app_id = application.application_id
    async with run_worker(client):
        handle = await start(client, settings, task_queue, application)
        await drive.wait_for_step(handle, "pre_verification")

        wrong_step = decision(PLATFORM, verdict="signed", contract=contract(),
                              eligibility_confirmed=True)
        no_role = decision(SALES, verdict="approve", criteria=CRITERIA_HOLD)
        no_criteria = decision(REVIEWER, verdict="approve")
        one_fails = decision(REVIEWER, verdict="approve",
                             criteria={**CRITERIA_HOLD, "not_speculative_or_gambling": False})
        reject_without_note = decision(REVIEWER, verdict="reject")
        await handle.signal("platform_contract", wrong_step)
        await handle.signal("pre_verification", no_role)
        await handle.signal("pre_verification", no_criteria)
        await handle.signal("pre_verification", one_fails)
        await handle.signal("pre_verification", reject_without_note)
        refused = await decisions_recorded(handle, 5)
        assert refused.step == "pre_verification"
        seen = by_id(refused)
        assert not any(d.applied for d in refused.decisions)
        assert "at step pre_verification" in seen[wrong_step["decision_id"]].reason
        assert "does not hold the role pre_verification_reviewer" in \
            seen[no_role["decision_id"]].reason
        assert "all three must hold" in seen[no_criteria["decision_id"]].reason
        assert "all three must hold" in seen[one_fails["decision_id"]].reason
        assert "needs a note" in seen[reject_without_note["decision_id"]].reason

        # As updates: a decision that cannot apply is refused by the validator (and leaves no
        # trace in the history); an entitlement failure is answered on the record.
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(
                "final_approval", decision(APPROVER, verdict="approve"),
                result_type=DecisionReceipt)
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(
                "pre_verification", decision(REVIEWER, verdict="approve"),
                result_type=DecisionReceipt)
        with pytest.raises(WorkflowUpdateFailedError):  # a repeat of a refused decision
            await handle.execute_update("pre_verification", no_role, result_type=DecisionReceipt)
        outcome = await handle.execute_update(
            "pre_verification", decision(SALES, verdict="approve", criteria=CRITERIA_HOLD),
            result_type=DecisionReceipt)
        assert not outcome.applied and outcome.step == "pre_verification"
        assert "does not hold the role" in outcome.reason
        assert len((await drive.status(handle)).decisions) == 6

        # The same decision delivered twice: applied once, the repeat refused.
        by_dual = decision(REVIEWER_AND_APPROVER, verdict="approve", criteria=CRITERIA_HOLD)
        await handle.signal("pre_verification", by_dual)
        await handle.signal("pre_verification", by_dual)
        twice = await decisions_recorded(handle, 8)
        repeats = [d for d in twice.decisions if d.decision_id == by_dual["decision_id"]]
        assert [d.applied for d in repeats] == [True, False]
        assert "already received" in repeats[1].reason

        # Four eyes: the pre-verification reviewer may not also give the final approval.
        await drive_to(handle, application, "final_approval")  # signs the platform contract
        own = await handle.execute_update(
            "final_approval", decision(REVIEWER_AND_APPROVER, verdict="approve"),
            result_type=DecisionReceipt)
        assert not own.applied and "four eyes" in own.reason
        await handle.signal("final_approval",
                            decision(REVIEWER_AND_APPROVER.upper(), verdict="approve"))
        await decisions_recorded(handle, 11)
        assert (await drive.status(handle)).step == "final_approval"
        await handle.signal("final_approval", decision(APPROVER, verdict="approve"))
        testing = await drive.wait_for_step(handle, "sandbox_testing")
        assert [k.environment for k in testing.keys] == ["sandbox"]
        await handle.signal("withdraw", decision(applicant(application)))
        status = await drive.result(handle)

    assert status.outcome == "withdrawn"
    applied = [(d.decision, d.decided_by) for d in status.decisions if d.applied]
    assert applied == [("pre_verification", REVIEWER_AND_APPROVER),
                       ("platform_contract", PLATFORM), ("final_approval", APPROVER),
                       ("withdraw", applicant(application))]
    four_eyes = [d for d in status.decisions if d.decision == "final_approval" and not d.applied]
    assert len(four_eyes) == 2 and all("four eyes" in d.reason for d in four_eyes)
    log = await audit(pool, app_id)
    recorded = [(e["action"], e["result"]) for e in log if e["result"] in ("applied", "refused")]
    assert recorded == [(d.decision, "applied" if d.applied else "refused") for d in status.decisions]


@pytest.fixture
def worker_holding(dev_server, run_worker, settings, pool):
    """`async with worker_holding(holds) as held:` a worker with the platform's activities,
    its commits held while `holds(commit)` until the test lets them go (HeldCommit)."""

    @asynccontextmanager
    async def _run(holds: Callable[[Commit], bool]) -> AsyncIterator[HeldCommit]:
        held = HeldCommit(pool, settings, holds)
        async with run_worker(dev_server.client, with_stand_ins(pool, settings, held)):
            yield held

    return _run


async def test_a_decision_sent_while_the_previous_one_is_verified_applies_once_it_holds(
    dev_server, worker_holding, settings, task_queue
):
    """A decision is verified by the commit that writes it with its step's effects: meanwhile
    the status shows the application as on record, the decision `verifying`, and the search
    attributes stay where they were. The next step's decision, sent then, is taken once the
    first holds, and applies."""
    client = dev_server.client
    application = new_application(settings, ORDINARY)
    async with worker_holding(lambda commit: commit.step == "platform_contract") as held:
        handle = await start(client, settings, task_queue, application)
        name, payload = approval("pre_verification", application)
        await drive.signal_at(handle, "pre_verification", name, payload)
        async with held.while_held(drive.TIMEOUT):
            shown = await drive.status(handle)
            assert (shown.step, shown.verifying) == ("pre_verification",
                                                     payload["decision_id"])
            assert payload["decision_id"] not in by_id(shown)
            listed = (await handle.describe()).typed_search_attributes
            assert listed.get(sa.APPLICATION_STEP) == "pre_verification"
            name, next_payload = approval("platform_contract", application)
            update = asyncio.create_task(
                handle.execute_update(name, next_payload, result_type=DecisionReceipt))
            await asyncio.sleep(0.5)  # admitted by its validator, waiting for the first
            assert not update.done()
        try:
            receipt = await asyncio.wait_for(update, drive.TIMEOUT)
        except WorkflowUpdateFailedError as err:
            raise AssertionError(f"refused: {err.cause}") from None
        assert receipt.applied and receipt.step == "platform_contract", receipt
        shown = await drive.wait_for_step(handle, "final_approval")
        assert shown.verifying == "" and by_id(shown)[payload["decision_id"]].applied
        await handle.signal("withdraw", decision(applicant(application)))
        assert (await drive.result(handle)).outcome == "withdrawn"


async def an_api_of_a_publication(pool) -> str:
    """An API in the catalogue as a publication put it there (its row only, no workflow)."""
    api_id = f"api-{uuid.uuid4().hex[:8]}"
    async with pool.acquire() as conn, conn.transaction():
        publication, brn = await on_record(conn, "publication", [api_id], api_id=api_id,
                                           step="in_sandbox_waiting_for_service")
        await conn.execute(
            """INSERT INTO api_catalogue (api_id, name, category, is_market_data,
                   provider_business_registration_number, publication_application_id)
               VALUES ($1, 'Yields', 'market-data', false, $2, $3)""", api_id, brn, publication)
    return api_id


async def test_a_withdrawal_sent_while_the_production_switch_is_verified_comes_after_it(
    dev_server, worker_holding, settings, pool, task_queue, inbox
):
    """Decisions are taken in the order they arrive. The production switch is verified by the
    commit that writes the production key, in the switch's workflow task: a withdrawal sent
    meanwhile reaches the application once the switch holds, when it is in production, and its
    validator refuses it (nothing written), naming why."""
    client = dev_server.client
    application = new_application(settings, [await an_api_of_a_publication(pool)])
    app_id, contact = application.application_id, applicant(application)
    async with worker_holding(lambda commit: any(
        e.entry == "key" and e.environment == "production" for e in commit.entries)) as held:
        handle = await start(client, settings, task_queue, application)
        await drive_to(handle, application, "production_switch")
        name, payload = approval("production_switch", application)
        await handle.signal(name, payload)
        async with held.while_held(drive.TIMEOUT):
            withdrawing = asyncio.create_task(handle.execute_update(
                "withdraw", decision(contact), result_type=DecisionReceipt))
            await asyncio.sleep(0.5)
            assert not withdrawing.done()
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await asyncio.wait_for(withdrawing, drive.TIMEOUT)
        status = await drive.result(handle)

    assert "has ended (in_production)" in str(refused.value.cause)
    assert status.outcome == "in_production", status
    assert by_id(status)[payload["decision_id"]].applied
    assert await pool.fetchval(
        "SELECT count(*) FROM api_keys WHERE application_id = $1 AND status = 'active' "
        "AND environment = 'production'", app_id) == 1
    # The publication (a row without a workflow here) is told, or tried.
    assert {"service_launch_told", "service_launch_not_delivered"} & {
        e["action"] for e in await audit(pool, app_id)}
    await eventually(lambda: notices(inbox, app_id, "in-production"),
                     what="the in-production notice")


async def test_a_withdrawal_between_two_steps_is_honoured(
    dev_server, worker_holding, settings, task_queue
):
    """A withdrawal applied while the platform writes a step's entry (here the licence's,
    after a pre-verification looked the licence up) ends the application there."""
    client = dev_server.client
    application = new_application(settings, WITH_MARKET_DATA)
    async with worker_holding(lambda commit: commit.step == "market_data_licence") as held:
        handle = await start(client, settings, task_queue, application)
        name, payload = approval("pre_verification", application)
        await drive.signal_at(handle, "pre_verification", name, payload)
        async with held.while_held(drive.TIMEOUT):
            withdrawal = await handle.execute_update(
                "withdraw", decision(applicant(application)), result_type=DecisionReceipt)
        status = await drive.result(handle)
    assert withdrawal.applied, withdrawal
    assert (status.outcome, status.takes) == ("withdrawn", [])


async def test_a_withdrawal_after_the_rejection_is_refused(
    dev_server, worker_holding, settings, task_queue
):
    """Once a rejection is applied the application has ended: a later withdrawal is refused."""
    client = dev_server.client
    application = new_application(settings, ORDINARY)
    async with worker_holding(lambda commit: any(
        e.entry == "notice" and e.notice.template == "application_rejected"
        for e in commit.entries)) as held:
        handle = await start(client, settings, task_queue, application)
        await drive.signal_at(handle, "pre_verification", "pre_verification",
                              decision(REVIEWER, verdict="reject", note="Gambling-like"))
        # Rejected; its record is being written (and the rejection verified).
        async with held.while_held(drive.TIMEOUT):
            late = decision(applicant(application))
            await handle.signal("withdraw", late)
            await asyncio.sleep(0.5)
        await decisions_recorded(handle, 2)
        status = await drive.result(handle)

    assert status.outcome == "rejected"
    withdrawal = by_id(status)[late["decision_id"]]
    assert not withdrawal.applied and "has ended" in withdrawal.reason, withdrawal


# --- 8: deadlines, on the time-skipping server -----------------------------------------------


async def status_with_deadlines(handle: WorkflowHandle, step: str) -> ApplicationStatus:
    """The status once `step` has been entered and its deadlines set."""
    return await drive.status_until(handle, lambda s: s.step == step and s.deadlines,
                                    f"{step} with its deadlines")


async def test_reminder_and_escalation_while_waiting_on_the_reviewer(
    time_skipping_server, run_worker, settings, pool, task_queue, inbox
):
    env = time_skipping_server
    client = env.client
    application = new_application(settings, ORDINARY)
    app_id = application.application_id
    prefix = f"{app_id}/pre_verification/"

    def deadline_mail() -> list[Message]:
        return [m for m in inbox.messages if notice_id(m).startswith(prefix)]

    async with run_worker(client):
        handle = await start(client, settings, task_queue, application)
        waiting = await status_with_deadlines(handle, "pre_verification")
        assert [(d.purpose, d.due_at - waiting.waiting_since) for d in waiting.deadlines] == [
            ("reminder", timedelta(days=7)), ("escalation", timedelta(days=21))]

        await env.sleep(timedelta(days=6, hours=23))
        await asyncio.sleep(1)
        assert deadline_mail() == []
        await env.sleep(timedelta(hours=2))
        await eventually(deadline_mail, what="the reminder")
        await asyncio.sleep(0.5)
        reminders = deadline_mail()
        assert [notice_id(m).rsplit("/", 1)[1] for m in reminders] == ["reminder"]
        assert envelope(reminders[0]) == {REVIEWER, REVIEWER_AND_APPROVER}
        assert [d.purpose for d in (await drive.status(handle)).deadlines] == ["escalation"]

        await env.sleep(timedelta(days=13))  # day 20
        await asyncio.sleep(1)
        assert len(deadline_mail()) == 1
        await env.sleep(timedelta(days=1, hours=1))
        await eventually(lambda: len(deadline_mail()) == 3, what="the escalation")
        escalations = {notice_id(m).split("/", 3)[3]: envelope(m) for m in deadline_mail()[1:]}
        assert escalations == {"escalation": {REVIEWER, REVIEWER_AND_APPROVER},
                               "escalation/manager": {MANAGER}}
        still = await drive.status(handle)
        assert (still.step, still.deadlines, still.outcome) == ("pre_verification", [], "")

        # Still healthy: the reviewer decides late, and it applies.
        await handle.signal("pre_verification",
                            decision(REVIEWER, verdict="reject", note="Too late, and off-topic"))
        status = await drive.result(handle)

    assert status.outcome == "rejected"
    actions = [e["action"] for e in await audit(pool, app_id)]
    assert actions.count("reminder_due") == 1 and actions.count("escalation_due") == 1


async def test_an_application_left_with_the_applicant_lapses(
    time_skipping_server, run_worker, settings, pool, task_queue, inbox
):
    env = time_skipping_server
    client = env.client
    policy = DeadlinePolicy(remind_after_days=5, escalate_after_days=10, lapse_after_days=30)
    application = new_application(settings, ORDINARY).model_copy(update={"deadlines": policy})
    app_id, contact = application.application_id, applicant(application)
    async with run_worker(client):
        handle = await start(client, settings, task_queue, application)
        await drive.signal_at(handle, "pre_verification", "pre_verification",
                              decision(REVIEWER, verdict="request_changes",
                                       note="Describe the service in more detail"))
        waiting = await status_with_deadlines(handle, "changes_requested")
        assert [(d.purpose, d.due_at - waiting.waiting_since) for d in waiting.deadlines] == [
            ("reminder", timedelta(days=5)), ("escalation", timedelta(days=10)),
            ("lapse", timedelta(days=30))]

        await env.sleep(timedelta(days=29))
        prefix = f"{app_id}/changes_requested/"

        def deadline_mail() -> dict[str, set[str]]:
            return {notice_id(m).split("/", 3)[3]: envelope(m)
                    for m in inbox.messages if notice_id(m).startswith(prefix)}

        await eventually(lambda: len(deadline_mail()) == 3, what="reminder and escalation")
        assert deadline_mail() == {"reminder": {contact}, "escalation": {contact},
                                   "escalation/manager": {MANAGER}}
        alive = await drive.status(handle)
        assert (alive.step, alive.outcome) == ("changes_requested", "")
        assert [d.purpose for d in alive.deadlines] == ["lapse"]
        assert notices(inbox, app_id, "lapsed") == []

        status = await asyncio.wait_for(handle.result(), drive.TIMEOUT)

    assert (status.outcome, status.step) == ("lapsed", "lapsed")
    mail = notices(inbox, app_id, "lapsed")
    assert len(mail) == 1 and envelope(mail[0]) == {contact}
    assert "30 days" in body(mail[0])
    actions = [e["action"] for e in await audit(pool, app_id)]
    assert "lapse_due" in actions
    assert [a for a in actions if a != "notice_sent"][-1] == "application_closed"


async def test_deadlines_falling_on_the_same_day_all_pass(
    time_skipping_server, run_worker, settings, pool, task_queue, inbox
):
    """The policy only orders reminder before escalation: a lapse may fall on the escalation's
    day. Each deadline still passes, in order, and the application lapses."""
    env = time_skipping_server
    client = env.client
    policy = DeadlinePolicy(remind_after_days=5, escalate_after_days=10, lapse_after_days=10)
    application = new_application(settings, ORDINARY).model_copy(update={"deadlines": policy})
    app_id = application.application_id
    async with run_worker(client):
        handle = await start(client, settings, task_queue, application)
        await drive.signal_at(handle, "pre_verification", "pre_verification",
                              decision(REVIEWER, verdict="request_changes", note="More detail"))
        await status_with_deadlines(handle, "changes_requested")
        status = await asyncio.wait_for(handle.result(), drive.TIMEOUT)

    assert status.outcome == "lapsed"
    actions = [e["action"] for e in await audit(pool, app_id)]
    due = [a for a in actions if a.endswith("_due")]
    assert due == ["reminder_due", "escalation_due", "lapse_due"]
    assert len(notices(inbox, app_id, "lapsed")) == 1


async def test_the_next_steps_deadlines_count_from_when_it_began_on_the_kept_timer(
    time_skipping_server, run_worker, settings, pool, task_queue, inbox
):
    """Deadlines wait on one timer kept from step to step (workflows/deadlines.py): decided on
    day 3, pre-verification's timer is not cancelled; it fires on day 7 and reminds nobody, and
    the next step is reminded on day 10, a week after it began."""
    env = time_skipping_server
    client = env.client
    application = new_application(settings, ORDINARY)
    app_id = application.application_id
    async with run_worker(client):
        handle = await start(client, settings, task_queue, application)
        await status_with_deadlines(handle, "pre_verification")
        await env.sleep(timedelta(days=3))
        name, payload = approval("pre_verification", application)
        await handle.signal(name, payload)
        nxt = await drive.status_until(
            handle, lambda s: s.step != "pre_verification" and s.deadlines, "the next step")
        assert nxt.deadlines[0].due_at - nxt.waiting_since == timedelta(days=7)

        def reminders() -> list[str]:
            return [notice_id(m) for m in inbox.messages
                    if notice_id(m).startswith(f"{app_id}/") and notice_id(m).endswith("/reminder")]

        await env.sleep(timedelta(days=5))  # day 8: the kept timer has fired
        await asyncio.sleep(1)
        assert reminders() == []
        await env.sleep(timedelta(days=2, hours=1))  # day 10
        await eventually(reminders, what="the next step's reminder")
        assert [r.split("/")[1] for r in reminders()] == [nxt.step]

        events = [e async for e in handle.fetch_history_events()]
        kinds = [EventType.Name(e.event_type) for e in events]
        assert kinds.count("EVENT_TYPE_TIMER_CANCELED") == 0
        assert kinds.count("EVENT_TYPE_TIMER_FIRED") == 2  # day 7 (kept), day 10 (its own)
        await handle.signal("withdraw", decision(applicant(application)))
        status = await drive.result(handle)
    assert status.outcome == "withdrawn"


# --- 9: one workflow per application ---------------------------------------------------------


async def test_the_same_application_cannot_be_started_twice(
    dev_server, run_worker, settings, pool, task_queue, inbox
):
    client = dev_server.client
    form = data.subscription_form(ORDINARY)
    application = prepare_subscription(form, settings)
    app_id = application.application_id
    # The same organisation applying for the same service, written differently.
    again = {**form, "service": {**form["service"],
                                 "name": "  " + form["service"]["name"].upper() + " "}}
    assert prepare_subscription(again, settings).application_id == app_id
    async with run_worker(client):
        handle = await start(client, settings, task_queue, application)
        with pytest.raises(starter.AlreadySubmitted):
            await start(client, settings, task_queue, application)
        with pytest.raises(starter.AlreadySubmitted):
            await start(client, settings, task_queue, prepare_subscription(again, settings))
        await drive.signal_at(handle, "pre_verification", "pre_verification",
                              decision(REVIEWER, verdict="reject", note="Out of scope"))
        assert (await drive.result(handle)).outcome == "rejected"
        # Not even after the first has ended.
        with pytest.raises(starter.AlreadySubmitted):
            await start(client, settings, task_queue, application)

    async def listed_once() -> list:
        return [w async for w in client.list_workflows(f"WorkflowId = '{app_id}'")]

    listed = await eventually(listed_once, what=f"{app_id} in the workflow list", interval=0.2)
    assert len(listed) == 1 and listed[0].run_id == handle.result_run_id
    assert await pool.fetchval(
        "SELECT count(*) FROM applications WHERE application_id = $1", app_id) == 1
    assert len(notices(inbox, app_id, "received")) == 1


async def test_a_malformed_decision_is_refused_on_the_record_naming_the_field(
    dev_server, run_worker, settings, pool, task_queue
):
    """What a person might type wrong in the UI: a bad value, a missing field, an unknown
    field, not an object at all. Each is refused with the field and rule; the step goes on."""
    client = dev_server.client
    application = new_application(settings, ORDINARY)
    async with run_worker(client):
        handle = await start(client, settings, task_queue, application)
        await drive.wait_for_step(handle, "pre_verification")
        await handle.signal("pre_verification", decision(REVIEWER, verdict="maybe"))
        await handle.signal("pre_verification", {"decided_by": REVIEWER, "verdict": "reject"})
        await handle.signal("pre_verification", decision(REVIEWER, verdict="reject", note="x",
                                                         opinion="no"))
        await handle.signal("pre_verification", "approve")
        status = await decisions_recorded(handle, 4)
        await handle.signal("pre_verification", decision(REVIEWER, verdict="reject",
                                                         note="speculative"))
        final = await drive.result(handle)

    reasons = [d.reason for d in status.decisions]
    assert all(not d.applied for d in status.decisions)
    assert "verdict" in reasons[0] and "[literal_error]" in reasons[0]
    assert "decision_id" in reasons[1] and "[missing]" in reasons[1]
    assert "opinion" in reasons[2] and "[extra_forbidden]" in reasons[2]
    assert "(payload)" in reasons[3]
    assert final.outcome == "rejected"  # the workflow was never wedged
    refused = await pool.fetch(
        # In the order the workflow wrote them (its journal's entry number ends the entry id).
        """SELECT reason FROM audit_trail WHERE application_id = $1 AND result = 'refused'
           ORDER BY substring(entry_id from '/([0-9]+)')::int""",
        application.application_id)
    assert [r["reason"] for r in refused] == reasons


async def test_a_refused_licence_decision_leaves_no_licence_on_file(
    dev_server, run_worker, settings, pool, task_queue
):
    """A refused decision writes nothing but its refusal: a licence refused for its sender or
    for its contract number records no contract, so the organisation's next application finds
    no licence on file and waits for one."""
    client = dev_server.client
    first = new_application(settings, ["stock-quotes"])
    brn = first.organisation.business_registration_number
    taken = contract()
    other = new_application(settings, ORDINARY)  # holds a licence numbered `taken`
    await applications.record(pool, application_id=other.application_id, process="subscription",
                              organisation=other.organisation,
                              workflow_id=other.application_id, requested_apis=ORDINARY)
    await contracts.record(pool, contract_type="market_data_licence",
                           terms=ContractTerms(**taken),
                           business_registration_number=other.organisation
                           .business_registration_number,
                           application_id=other.application_id, recorded_by=SALES)
    async with run_worker(client):
        handle = await start(client, settings, task_queue, first)
        await drive_to(handle, first, "market_data_licence", licence=True)
        for by, terms in ((PLATFORM, contract()), (SALES, {**taken})):
            await handle.signal("market_data_licence",
                                decision(by, verdict="concluded", contract=terms))
        refused = await decisions_recorded(handle, 3)
        assert [d.applied for d in refused.decisions[1:]] == [False, False]
        assert "another application" in refused.decisions[2].reason
        await handle.signal("withdraw", decision(applicant(first)))
        await drive.result(handle)

        again = prepare_subscription(data.subscription_form(
            ["index-values"], business_registration_number=brn), settings)
        handle = await start(client, settings, task_queue, again)
        await drive_to(handle, again, "market_data_licence", licence=True)
        await handle.signal("withdraw", decision(applicant(again)))
        await drive.result(handle)

    assert await pool.fetchval(
        "SELECT count(*) FROM contracts WHERE business_registration_number = $1", brn) == 0
    log = await audit(pool, again.application_id)
    assert "market_data_licence_on_file" not in [e["action"] for e in log]
