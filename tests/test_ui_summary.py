"""What the Temporal UI shows on an application's page: its current-details summary.

The UI (and `temporal workflow describe`) reads it through the SDK's built-in metadata query;
these tests read it the same way and check it follows the application step by step.
"""

from __future__ import annotations

from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle

from tests.support import drive
from tests.support.data import APPROVER, applicant, decision, new_application
from tests.support.drive import drive_to, start
from tests.support.eventually import eventually


async def current_details(handle: WorkflowHandle) -> str:
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


async def details_once(handle: WorkflowHandle, contains: str) -> str:
    """The summary, once it mentions `contains` (it is refreshed as the record is written)."""

    async def mentioning() -> str:
        text = await current_details(handle)
        assert contains in text, f"the summary: {text}"
        return text

    return await eventually(mentioning, what=f"the summary mentioning {contains!r}",
                            interval=0.05)


async def test_summary_names_the_step_whom_it_waits_on_and_the_next_deadline(
    dev_server, settings, task_queue, run_worker
):
    application = new_application(settings)
    async with run_worker(dev_server.client):
        handle = await start(dev_server.client, settings, task_queue, application)
        await drive.wait_for_step(handle, "pre_verification")
        text = await details_once(handle, "pre verification")

    assert application.organisation.legal_name in text
    assert application.organisation.business_registration_number in text
    assert "Step: **pre verification**, waiting on pre verification reviewer" in text
    assert "Next deadline: reminder on" in text


async def test_summary_shows_the_last_decision_refused_or_applied_and_the_keys(
    dev_server, settings, task_queue, run_worker
):
    application = new_application(settings)
    async with run_worker(dev_server.client):
        handle = await start(dev_server.client, settings, task_queue, application)
        await drive_to(handle, application, "final_approval")
        # The applicant may not approve: refused, and the summary says so and why.
        await handle.signal("final_approval", decision(applicant(application), verdict="approve"))
        refused = await details_once(handle, "(refused:")
        assert f"Last decision: final_approval by {applicant(application)} (refused:" in refused

        await handle.signal("final_approval", decision(APPROVER, verdict="approve"))
        await drive.wait_for_step(handle, "sandbox_testing")
        text = await details_once(handle, "Sandbox key")
        (sandbox,) = (await drive.status(handle)).keys

    assert f"Last decision: final_approval by {APPROVER} (applied)" in text
    assert f"Sandbox key {sandbox.display_prefix}…, active" in text
    assert "Step: **sandbox testing**, waiting on applicant" in text


async def test_summary_and_status_say_which_decision_the_step_takes(
    dev_server, settings, task_queue, run_worker
):
    application = new_application(settings)
    async with run_worker(dev_server.client):
        handle = await start(dev_server.client, settings, task_queue, application)
        status = await drive.wait_for_step(handle, "pre_verification")
        text = await details_once(handle, "Takes the decision")
        assert status.takes == ["pre_verification"]
        assert "Takes the decision `pre_verification`" in text

        await handle.signal("withdraw", decision(applicant(application), note="changed plans"))
        ended = await drive.result(handle)
    assert ended.outcome == "withdrawn" and ended.takes == []
