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

from onboarding.domain.admission import prepare_publication, prepare_subscription
from starter import start_application
from tests.support import data, drive
from tests.support.data import publication_form, revised
from tests.support.servers import Stack
from worker import running

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


async def approve_to_production(handle, applicant: str) -> None:
    """Every step approved, in turn, from pre-verification (no market data) to production."""
    d = data.decision
    for step, name, payload in [
        ("pre_verification", "pre_verification",
         d(data.REVIEWER, verdict="approve", criteria=data.CRITERIA_HOLD)),
        ("platform_contract", "platform_contract",
         d(data.PLATFORM, verdict="signed", eligibility_confirmed=True,
           contract=data.contract())),
        ("final_approval", "final_approval", d(data.APPROVER, verdict="approve")),
        ("sandbox_testing", "sandbox_testing_complete", d(applicant)),
        ("sandbox_verification", "sandbox_verification", d(data.PLATFORM, verdict="approve")),
        ("production_switch", "production_switch",
         d(data.APPROVER, verdict="approve", service_contract=data.contract())),
    ]:
        await drive.signal_at(handle, step, name, payload)


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
