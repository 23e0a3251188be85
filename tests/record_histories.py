"""Save histories of the workflows as they are today, for the replay tests.

    .venv/bin/python -m tests.record_histories

Run it when a workflow change is released (never to make a failing replay pass: a replay
failure means the change would break applications already running; patch the workflow with
`workflow.patched` instead). Each scenario below leaves its histories in tests/histories/; a
history already saved is kept as it is (it stands for the version that recorded it), so only
new scenarios are run.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path

from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

from temporalio.worker import Worker

from activities import platform_activities
from onboarding.core.db import create_pool
from onboarding.domain.admission import prepare_publication, prepare_subscription
from onboarding.domain.live_service import live_service_id
from onboarding.domain.models import ProcessLimits
from starter import start_application
from tests.support import data, drive
from tests.support.data import publication_form, revised
from tests.support.servers import Stack
from worker import WORKFLOW_RUNNER, running
from workflows.legacy.publication import PublicationWorkflow as Stop8Publication
from workflows.legacy.subscription import SubscriptionWorkflow as Stop8Subscription

HERE = Path(__file__).parent / "histories"


async def production_with_market_data(handle, form) -> None:
    applicant = form["organisation"]["contact_emails"][0]
    d = data.decision
    await drive.signal_at(handle, "pre_verification", "pre_verification",
                          d(data.REVIEWER, verdict="request_changes", note="name the data used"))
    await drive.signal_at(handle, "changes_requested", "resubmit",
                          d(applicant, service=form["service"], requested_apis=form["requested_apis"]))
    await drive.signal_at(handle, "pre_verification", "pre_verification",
                          d(data.REVIEWER, verdict="approve", criteria=data.CRITERIA_HOLD))
    await drive.signal_at(handle, "market_data_licence", "market_data_licence",
                          d(data.SALES, verdict="concluded", contract=data.contract()))
    await handle.signal("final_approval", d(data.APPROVER, verdict="approve"))  # wrong step
    await drive.signal_at(handle, "platform_contract", "platform_contract",
                          d(data.PLATFORM, verdict="signed", eligibility_confirmed=True,
                            contract=data.contract()))
    await drive.signal_at(handle, "final_approval", "final_approval",
                          d(data.APPROVER, verdict="approve"))
    await drive.signal_at(handle, "sandbox_testing", "sandbox_testing_complete", d(applicant))
    await drive.signal_at(handle, "sandbox_verification", "sandbox_verification",
                          d(data.PLATFORM, verdict="more_testing", note="test order errors"))
    await drive.signal_at(handle, "sandbox_testing", "sandbox_testing_complete", d(applicant))
    await drive.signal_at(handle, "sandbox_verification", "sandbox_verification",
                          d(data.PLATFORM, verdict="approve"))
    await drive.signal_at(handle, "production_switch", "production_switch",
                          d(data.APPROVER, verdict="approve",
                            service_contract=data.contract()))


async def withdrawn_after_sandbox_key(handle, form) -> None:
    applicant = form["organisation"]["contact_emails"][0]
    d = data.decision
    await drive.signal_at(handle, "pre_verification", "pre_verification",
                          d(data.REVIEWER, verdict="approve", criteria=data.CRITERIA_HOLD))
    await drive.signal_at(handle, "platform_contract", "platform_contract",
                          d(data.PLATFORM, verdict="signed", eligibility_confirmed=True,
                            contract=data.contract()))
    await drive.signal_at(handle, "final_approval", "final_approval",
                          d(data.SALES, verdict="approve"))  # not entitled
    await handle.signal("final_approval", d(data.APPROVER, verdict="approve"))
    await drive.signal_at(handle, "sandbox_testing", "withdraw", d(applicant, note="project stopped"))


def approvals(applicant: str, licence: bool = False) -> list[tuple[str, str, dict]]:
    """Every step approved, in turn, from pre-verification to production (the market-data
    licence concluded when `licence`; else no market data, or a licence on file): each step,
    the decision taken there and its payload."""
    d = data.decision
    return [
        ("pre_verification", "pre_verification",
         d(data.REVIEWER, verdict="approve", criteria=data.CRITERIA_HOLD)),
        *([("market_data_licence", "market_data_licence",
            d(data.SALES, verdict="concluded", contract=data.contract()))] if licence else []),
        ("platform_contract", "platform_contract",
         d(data.PLATFORM, verdict="signed", eligibility_confirmed=True,
           contract=data.contract())),
        ("final_approval", "final_approval", d(data.APPROVER, verdict="approve")),
        ("sandbox_testing", "sandbox_testing_complete", d(applicant)),
        ("sandbox_verification", "sandbox_verification", d(data.PLATFORM, verdict="approve")),
        ("production_switch", "production_switch",
         d(data.APPROVER, verdict="approve", service_contract=data.contract())),
    ]


async def approve(handle, steps: list[tuple[str, str, dict]]) -> None:
    for step, name, payload in steps:
        await drive.signal_at(handle, step, name, payload)


async def approve_to_production(handle, applicant: str, licence: bool = False) -> None:
    await approve(handle, approvals(applicant, licence))


async def taken_back_then_production(handle, form) -> None:
    """Since `verification-in-commit`: a final approval by someone without the role, applied
    before its verification and taken back by the commit that verified it; then the same step
    approved, and on to production."""
    steps = approvals(form["organisation"]["contact_emails"][0])
    at = [step for step, _, _ in steps].index("final_approval")
    await approve(handle, steps[:at])
    not_entitled = data.decision(data.SALES, verdict="approve")
    await drive.signal_at(handle, "final_approval", "final_approval", not_entitled)
    await drive.status_until(handle, lambda s: any(
        r.decision_id == not_entitled["decision_id"] and not r.applied for r in s.decisions),
        "the final approval taken back")
    await approve(handle, steps[at:])


async def misspelt_signal_then_production(handle, form) -> None:
    """A reviewer misspells a signal's name: refused on the record."""
    applicant = form["organisation"]["contact_emails"][0]
    d = data.decision
    await drive.wait_for_step(handle, "pre_verification")
    await handle.signal("pre_verificaton", d(data.REVIEWER, verdict="approve",
                                             criteria=data.CRITERIA_HOLD))
    await approve_to_production(handle, applicant)


