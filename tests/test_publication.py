"""The publication workflow end to end: a member company's API from pre-review to the sandbox
catalogue, and to production when a real subscription using it launches.

Real Temporal servers, a real worker, PostgreSQL and SMTP, as in test_subscription.py. Each
test has its own provider (a fresh corporation) and its own API id.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import secrets
import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

import starter
from onboarding.domain.admission import (
    MAX_SPECIFICATION_BYTES,
    SubmissionRefused,
    prepare_publication,
    prepare_subscription,
)
from onboarding.domain.models import DecisionReceipt, PublicationApplication
from onboarding.domain.openapi import canonical_json
from onboarding.temporal import search_attributes as sa
from tests.support import data, drive
from tests.support.data import (
    BANK_PROVIDER,
    MARKET_DATA_PROVIDER,
    PLATFORM,
    decision,
    publication_form,
    revised,
)
from tests.support.drive import approval, by_id, decisions_recorded, drive_to, start
from tests.support.eventually import eventually
from tests.support.inbox import body, envelope, notice_id, notices
from tests.support.records import audit, on_record

EXAMPLE = data.PUBLICATION_EXAMPLE
WAITING = "in_sandbox_waiting_for_service"


# --- helpers ---------------------------------------------------------------------------------


def new_api_id(length: int = 0) -> str:
    api_id = f"api-{uuid.uuid4().hex[:8]}"
    return (api_id + "-" + "x" * 64)[:length] if length else api_id


def new_publication(settings, api_id: str | None = None, **api: Any) -> PublicationApplication:
    return prepare_publication(publication_form(api_id or new_api_id(), **api), settings)


def provider(application: PublicationApplication) -> str:
    return str(application.organisation.contact_emails[0])


def without_responses(spec: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    del spec["paths"]["/bond-yields"]["get"]["responses"]
    return spec


def sha256(spec: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(spec)).hexdigest()


async def to_sandbox(handle: WorkflowHandle, application: PublicationApplication):
    """Pre-review approved, tests reported and approved: the status once in the sandbox."""
    await drive.signal_at(handle, "pre_review", "pre_review", decision(PLATFORM, verdict="approve"))
    await drive.signal_at(handle, "api_testing", "api_test_report",
                          decision(provider(application), results="42 cases pass"))
    await drive.signal_at(handle, "api_test_review", "api_test_review",
                          decision(PLATFORM, verdict="approve"))
    return await drive.wait_for_step(handle, WAITING)


async def catalogue(pool, api_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        """SELECT stage, spec_version, integration_method, publication_application_id,
                  provider_business_registration_number AS provider, is_market_data, name
           FROM api_catalogue WHERE api_id = $1""", api_id)
    return dict(row) if row else None


async def versions(pool, api_id: str) -> list[tuple[str, str, str]]:
    rows = await pool.fetch(
        """SELECT stage, spec_version, spec_sha256 FROM api_versions WHERE api_id = $1
           ORDER BY published_at, stage""", api_id)
    return [tuple(r) for r in rows]


async def subscription_on_record(pool, apis: list[str]) -> str:
    """A subscription as the record shows it once in production (application row and active
    production key), without running its workflow."""
    async with pool.acquire() as conn, conn.transaction():
        app_id, brn = await on_record(conn, "subscription", apis, step="in_production",
                                      status="in_production")
        await conn.execute(
            """INSERT INTO api_keys (key_id, issuance_id, application_id,
                   business_registration_number, environment, key_hash, display_prefix,
                   scopes, expires_at)
               VALUES (gen_random_uuid(), $1, $2, $3, 'production', $4, 'cmpr_0000000',
                       $5, now() + interval '730 days')""",
            f"{app_id}/key/production", app_id, brn, secrets.token_bytes(32), apis)
    return app_id


def launched(subscription_id: str, api_id: str) -> dict[str, Any]:
    """What a subscription's workflow sends the publication when it reaches production."""
    return decision(subscription_id, subscription_application_id=subscription_id, api_id=api_id)


# --- 1: submission ---------------------------------------------------------------------------


async def test_the_example_is_accepted(settings, pool):
    application = prepare_publication(EXAMPLE, settings)
    assert application.application_id == "publication-1348672683-bond-yields"
    summary = application.specification_summary
    assert (summary.openapi_version, summary.title, summary.version, summary.operation_count) \
        == ("3.0.3", "Bond yields", "1.0.0", 1)
    assert summary.sha256 == sha256(EXAMPLE["specification"])
    assert application.api.integration_method == "rest_over_internet"
    await starter.check_record(pool, application)  # bond-yields is not in the catalogue


