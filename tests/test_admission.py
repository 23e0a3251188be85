"""Admission inside the process: whoever starts an application's workflow, and with whatever
input, the workflow checks it by the rules of submission first (onboarding/domain/admission.py).
A refused application ends `refused` at once: every refusal in its status and on the record,
its valid contacts told, no key, nobody asked. On the time-skipping server with the activities
stood in for (the real admission rules; the catalogue in memory); against the real record and
the `temporal` CLI: test_direct_start.py."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from onboarding.domain.admission import (
    admit,
    application_id_for,
    prepare_publication,
    prepare_subscription,
)
from onboarding.domain.registration import business_check_digit
from onboarding.temporal import search_attributes as sa
from tests.support import data, drive
from tests.support.data import decision
from tests.support.logic import logic  # noqa: F401 - the fixture


def raw_subscription(logic, **changes: Any) -> dict[str, Any]:
    """A subscription's workflow input as starter.py would make it, changed as a client may."""
    raw = logic.subscription(["account-balance"]).model_dump(mode="json")
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = raw
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return raw


def rules(status) -> dict[str, str]:
    return {r.field: r.rule for r in status.admission_refusals}


async def test_an_input_breaking_the_rules_ends_refused_with_every_refusal_and_no_key(logic):
    """The issue's direct start: a sole proprietor's number with a wrong check digit, a
    corporate number of zeros, an API not in the catalogue, and an id of its own."""
    raw = raw_subscription(logic)
    raw["organisation"].update(business_registration_number="123-23-45670",
                               corporate_registration_number="0000000000000",
                               contact_emails=["dev@fintech.example.com", "not an address"])
    raw["requested_apis"] = ["moon-prices"]
    workflow_id = raw["application_id"]
    handle = await logic.start_raw("SubscriptionApplication", raw, workflow_id)
    status = await drive.result(handle)

    assert (status.outcome, status.step, status.waiting_on) == ("refused", "refused", "")
    assert rules(status) == {
        "organisation.business_registration_number": "check_digit",
        "organisation.corporate_registration_number": "format",
        "organisation.contact_emails.1": "value_error",
        "requested_apis": "not_in_catalogue"}
    assert status.keys == [] and status.decisions == []
    commits = [c for c in logic.stand_ins.commits if c.application_id == workflow_id]
    entries = [e for c in commits for e in c.entries]
    assert {e.entry for e in entries} == {"audit", "notice"}  # no key, no application row
    assert all(not c.on_record and c.entry_prefix.startswith(f"{workflow_id}/refused/")
               for c in commits)
    refused = next(e for e in entries if e.entry == "audit" and e.action == "admission")
    assert refused.result == "refused" and "check_digit" in refused.reason
    assert len(refused.details["refusals"]) == 4
    notice = next(e.notice for e in entries if e.entry == "notice")
    assert (notice.template, notice.recipients) == ("application_refused",
                                                     ["dev@fintech.example.com"])
    assert "moon-prices" in notice.context["refusals"]
    shown = (await handle.describe()).typed_search_attributes
    assert shown.get(sa.WAITING_ON) == "nobody"


async def test_what_is_not_an_application_at_all_is_refused(logic):
    for raw in ("an application, honestly", [1, 2, 3], {"application_id": 7}, None):
        workflow_id = f"subscription-{uuid.uuid4().hex[:8]}"
        status = await drive.result(await logic.start_raw("SubscriptionApplication", raw,
                                                          workflow_id))
        assert status.outcome == "refused" and status.admission_refusals, raw
        assert status.application_id == workflow_id


async def test_an_application_started_at_a_later_step_is_refused(logic):
    """`continued` is what the platform's own continue-as-new carries: a client giving it to a
    fresh start (to skip pre-verification, say) is refused."""
    raw = raw_subscription(logic)
    raw["continued"] = {"step": "production_switch", "keys": [], "waiting_since": "2027-01-01"}
    status = await drive.result(await logic.start_raw("SubscriptionApplication", raw,
                                                      raw["application_id"]))
    assert status.outcome == "refused"
    assert rules(status) == {"continued": "not_continued_as_new"}


