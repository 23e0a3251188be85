"""The harness proven end to end: submission, a real worker, a decision, the record."""

from __future__ import annotations

from temporalio.client import WorkflowHandle

from onboarding.domain.admission import prepare_subscription
from starter import start_application
from tests.support import data, drive


async def test_a_rejected_application_ends_on_the_record(dev_server, run_worker, settings, pool,
                                                        task_queue, inbox):
    client = dev_server.client
    application = prepare_subscription(data.subscription_form(), settings)
    async with run_worker(client):
        handle: WorkflowHandle = await start_application(
            client, settings.model_copy(update={"temporal_task_queue": task_queue}), application
        )
        await drive.signal_at(
            handle, "pre_verification", "pre_verification",
            data.decision(data.REVIEWER, verdict="reject",
                              note="Not related to capital-market development"),
        )
        status = await drive.result(handle)

    assert status.outcome == "rejected"
    assert [d.applied for d in status.decisions] == [True]
    row = await pool.fetchrow("SELECT status, current_step FROM applications WHERE application_id = $1",
                              application.application_id)
    assert dict(row) == {"status": "rejected", "current_step": "rejected"}
    actions = [r["action"] for r in await pool.fetch(
        "SELECT action FROM audit_trail WHERE application_id = $1 ORDER BY seq",
        application.application_id)]
    # The workflow's record ends with the close; the relay's `notice_sent` may come after.
    assert "pre_verification" in actions
    assert [a for a in actions if a != "notice_sent"][-1] == "application_closed"
    contact = str(application.organisation.contact_emails[0])
    subjects = [m["Subject"] for m in inbox.to(contact)]
    assert any("rejected" in s for s in subjects), subjects