@pytest.mark.parametrize("problem", ["invalid_openapi", "swagger_2", "not_a_json_number",
                                     "sole_proprietor"])
async def test_a_refused_submission_starts_nothing(dev_server, settings, pool, task_queue,
                                                   problem):
    form = publication_form(new_api_id())
    expected: dict[str, str]
    if problem == "invalid_openapi":
        spec = without_responses(form["specification"])
        spec["paths"]["/bond-yields"]["get"]["parameters"][0]["in"] = "body"
        form["specification"] = spec
        expected = {"specification.paths./bond-yields.get": "openapi",
                    "specification.paths./bond-yields.get.parameters.0": "openapi"}
    elif problem == "swagger_2":
        form["specification"] = {"swagger": "2.0", "info": {"title": "Yields", "version": "1"},
                                 "paths": {"/y": {"get": {"responses": {"200": {
                                     "description": "ok"}}}}}}
        expected = {"specification.swagger": "openapi"}
    elif problem == "not_a_json_number":  # what json.loads makes of `NaN` in the file
        schemas = form["specification"]["components"]["schemas"]
        schemas["BondYield"]["properties"]["yield_percent"]["example"] = float("nan")
        expected = {"specification.components.schemas.BondYield.properties.yield_percent"
                    ".example": "openapi"}
    else:
        form["organisation"]["business_registration_number"] = "123-12-34562"
        expected = {"organisation.business_registration_number": "corporations_only"}
    target = dev_server.client.service_client.config.target_host
    submitting = settings.model_copy(update={"temporal_address": target,
                                             "temporal_task_queue": task_queue})
    with pytest.raises(SubmissionRefused) as refused:
        await starter.submit("publication", form, submitting)

    assert {r.field: r.rule for r in refused.value.refusals} == expected
    messages = {r.field: r.message for r in refused.value.refusals}
    if problem == "invalid_openapi":
        assert "'responses' is a required property" in \
            messages["specification.paths./bond-yields.get"]
        assert "'body' is not one of" in \
            messages["specification.paths./bond-yields.get.parameters.0"]
    elif problem == "swagger_2":
        assert "Swagger '2.0' is not accepted" in messages["specification.swagger"]
    elif problem == "not_a_json_number":
        assert "nan is not a JSON number" in str(refused.value)
    else:
        assert "corporations only" in str(refused.value)

    brn = "1231234562" if problem == "sole_proprietor" else \
        form["organisation"]["business_registration_number"]
    wf_id = f"publication-{brn}-{form['api']['api_id']}"
    with pytest.raises(RPCError) as missing:
        await dev_server.client.get_workflow_handle(wf_id).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND
    assert [w async for w in dev_server.client.list_workflows(f'WorkflowId = "{wf_id}"')] == []
    assert await pool.fetchval(
        "SELECT count(*) FROM applications WHERE application_id = $1", wf_id) == 0


async def test_an_api_id_in_the_catalogue_is_refused(settings, pool):
    application = new_publication(settings, "stock-quotes")
    with pytest.raises(SubmissionRefused) as refused:
        await starter.check_record(pool, application)
    assert [(r.field, r.rule) for r in refused.value.refusals] == [("api.api_id", "api_id_taken")]
    assert "stock-quotes is already in the API catalogue" in str(refused.value)


# --- 2: sandbox, then production when a real subscription launches ---------------------------