def subscription(apis: list[str], drive_it):
    async def scenario(client, settings, name: str) -> dict[str, WorkflowHandle]:
        form = data.subscription_form(apis=apis)
        handle = await start_application(client, settings, prepare_subscription(form, settings))
        await drive_it(handle, form)
        await drive.result(handle)
        return {name: handle}

    return scenario


async def publication_to_production(client, settings, name: str) -> dict[str, WorkflowHandle]:
    """A provider's API: a revision, more testing, the sandbox; then a real subscription
    reaches production and tells the publication, which goes to production too."""
    api_id = f"api-{uuid.uuid4().hex[:8]}"
    form = publication_form(api_id, is_market_data=False)
    provider = form["organisation"]["contact_emails"][0]
    d = data.decision
    handle = await start_application(client, settings, prepare_publication(form, settings))
    await drive.signal_at(handle, "pre_review", "pre_review",
                          d(data.PLATFORM, verdict="request_changes", note="add a 400"))
    await drive.signal_at(handle, "specification_changes_requested", "revise_specification",
                          d(provider, integration_method="vpn",
                            specification=revised(form["specification"], "1.1.0")))
    await drive.signal_at(handle, "pre_review", "pre_review",
                          d(data.PLATFORM, verdict="approve"))
    await drive.signal_at(handle, "api_testing", "api_test_report", d(provider, results="ok"))
    await drive.signal_at(handle, "api_test_review", "api_test_review",
                          d(data.PLATFORM, verdict="more_testing", note="test the 404"))
    await drive.signal_at(handle, "api_testing", "api_test_report", d(provider, results="ok"))
    await drive.signal_at(handle, "api_test_review", "api_test_review",
                          d(data.PLATFORM, verdict="approve"))
    await drive.wait_for_step(handle, "in_sandbox_waiting_for_service")
    await handle.signal("service_launched",  # forged: refused on the record
                        d("someone", subscription_application_id="subscription-x", api_id=api_id))

    sub_form = data.subscription_form(apis=[api_id])
    sub = await start_application(client, settings, prepare_subscription(sub_form, settings))
    applicant = sub_form["organisation"]["contact_emails"][0]
    await approve_to_production(sub, applicant)
    await drive.result(sub)
    status = await drive.result(handle)
    assert status.outcome == "in_production", status
    return {name: handle, "v2_subscription_production_telling_a_publication": sub}


