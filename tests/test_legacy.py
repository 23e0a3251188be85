"""Applications started by stop 8 go on after v2 is deployed: a stop-8 worker takes one to
sandbox testing, then today's worker runs it through the v2 class's gate (workflows/legacy/),
refusing the decisions people send it since decisions are sealed. Also: stop 8's activity
names are all registered, with stop 8's shapes. The replay of stop 8's saved histories is
tests/test_replay.py."""

from __future__ import annotations

import asyncio
import json
import typing
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Replayer, Worker

import starter
from activities import platform_activities
from activities.interceptors import AuditActivityFailures, Heartbeats
from onboarding.domain import models
from onboarding.mail.relay import Relay
from onboarding.temporal.codec import for_worker
from tests.support import data, drive
from tests.support.drive import approval
from tests.support.eventually import eventually
from tests.support.sealing import unsealed
from tests.support.stand_ins import activity_name
from workflows.legacy import UNSEALED
from workflows.legacy import models as stop8
from workflows.legacy.publication import PublicationWorkflow as Stop8Publication
from workflows.legacy.subscription import SubscriptionWorkflow as Stop8Subscription
from worker import WORKFLOW_RUNNER, WORKFLOWS, running

# Stop 8's activities and the input each takes (onboarding/domain/models.py of e1bc065).
STOP8_ACTIVITIES = {
    "look_up_catalogue": models.CatalogueLookup, "look_up_staff_roles": stop8.StaffLookup,
    "record_application": stop8.ApplicationRecord, "record_publication": stop8.PublicationRecord,
    "record_progress": stop8.ProgressRecord, "check_specification": models.SpecificationCheck,
    "publish_api": stop8.ApiPublication, "withdraw_api": stop8.ApiWithdrawal,
    "check_service_launch": models.LaunchCheck, "find_market_data_licence": models.LicenceLookup,
    "record_contract": stop8.ContractRecord, "issue_api_key": stop8.KeyIssuance,
    "revoke_api_keys": stop8.KeyRevocation, "send_notice": models.Notice,
}


def test_stop_8s_activities_are_all_registered_with_their_shapes(pool, settings):
    registered = {activity_name(fn): fn for fn in platform_activities(pool, settings)}
    for name, takes in STOP8_ACTIVITIES.items():
        hints = typing.get_type_hints(registered[name])
        assert list(hints.values())[0] is takes, name


def stop8_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """A decision as stop 8's clients sent it."""
    return {("outcome" if k == "verdict" else k): v for k, v in payload.items()}


async def test_an_application_started_by_stop_8_takes_no_persons_decision_once_sealed(
        dev_server, settings, pool, task_queue):
    """Stop 8's code trusts a typed `decided_by` and cannot check a seal: once decisions are
    sealed, such an application refuses every person's decision on its own record, typed or
    sealed (docs/identity.md), until it moves to v2. What it did before is untouched: its
    history replays, its sandbox key stays as it was."""
    application = data.new_application(settings, ["account-balance"])
    app_id, contact = application.application_id, data.applicant(application)
    ours = settings.model_copy(update={"temporal_task_queue": task_queue})
    # Stop 8's clients sent decisions as typed.
    typed = unsealed(dev_server.client)
    client = Client(**{**typed.config(), "data_converter": for_worker(typed.data_converter)})

    # Stop 8's worker: its workflow classes, its activities (by their names).
    stop = asyncio.Event()
    relay = asyncio.create_task(Relay(pool, ours).run(stop))
    async with Worker(client, task_queue=task_queue,
                      workflows=[Stop8Subscription, Stop8Publication],
                      activities=platform_activities(pool, ours),
                      interceptors=[AuditActivityFailures(pool), Heartbeats()],
                      workflow_runner=WORKFLOW_RUNNER):
        handle = await starter.start_application(dev_server.client, ours, application)
        for step in ("pre_verification", "platform_contract", "final_approval"):
            await stop8_step(handle, step)
            name, payload = approval(step, application)
            await typed.get_workflow_handle(app_id).signal(name, stop8_payload(payload))
        await stop8_step(handle, "sandbox_testing")
    stop.set()
    await relay

    # Today's worker on the same task queue.
    async with running(dev_server.client, ours, pool):
        status = await drive.wait_for_step(handle, "sandbox_testing")
        assert (status.process, status.takes) == ("subscription", ["sandbox_testing_complete"])
        await typed.get_workflow_handle(app_id).signal(
            "sandbox_testing_complete", stop8_payload(data.decision(contact)))
        await handle.signal("sandbox_testing_complete", data.decision(contact))  # sealed
        receipt = await handle.execute_update("withdraw", data.decision(contact),
                                              result_type=models.DecisionReceipt)
        status = await drive.decisions_recorded(handle, 6)
        history = await handle.fetch_history()

    assert [d.applied for d in status.decisions[:3]] == [True] * 3
    refused = status.decisions[3:]
    assert [(d.decision, d.applied, d.decided_by) for d in refused] == [
        ("sandbox_testing_complete", False, f"{contact} (not verified)"),
        ("sandbox_testing_complete", False, f"{contact} (not verified)"),
        ("withdraw", False, f"{contact} (not verified)")]
    assert {d.reason for d in refused} == {UNSEALED} and not receipt.applied
    assert status.step == "sandbox_testing" and status.outcome == ""
    keys = await pool.fetch(
        "SELECT environment, status FROM api_keys WHERE application_id = $1", app_id)
    assert [(k["environment"], k["status"]) for k in keys] == [("sandbox", "active")]
    patches = [e.marker_recorded_event_attributes for e in history.events
               if e.marker_recorded_event_attributes.marker_name == "core_patch"]
    # One patch per decision refused; the count includes the three stop 8 applied (replayed:
    # no marker, so they still apply).
    assert [json.loads(p.details["patch-data"].payloads[0].data)["id"] for p in patches] == [
        f"legacy-unsealed-refused/{n}" for n in (4, 5, 6)]
    await Replayer(workflows=WORKFLOWS, workflow_runner=WORKFLOW_RUNNER,
                   data_converter=dev_server.client.data_converter).replay_workflow(history)


async def stop8_step(handle: WorkflowHandle, step: str) -> None:
    """Until stop 8's status (its own shape) shows the application waiting at `step`."""

    async def there() -> bool:
        shown = await handle.query("status", result_type=stop8.ApplicationStatus)
        assert shown.step == step and shown.takes, f"last status: {shown}"
        return True

    await eventually(there, what=f"stop 8 at {step}")