async def test_sandbox_then_production_when_a_subscription_using_it_launches(
    dev_server, run_worker, settings, pool, task_queue, inbox
):
    client = dev_server.client
    # The longest API id there may be: everything derived from it must still fit.
    api_id = new_api_id(64)
    application = new_publication(settings, api_id, is_market_data=True)
    app_id, contact = application.application_id, provider(application)
    spec = application.specification_summary
    subscription = prepare_subscription(data.subscription_form(apis=[api_id]), settings)
    with pytest.raises(SubmissionRefused):  # not in the catalogue before the sandbox
        await starter.check_record(pool, subscription)

    async with run_worker(client):
        handle = await start(client, settings, task_queue, application)
        waiting = await to_sandbox(handle, application)
        assert (waiting.waiting_on, waiting.deadlines, waiting.outcome) == \
            ("platform_workflow", [], "")
        attributes = (await handle.describe()).typed_search_attributes
        assert attributes.get(sa.APPLICATION_KIND) == "publication"
        assert attributes.get(sa.APPLICATION_STEP) == WAITING
        assert attributes.get(sa.WAITING_ON) == "platform_workflow"

        assert await catalogue(pool, api_id) == {
            "stage": "sandbox", "spec_version": "1.0.0", "integration_method": "rest_over_internet",
            "publication_application_id": app_id, "is_market_data": True,
            "provider": application.organisation.business_registration_number,
            "name": application.api.name}
        assert await versions(pool, api_id) == [("sandbox", "1.0.0", spec.sha256)]
        stored = await pool.fetchval(
            "SELECT specification FROM api_versions WHERE api_id = $1", api_id)
        assert stored == application.specification
        published = notices(inbox, app_id, "published/sandbox")
        assert len(published) == 1 and envelope(published[0]) == {contact}
        assert "1.0.0" in body(published[0]) and "sandbox" in published[0]["Subject"]
        member = notices(inbox, app_id, "member-notice/sandbox")
        assert len(member) == 1
        assert {MARKET_DATA_PROVIDER, BANK_PROVIDER, contact} <= envelope(member[0])

        # A fintech's subscription may now request it, and goes all the way to production.
        await starter.check_record(pool, subscription)
        sub = await start(client, settings, task_queue, subscription)
        await drive_to(sub, subscription, "production_switch", licence=True)
        assert (await drive.status(handle)).step == WAITING  # sandbox testing is not a launch
        assert (await catalogue(pool, api_id))["stage"] == "sandbox"
        await sub.signal(*approval("production_switch", subscription))
        sub_status = await drive.result(sub)
        status = await drive.result(handle)

    assert sub_status.outcome == "in_production"
    assert (status.outcome, status.step, status.waiting_on) == \
        ("in_production", "in_production", "")
    assert [(d.decision, d.applied) for d in status.decisions] == [
        ("pre_review", True), ("api_test_report", True), ("api_test_review", True),
        ("service_launched", True)]
    assert status.decisions[-1].decided_by == subscription.application_id
    assert (await catalogue(pool, api_id))["stage"] == "production"
    assert await versions(pool, api_id) == [("sandbox", "1.0.0", spec.sha256),
                                            ("production", "1.0.0", spec.sha256)]
    for suffix in ("published/production", "member-notice/production"):
        assert len(notices(inbox, app_id, suffix)) == 1, suffix
    # The provider heard of the new user of its API, as a member company.
    approved = notices(inbox, subscription.application_id, "member-notice/final-approval")
    assert len(approved) == 1 and envelope(approved[0]) == {contact}

    log = await audit(pool, app_id)
    assert [(e["action"], e["actor"]) for e in log if e["result"] == "applied"] == [
        ("pre_review", PLATFORM), ("api_test_report", contact), ("api_test_review", PLATFORM),
        ("service_launched", subscription.application_id)]
    assert [e["details"]["stage"] for e in log if e["action"] == "api_published"] == \
        ["sandbox", "production"]
    assert not [e for e in log if e["result"] in ("refused", "failed")]
    assert await pool.fetchrow(
        "SELECT status, current_step FROM applications WHERE application_id = $1", app_id
    ) == ("in_production", "in_production")
    told = [e for e in await audit(pool, subscription.application_id)
            if e["action"].startswith("service_launch")]
    assert [(e["action"], e["details"]) for e in told] == [
        ("service_launch_told", {"publication": app_id})]


# --- 3: the request-changes loop -------------------------------------------------------------