async def refused_at_admission(client, settings, name: str) -> dict[str, WorkflowHandle]:
    """Started without starter.py: a sole proprietor's number, an API not in the catalogue."""
    raw = prepare_subscription(data.subscription_form(["account-balance"]),
                               settings).model_dump(mode="json")
    raw["organisation"]["business_registration_number"] = "123-23-45670"
    raw["requested_apis"] = ["api-that-does-not-exist"]
    handle = await client.start_workflow("SubscriptionApplication", raw,
                                         id=raw["application_id"],
                                         task_queue=settings.temporal_task_queue)
    await handle.result()
    return {name: handle}


async def continued_as_new(client, settings, name: str) -> dict[str, WorkflowHandle]:
    """At a ceiling of ten signals a run, refusals at final approval pass it: the run
    continues as new there; a repeat and four eyes in the next; then production."""
    form = data.subscription_form(apis=["account-balance"])
    application = prepare_subscription(form, settings).model_copy(
        update={"limits": ProcessLimits(signals_per_run=10)})
    applicant = form["organisation"]["contact_emails"][0]
    d = data.decision
    handle = await start_application(client, settings, application)
    await drive.signal_at(handle, "pre_verification", "pre_verification",
                          d(data.REVIEWER_AND_APPROVER, verdict="approve",
                            criteria=data.CRITERIA_HOLD))
    await drive.signal_at(handle, "platform_contract", "platform_contract",
                          d(data.PLATFORM, verdict="signed", eligibility_confirmed=True,
                            contract=data.contract()))
    await drive.wait_for_step(handle, "final_approval")
    refused = d(data.SALES, verdict="approve")
    for _ in range(11):
        await handle.signal("final_approval", refused)
    await drive.status_until(handle, lambda s: s.run == 2 and s.takes, "continued as new")
    await handle.signal("final_approval", refused)  # a repeat, across the runs
    await handle.signal("final_approval", d(data.REVIEWER_AND_APPROVER, verdict="approve"))
    await handle.signal("final_approval", d(data.APPROVER, verdict="approve"))
    for step, name_, payload in [
        ("sandbox_testing", "sandbox_testing_complete", d(applicant)),
        ("sandbox_verification", "sandbox_verification", d(data.PLATFORM, verdict="approve")),
        ("production_switch", "production_switch",
         d(data.APPROVER, verdict="approve", service_contract=data.contract())),
    ]:
        await drive.signal_at(handle, step, name_, payload)
    await drive.result(handle)
    return {name: client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id),
            "v2_subscription_continued_as_new_last_run": handle}


async def moved_from_stop_8(client, settings, name: str) -> dict[str, WorkflowHandle]:
    """Stop 8's worker takes a subscription to sandbox testing; today's, the next decision
    moves it to v2, which continues as new and reaches production."""
    from tests.test_legacy import stop8_payload, stop8_step

    queue = f"record-stop8-{uuid.uuid4().hex[:8]}"
    ours = settings.model_copy(update={"temporal_task_queue": queue})
    form = data.subscription_form(apis=["account-balance"])
    application = prepare_subscription(form, settings)
    pool = await create_pool(settings)
    try:
        async with Worker(client, task_queue=queue, workflows=[Stop8Subscription, Stop8Publication],
                          activities=platform_activities(pool, ours),
                          workflow_runner=WORKFLOW_RUNNER):
            handle = await start_application(client, ours, application)
            for step in ("pre_verification", "platform_contract", "final_approval"):
                await stop8_step(handle, step)
                signal, payload = drive.approval(step, application)
                await handle.signal(signal, stop8_payload(payload))
            await stop8_step(handle, "sandbox_testing")
        async with running(client, ours, pool):
            for step in ("sandbox_testing", "sandbox_verification", "production_switch"):
                await drive.signal_at(handle, step, *drive.approval(step, application))
            await drive.result(handle)
    finally:
        await pool.close()
    return {name: client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id),
            "v2_moved_from_stop8_subscription_v2_run": handle}


