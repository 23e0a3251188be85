"""Applications started by stop 8 go on after v2 is deployed: a stop-8 worker takes one to
sandbox testing, then today's worker finishes it, through the v2 class's gate
(workflows/legacy/). Also: stop 8's activity names are all registered, with stop 8's shapes.
The replay of stop 8's saved histories is tests/test_replay.py."""

from __future__ import annotations

import asyncio
import typing
from collections import Counter
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

import starter
from activities import platform_activities
from activities.interceptors import AuditActivityFailures, Heartbeats
from onboarding.domain import models
from onboarding.mail.relay import Relay
from onboarding.temporal.codec import for_worker
from tests.support import data, drive
from tests.support.drive import approval
from tests.support.eventually import eventually
from tests.support.stand_ins import activity_name
from workflows.legacy import models as stop8
from workflows.legacy.publication import PublicationWorkflow as Stop8Publication
from workflows.legacy.subscription import SubscriptionWorkflow as Stop8Subscription
from worker import WORKFLOW_RUNNER, running

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


async def test_an_application_started_by_stop_8_is_finished_by_todays_worker(
        dev_server, settings, pool, task_queue, inbox):
    application = data.new_application(settings, ["account-balance"])
    app_id = application.application_id
    ours = settings.model_copy(update={"temporal_task_queue": task_queue})
    client = Client(**{**dev_server.client.config(),
                       "data_converter": for_worker(dev_server.client.data_converter)})

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
            await handle.signal(name, stop8_payload(payload))
        await stop8_step(handle, "sandbox_testing")
    stop.set()
    await relay
    keys = await pool.fetch("SELECT environment FROM api_keys WHERE application_id = $1", app_id)
    assert [k["environment"] for k in keys] == ["sandbox"]

    # Today's worker on the same task queue: the v2 class runs it as stop 8 did.
    async with running(dev_server.client, ours, pool):
        status = await drive.wait_for_step(handle, "sandbox_testing")
        assert (status.process, status.takes) == ("subscription", ["sandbox_testing_complete"])
        await drive.drive_to(handle, application, "production_switch")  # v2's payloads
        await handle.signal(*approval("production_switch", application))
        final = await drive.result(handle)

    assert final.outcome == "in_production"
    assert [d.applied for d in final.decisions] == [True] * 6
    keys = await pool.fetch(
        "SELECT environment, status FROM api_keys WHERE application_id = $1", app_id)
    assert Counter((k["environment"], k["status"]) for k in keys) == Counter(
        {("sandbox", "active"): 1, ("production", "active"): 1})
    history = await handle.fetch_history()
    assert not any(e.marker_recorded_event_attributes.marker_name == "core_patch"
                   and b"process-v2" in e.SerializeToString() for e in history.events)
    delivered = lambda: [m for m in inbox.messages  # noqa: E731
                         if f"{app_id}/key/" in (m["X-Notice-Id"] or "")]
    await eventually(lambda: len(delivered()) == 2, what="both keys delivered")


async def stop8_step(handle: WorkflowHandle, step: str) -> None:
    """Until stop 8's status (its own shape) shows the application waiting at `step`."""

    async def there() -> bool:
        shown = await handle.query("status", result_type=stop8.ApplicationStatus)
        assert shown.step == step and shown.takes, f"last status: {shown}"
        return True

    await eventually(there, what=f"stop 8 at {step}")