async def test_request_changes_then_a_revised_specification(
    dev_server, run_worker, settings, pool, task_queue, inbox
):
    client = dev_server.client
    application = new_publication(settings)
    app_id, contact, api_id = application.application_id, provider(application), \
        application.api.api_id
    better = revised(application.specification, "1.1.0")
    note = "Use the dedicated line, and document the 400 response"
    async with run_worker(client):
        handle = await start(client, settings, task_queue, application)
        await drive.signal_at(handle, "pre_review", "pre_review",
                              decision(PLATFORM, verdict="request_changes", note=note))
        waiting = await drive.wait_for_step(handle, "specification_changes_requested")
        assert waiting.waiting_on == "applicant"
        assert [d.purpose for d in waiting.deadlines] == ["reminder", "escalation", "lapse"]

        invalid = await handle.execute_update(
            "revise_specification",
            decision(contact, integration_method="dedicated_line",
                     specification=without_responses(better)),
            result_type=DecisionReceipt)
        assert not invalid.applied
        assert invalid.reason == (
            "the specification does not validate: "
            "specification.paths./bond-yields.get: 'responses' is a required property")
        # Submission refuses a document this large: so does a revision (history carries it).
        too_large = revised(better, "1.2.0")
        too_large["info"]["description"] = "x" * MAX_SPECIFICATION_BYTES
        large = await handle.execute_update(
            "revise_specification",
            decision(contact, integration_method="dedicated_line", specification=too_large),
            result_type=DecisionReceipt)
        assert not large.applied
        assert f"a specification may have at most {MAX_SPECIFICATION_BYTES}" in large.reason
        stranger = await handle.execute_update(
            "revise_specification",
            decision("someone@elsewhere.example.com", integration_method="dedicated_line",
                     specification=better),
            result_type=DecisionReceipt)
        assert not stranger.applied and "not a registered contact" in stranger.reason
        assert (await drive.status(handle)).step == "specification_changes_requested"

        await handle.signal("revise_specification",
                            decision(contact.upper(), integration_method="dedicated_line",
                                     specification=better))
        back = await drive.wait_for_step(handle, "pre_review")
        assert back.waiting_on == "platform_team"
        status = await to_sandbox(handle, application)

    assert [(d.decision, d.applied) for d in status.decisions] == [
        ("pre_review", True), ("revise_specification", False), ("revise_specification", False),
        ("revise_specification", False), ("revise_specification", True), ("pre_review", True),
        ("api_test_report", True), ("api_test_review", True)]
    row = await catalogue(pool, api_id)
    assert (row["stage"], row["spec_version"], row["integration_method"]) == \
        ("sandbox", "1.1.0", "dedicated_line")
    assert await versions(pool, api_id) == [("sandbox", "1.1.0", sha256(better))]
    assert await pool.fetchval(
        "SELECT specification FROM api_versions WHERE api_id = $1", api_id) == better
    changes = notices(inbox, app_id, f"changes/{status.decisions[0].decision_id}")
    assert len(changes) == 1 and envelope(changes[0]) == {contact} and note in body(changes[0])
    assert "1.1.0" in body(notices(inbox, app_id, "published/sandbox")[0])
    refused = [e for e in await audit(pool, app_id) if e["result"] == "refused"]
    assert [e["action"] for e in refused] == ["revise_specification"] * 3
    assert "'responses' is a required property" in refused[0]["reason"]


# --- 4: rejection ----------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["pre_review", "api_test_review"])
async def test_rejection_at_each_step(dev_server, run_worker, settings, pool, task_queue, inbox,
                                      step):
    client = dev_server.client
    application = new_publication(settings)
    app_id, contact, api_id = application.application_id, provider(application), \
        application.api.api_id
    note = f"Rejected at {step}: the API does not serve the capital market"
    async with run_worker(client):
        handle = await start(client, settings, task_queue, application)
        if step == "api_test_review":  # after one round of more testing
            await drive.signal_at(handle, "pre_review", "pre_review",
                                  decision(PLATFORM, verdict="approve"))
            await drive.signal_at(handle, "api_testing", "api_test_report",
                                  decision(contact, results="first run"))
            await drive.signal_at(handle, "api_test_review", "api_test_review",
                                  decision(PLATFORM, verdict="more_testing",
                                           note="Test the 404 case"))
            await drive.signal_at(handle, "api_testing", "api_test_report",
                                  decision(contact, results="second run"))
        await drive.signal_at(handle, step, step,
                              decision(PLATFORM, verdict="reject", note=note))
        status = await drive.result(handle)

    assert (status.outcome, status.step) == ("rejected", "rejected")
    assert all(d.applied for d in status.decisions)
    mail = notices(inbox, app_id, "rejected")
    assert len(mail) == 1 and envelope(mail[0]) == {contact}
    assert step in body(mail[0]) and note in body(mail[0])
    if step == "api_test_review":
        more = [m for m in inbox.messages if notice_id(m).startswith(f"{app_id}/more-testing/")]
        assert len(more) == 1 and "Test the 404 case" in body(more[0])
    assert await catalogue(pool, api_id) is None
    assert await versions(pool, api_id) == []
    assert [m for m in inbox.messages if notice_id(m).startswith(f"{app_id}/member-notice")] == []