async def live_service(client, settings, name: str) -> dict[str, WorkflowHandle]:
    """A subscription reaching production hands over to its live service, which renews a
    key, rotates one at once, is suspended and reinstated, records a renewed contract, changes
    its APIs and is terminated."""
    form = data.subscription_form(apis=["account-balance"])
    application = prepare_subscription(form, settings)
    handle = await start_application(client, settings, application)
    contact = form["organisation"]["contact_emails"][0]
    await approve_to_production(handle, contact)
    await drive.result(handle)
    live = client.get_workflow_handle(live_service_id(application.application_id))
    d = data.decision

    async def decided(decision_name: str, payload: dict) -> None:
        await live.signal(decision_name, payload)
        await drive.status_until(live, lambda s: any(
            r.decision_id == payload["decision_id"] for r in s.decisions), decision_name)

    await drive.status_until(live, lambda s: s.takes, "the live service watching")
    await decided("renew_key", d(contact, environment="production"))
    await decided("renew_key", d(contact, environment="sandbox", immediate=True,
                                 note="leaked"))
    await decided("suspend", d(data.PLATFORM, note="incident"))
    await decided("reinstate", d(data.APPROVER))
    await decided("service_contract_renewed", d(data.APPROVER, contract=data.contract()))
    await decided("change_apis", d(contact, add=["index-values"]))
    await decided("change_review", d(data.PLATFORM, verdict="approve"))
    await decided("change_approval", d(data.APPROVER, verdict="reject", note="not now"))
    await decided("terminate", d(contact, note="closing"))
    await drive.result(live)
    return {"v2_subscription_production_handing_over_to_its_live_service": handle, name: live}


async def licence_renewal_told(client, settings, name: str) -> dict[str, WorkflowHandle]:
    """Two live services of one organisation using market data: the licence renewed through
    the first is told to the second, which adopts it from the record; both are terminated
    (the application's row on record as terminated)."""
    d = data.decision
    first_form = data.subscription_form(apis=["stock-quotes", "account-balance"])
    org = first_form["organisation"]
    second_form = data.subscription_form(apis=["stock-quotes"], **org)
    contact = org["contact_emails"][0]
    first_app = prepare_subscription(first_form, settings)
    first = await start_application(client, settings, first_app)
    await approve_to_production(first, contact, licence=True)
    await drive.result(first)
    second_app = prepare_subscription(second_form, settings)
    second = await start_application(client, settings, second_app)
    await approve_to_production(second, contact)  # the licence on file: no licence step
    await drive.result(second)
    lives = [client.get_workflow_handle(live_service_id(a.application_id))
             for a in (first_app, second_app)]
    for live in lives:
        await drive.status_until(live, lambda s: s.takes, "the live service watching")
    renewal = {**data.contract(), "valid_until": "2030-11-30"}
    await lives[0].signal("market_data_licence_renewed", d(data.SALES, contract=renewal))
    await drive.status_until(lives[1], lambda s: any(
        c.contract_number == renewal["contract_number"] for c in s.live.contracts),
        "the second told")
    for live in lives:
        await live.signal("terminate", d(contact, note="closing"))
        await drive.result(live)
    return {name: lives[0], "v2_live_service_hearing_a_licence_renewal_then_terminated": lives[1]}


async def api_retired_before_seals(client, settings, name: str) -> dict[str, WorkflowHandle]:
    """An API retired by a typed contact of its provider, as the retirement was started before
    its start was sealed (recorded with that code): runs started then must replay."""
    from datetime import date

    from onboarding.temporal.retirement import retire

    handle = await retire(client, settings, "index-values", date.today(),
                          data.MARKET_DATA_PROVIDER, "replaced")
    await drive.result(handle)
    return {name: handle}


async def api_retired_sealed(client, settings, name: str) -> dict[str, WorkflowHandle]:
    """An API retired by its provider's contact, the start a decision sealed for them (the
    `api-retirement-sealed` patch), after one sealed for someone else was refused."""
    from datetime import date

    from temporalio.client import WorkflowFailureError

    from onboarding.temporal.retirement import retire

    try:
        await drive.result(await retire(client, settings, "index-values", date.today(),
                                        data.PLATFORM))
    except WorkflowFailureError:
        pass  # refused on the record: not a contact of the provider
    handle = await retire(client, settings, "index-values", date.today(),
                          data.MARKET_DATA_PROVIDER, "replaced")
    await drive.result(handle)
    return {name: handle}