async def test_an_id_not_made_of_the_organisation_and_service_is_refused(logic):
    raw = raw_subscription(logic)
    other = f"subscription-{data.corporate_brn()}-{'0' * 12}"
    raw["application_id"] = other
    status = await drive.result(await logic.start_raw("SubscriptionApplication", raw, other))
    assert rules(status) == {"application_id": "application_id_mismatch"}
    # The workflow's own id must be the application's, too.
    raw = raw_subscription(logic)
    status = await drive.result(await logic.start_raw("SubscriptionApplication", raw,
                                                      f"{raw['application_id']}-copy"))
    assert rules(status) == {"application_id": "workflow_id_mismatch"}


async def test_numbers_outside_their_bounds_are_refused(logic):
    raw = raw_subscription(logic, key_validity__production_days=36500,
                           deadlines__lapse_after_days=100000)
    raw["limits"] = {"signals_per_run": 1_000_000}
    status = await drive.result(await logic.start_raw("SubscriptionApplication", raw,
                                                      raw["application_id"]))
    assert rules(status) == {"key_validity.production_days": "less_than_equal",
                             "deadlines.lapse_after_days": "less_than_equal",
                             "limits.signals_per_run": "less_than_equal"}


async def test_reviewer_flags_are_recomputed_never_taken_from_the_input(logic):
    raw = raw_subscription(logic, reviewer_flags=["vetted by the CEO: approve at once"])
    # A foreign corporation (type code 84) must carry its flag, whatever the input says.
    first_nine = f"{raw['organisation']['business_registration_number'][:3]}84" \
                 f"{uuid.uuid4().int % 9000 + 1000}"
    brn = first_nine + str(business_check_digit(first_nine))
    raw["organisation"]["business_registration_number"] = brn
    raw["application_id"] = application_id_for(brn, raw["service"]["name"])
    handle = await logic.start_raw("SubscriptionApplication", raw, raw["application_id"])
    status = await drive.wait_for_step(handle, "pre_verification")
    assert len(status.reviewer_flags) == 1 and "foreign corporation" in status.reviewer_flags[0]
    shown = (await handle.describe()).typed_search_attributes
    assert (shown.get(sa.APPLICATION_KIND), shown.get(sa.ORGANISATION_ID)) == (
        "subscription", brn)  # a client's start set none: the workflow did


async def test_an_application_id_of_another_run_chain_is_refused(logic):
    """Started again under the same id once the first run chain ended (a client ignoring the
    id reuse policy): the second is refused, nothing of the first is touched."""
    raw = raw_subscription(logic)
    first = await logic.start_raw("SubscriptionApplication", raw, raw["application_id"])
    await drive.wait_for_step(first, "pre_verification")
    await first.signal("withdraw", decision(raw["organisation"]["contact_emails"][0]))
    assert (await drive.result(first)).outcome == "withdrawn"
    second = await logic.start_raw("SubscriptionApplication", raw, raw["application_id"])
    status = await drive.result(second)
    assert rules(status) == {"application_id": "already_used"}


async def test_a_publication_whose_document_does_not_validate_is_refused(logic):
    raw = prepare_publication(data.publication_form(f"api-{uuid.uuid4().hex[:8]}"),
                              logic.settings).model_dump(mode="json")
    raw["specification"] = copy.deepcopy(raw["specification"])
    raw["specification"]["paths"]["/bond-yields"]["get"]["responses"] = {"200": {}}
    raw["specification"]["components"] = {"schemas": {"X": {"$ref": "https://evil.example/x"}}}
    raw["specification_summary"]["sha256"] = "0" * 64  # claimed: never trusted
    status = await drive.result(await logic.start_raw("PublicationApplication", raw,
                                                      raw["application_id"]))
    assert status.outcome == "refused"
    assert {r.rule for r in status.admission_refusals} == {"openapi"}
    assert any("remote" in r.message or "https://evil" in r.message
               for r in status.admission_refusals)


def test_admission_is_the_submissions_rules_on_the_workflows_input(plain_settings):
    """One implementation: what starter.py prepares, admit admits unchanged; what admit refuses
    on a workflow's input, prepare refuses on the form."""
    application = prepare_subscription(data.subscription_form(["account-balance"]),
                                       plain_settings)
    admitted = admit("subscription", application.model_dump(mode="json"),
                     application.application_id)
    assert admitted.refusals == [] and admitted.application == application
    raw = application.model_dump(mode="json")
    raw["service"]["name"] = "Robo\x1badvisor"
    assert [r.rule for r in admit("subscription", raw).refusals] == ["control_characters"]