# --- 5: withdrawal while a subscription depends on it ----------------------------------------


async def test_withdrawal_tells_the_open_subscriptions_that_requested_it(
    dev_server, run_worker, settings, pool, task_queue, inbox
):
    client = dev_server.client
    application = new_publication(settings)
    app_id, contact, api_id = application.application_id, provider(application), \
        application.api.api_id
    subscription = prepare_subscription(
        data.subscription_form(apis=[api_id, "account-balance"]), settings)
    sub_id = subscription.application_id
    async with run_worker(client):
        handle = await start(client, settings, task_queue, application)
        await to_sandbox(handle, application)
        await starter.check_record(pool, subscription)
        sub = await start(client, settings, task_queue, subscription)
        await drive_to(sub, subscription, "platform_contract", licence=True)

        await handle.signal("withdraw", decision(contact, note="The API is discontinued"))
        status = await drive.result(handle)
        sub_status = await drive.status_until(sub, lambda s: s.withdrawn_apis, "the API withdrawn")
        assert sub_status.withdrawn_apis == [api_id]
        assert (sub_status.step, sub_status.waiting_on, sub_status.outcome) == \
            ("platform_contract", "platform_team", "")
        assert [d.purpose for d in sub_status.deadlines] == ["reminder", "escalation"]
        # Still healthy: its people carry on.
        await sub.signal(*approval("platform_contract", subscription))
        await drive.wait_for_step(sub, "final_approval")

        again = prepare_subscription(data.subscription_form(apis=[api_id]), settings)
        with pytest.raises(SubmissionRefused) as refused:
            await starter.check_record(pool, again)

    assert (status.outcome, status.step) == ("withdrawn", "withdrawn")
    assert (await catalogue(pool, api_id))["stage"] == "withdrawn"
    mail = notices(inbox, app_id, "withdrawn")
    assert len(mail) == 1 and envelope(mail[0]) == {contact}
    actions = [(e["action"], e["details"]) for e in await audit(pool, app_id)]
    assert ("api_withdrawn_from_catalogue", {"api_id": api_id}) in actions
    assert ("api_withdrawal_told", {"subscription": sub_id}) in actions
    sub_log = [e for e in await audit(pool, sub_id) if e["action"] == "requested_api_withdrawn"]
    assert [(e["actor"], e["details"]) for e in sub_log] == [(app_id, {"api_id": api_id})]
    assert [(r.field, r.rule) for r in refused.value.refusals] == \
        [("requested_apis", "not_in_catalogue")]
    assert api_id in str(refused.value)


# --- 6: a launch that is not on the record ---------------------------------------------------


async def test_a_launch_not_on_the_record_is_refused(
    dev_server, run_worker, settings, pool, task_queue
):
    client = dev_server.client
    application = new_publication(settings)
    app_id, api_id = application.application_id, application.api.api_id
    testing = prepare_subscription(data.subscription_form(apis=[api_id]), settings)
    elsewhere = await subscription_on_record(pool, ["account-balance"])
    in_production = await subscription_on_record(pool, [api_id])
    async with run_worker(client):
        handle = await start(client, settings, task_queue, application)
        await to_sandbox(handle, application)
        sub = await start(client, settings, task_queue, testing)  # real, far from production
        await drive.wait_for_step(sub, "pre_verification")

        forged = {
            "never_existed": launched("subscription-0000000000-000000000000", api_id),
            "no_production_key": launched(testing.application_id, api_id),
            "not_this_api": launched(in_production, "account-balance"),
            "does_not_use_it": launched(elsewhere, api_id),
            "a_publication": launched(app_id, api_id),
        }
        for payload in forged.values():
            await handle.signal("service_launched", payload)
        await handle.signal("service_launched", {"decision_id": "x", "decided_by": "someone",
                                                 "subscription_application_id": in_production})
        refused = await decisions_recorded(handle, 3 + len(forged) + 1)

        assert (refused.step, refused.outcome) == (WAITING, "")
        assert (await catalogue(pool, api_id))["stage"] == "sandbox"
        assert [v[0] for v in await versions(pool, api_id)] == ["sandbox"]

        # The real one still applies.
        await handle.signal("service_launched", launched(in_production, api_id))
        status = await drive.result(handle)

    seen = by_id(refused)
    reasons = {name: seen[d["decision_id"]].reason for name, d in forged.items()}
    assert not any(seen[d["decision_id"]].applied for d in forged.values())
    assert reasons["never_existed"] == \
        "no subscription application subscription-0000000000-000000000000"
    assert reasons["no_production_key"] == f"{testing.application_id} has no production key"
    assert reasons["not_this_api"] == f"this application publishes {api_id}, not account-balance"
    assert reasons["does_not_use_it"] == f"{elsewhere} does not use {api_id}"
    assert reasons["a_publication"] == f"no subscription application {app_id}"
    malformed = refused.decisions[-1]
    assert not malformed.applied
    assert "api_id" in malformed.reason and "[missing]" in malformed.reason
    refused_log = [e for e in await audit(pool, app_id) if e["result"] == "refused"]
    assert [e["reason"] for e in refused_log] == [d.reason for d in refused.decisions[3:]]

    assert status.outcome == "in_production"
    assert status.decisions[-1].applied and status.decisions[-1].decided_by == in_production
    assert (await catalogue(pool, api_id))["stage"] == "production"