async def live_service_hearing_a_retirement(client, settings,
                                            name: str) -> dict[str, WorkflowHandle]:
    """A live service told of its API's retirement checks it against the record (the
    `live-service-retirement-on-record` patch): a forged announcement refused, the provider's
    taken; the API leaves its keys' scopes; terminated."""
    from datetime import date

    from onboarding.temporal.retirement import retire

    d = data.decision
    form = data.subscription_form(apis=["index-values", "account-balance"])
    application = prepare_subscription(form, settings)
    handle = await start_application(client, settings, application)
    contact = form["organisation"]["contact_emails"][0]
    await approve_to_production(handle, contact, licence=True)
    await drive.result(handle)
    live = client.get_workflow_handle(live_service_id(application.application_id))
    await drive.status_until(live, lambda s: s.takes, "the live service watching")
    today = date.today().isoformat()
    await live.signal("api_retired", d("api-retirement-index-values", api_id="index-values",
                                       retired_on=today))
    await drive.status_until(live, lambda s: s.decisions, "the forged one refused")
    retirement = await retire(client, settings, "index-values", date.today(),
                              data.MARKET_DATA_PROVIDER, "replaced")
    await drive.result(retirement)
    await drive.status_until(live, lambda s: s.live.apis == ["account-balance"],
                             "the API out of the keys' scopes")
    await live.signal("terminate", d(contact, note="closing"))
    await drive.result(live)
    return {name: live}


# History name -> the scenario that leaves it (and possibly others, named in its result).
# v2's, named so; those without a prefix were saved by stop 8 (tests/histories/README.md).
SCENARIOS = {
    "v2_subscription_production_with_market_data": subscription(
        ["stock-quotes", "account-balance"], production_with_market_data),
    "v2_subscription_withdrawn_after_sandbox_key": subscription(
        ["account-balance"], withdrawn_after_sandbox_key),
    "v2_publication_production_via_subscription": publication_to_production,
    "v2_subscription_misspelt_signal_then_production": subscription(
        ["account-balance"], misspelt_signal_then_production),
    # Phase B2 (issue 11): admission, continue-as-new, stop 8's applications moving to v2.
    "v2_subscription_refused_at_admission": refused_at_admission,
    "v2_subscription_continued_as_new_first_run": continued_as_new,
    "v2_moved_from_stop8_subscription_moved_run": moved_from_stop_8,
    # Phase D (issue 13): the live service after production.
    "v2_live_service_renewed_suspended_changed_terminated": live_service,
    # Issue 14: decisions verified by the commit that follows them, one taken back.
    "v2_subscription_verified_in_commit_taken_back_then_production": subscription(
        ["account-balance"], taken_back_then_production),
    # Phase F: a licence renewal told to the organisation's other live services, and the
    # application's row on record as terminated.
    "v2_live_service_telling_a_licence_renewal_then_terminated": licence_renewal_told,
    "v2_api_retirement_before_seals": api_retired_before_seals,
    "v2_api_retirement_sealed": api_retired_sealed,
    "v2_live_service_hearing_a_retirement_checked_on_record": live_service_hearing_a_retirement,
    # Stop 18: one version marker for every change since v2 (workflows/versions.py), commits
    # made in their workflow task (local activities).
    "v2_stop18_subscription_production_with_market_data": subscription(
        ["stock-quotes", "account-balance"], production_with_market_data),
    "v2_stop18_subscription_verified_in_commit_taken_back_then_production": subscription(
        ["account-balance"], taken_back_then_production),
    "v2_stop18_publication_production_via_subscription": publication_to_production,
    "v2_stop18_live_service_renewed_suspended_changed_terminated": live_service,
    # Stop 19: the marker `stop-19`; deadlines waiting on one timer kept from step to step.
    "v2_stop19_subscription_production_with_market_data": subscription(
        ["stock-quotes", "account-balance"], production_with_market_data),
    "v2_stop19_subscription_withdrawn_after_sandbox_key": subscription(
        ["account-balance"], withdrawn_after_sandbox_key),
    "v2_stop19_publication_production_via_subscription": publication_to_production,
    "v2_stop19_live_service_renewed_suspended_changed_terminated": live_service,
}


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # Payloads in the clear, as the saved histories have them.
        stack = await Stack.start(Path(tmp), "record", converter=pydantic_data_converter,
                                  temporal_task_queue=f"record-{uuid.uuid4().hex[:8]}")
        try:
            client, settings = stack.client, stack.settings
            async with running(client, settings, stack.pool):
                for name, scenario in SCENARIOS.items():
                    if (HERE / f"{name}.json").exists():
                        print(f"kept {name}: already saved")
                        continue
                    for saved, handle in (await scenario(client, settings, name)).items():
                        path = HERE / f"{saved}.json"
                        if path.exists():
                            print(f"kept {saved}: already saved")
                            continue
                        history = await handle.fetch_history()
                        path.write_text(history.to_json())
                        print(f"saved {saved}: {len(history.events)} events")
        finally:
            await stack.stop()


if __name__ == "__main__":
    asyncio.run(main())