# --- 7: months in the sandbox, on the time-skipping server -----------------------------------


async def test_months_in_the_sandbox_without_reminders_then_production(
    time_skipping_server, run_worker, settings, pool, task_queue, inbox
):
    env = time_skipping_server
    client = env.client
    application = new_publication(settings)
    app_id, api_id = application.application_id, application.api.api_id
    async with run_worker(client):
        handle = await start(client, settings, task_queue, application)
        waiting = await to_sandbox(handle, application)
        assert waiting.deadlines == []

        await env.sleep(timedelta(days=200))
        await asyncio.sleep(1)
        still = await drive.status(handle)
        assert (still.step, still.waiting_on, still.deadlines, still.outcome) == \
            (WAITING, "platform_workflow", [], "")
        assert still.waiting_since == waiting.waiting_since
        assert await env.get_current_time() - still.waiting_since >= timedelta(days=200)
        assert [m for m in inbox.messages if notice_id(m).startswith(f"{app_id}/")
                and notice_id(m).rsplit("/", 1)[1] in ("reminder", "escalation", "manager")] == []
        assert notices(inbox, app_id, "lapsed") == []
        assert (await catalogue(pool, api_id))["stage"] == "sandbox"

        subscription_id = await subscription_on_record(pool, [api_id])
        await handle.signal("service_launched", launched(subscription_id, api_id))
        status = await drive.result(handle)

    assert (status.outcome, status.step) == ("in_production", "in_production")
    assert (await catalogue(pool, api_id))["stage"] == "production"
    actions = [e["action"] for e in await audit(pool, app_id)]
    assert not [a for a in actions if a.endswith("_due")]
    assert len(notices(inbox, app_id, "published/production")) == 1


# --- two providers, one API id ---------------------------------------------------------------


async def test_an_api_id_taken_meanwhile_ends_the_second_publication(
    dev_server, run_worker, settings, pool, task_queue, inbox
):
    """Both submissions pass check_record (neither is in the catalogue yet); the first in
    the sandbox keeps the id, the second is rejected with the reason instead of failing."""
    client = dev_server.client
    api_id = new_api_id()
    first, second = new_publication(settings, api_id), new_publication(settings, api_id)
    for application in (first, second):
        await starter.check_record(pool, application)
    async with run_worker(client):
        handles = [await start(client, settings, task_queue, a) for a in (first, second)]
        await to_sandbox(handles[0], first)
        await drive.signal_at(handles[1], "pre_review", "pre_review",
                              decision(PLATFORM, verdict="approve"))
        await drive.signal_at(handles[1], "api_testing", "api_test_report",
                              decision(provider(second), results="ok"))
        await drive.signal_at(handles[1], "api_test_review", "api_test_review",
                              decision(PLATFORM, verdict="approve"))
        status = await drive.result(handles[1])
        # Sent by the worker's relay once the refusal is committed: it comes when it comes.
        mail = await eventually(lambda: notices(inbox, second.application_id, "rejected"),
                                what="the rejection's notice")

    assert (status.outcome, status.step) == ("rejected", "rejected")
    row = await catalogue(pool, api_id)
    assert (row["stage"], row["publication_application_id"]) == ("sandbox", first.application_id)
    assert len(mail) == 1 and envelope(mail[0]) == {provider(second)}
    assert f"api_id {api_id} is already in the catalogue for another provider" in body(mail[0])
    assert notices(inbox, second.application_id, "member-notice/sandbox") == []
