"""Applications started by stop 8 go on after v2 is deployed: a stop-8 worker takes one to
sandbox testing, then today's worker takes it on, through the v2 class's gate
(workflows/legacy/), and moves it to v2 at its next event, where decisions are taken only when
their seals hold (docs/identity.md): a sealed decision moving it is verified by v2, a typed one
refused. Also: stop 8's activity names are all registered, with stop 8's shapes. The replay of
stop 8's saved histories, and of one that moved, is tests/test_replay.py."""

from __future__ import annotations

import asyncio
import re
import typing
from datetime import timedelta
from collections import Counter
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.worker import Replayer, Worker

import starter
from activities import platform_activities
from activities.interceptors import AuditActivityFailures, Heartbeats
from onboarding.domain import models
from onboarding.domain.models import Deadline
from onboarding.mail.relay import Relay
from onboarding.temporal.codec import for_worker
from tests.support import data, drive
from tests.support.drive import approval
from tests.support.eventually import eventually
from tests.support.inbox import notice_id
from tests.support.sealing import person, sealed, unsealed
from tests.support.stand_ins import activity_name
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


def stop8_worker(typed: Client, pool, ours) -> Worker:
    """A worker of stop 8: its workflow classes, its activities (by their names), on
    `typed`'s server (a client that seals nothing: stop 8's clients sent decisions as typed,
    and its models know no seal)."""
    client = Client(**{**typed.config(), "data_converter": for_worker(typed.data_converter)})
    return Worker(client, task_queue=ours.temporal_task_queue,
                  workflows=[Stop8Subscription, Stop8Publication],
                  activities=platform_activities(pool, ours),
                  interceptors=[AuditActivityFailures(pool), Heartbeats()],
                  workflow_runner=WORKFLOW_RUNNER)


async def stop8_step(handle: WorkflowHandle, step: str) -> None:
    """Until stop 8's status (its own shape) shows the application waiting at `step`."""

    async def there() -> bool:
        shown = await handle.query("status", result_type=stop8.ApplicationStatus)
        assert shown.step == step and shown.takes, f"last status: {shown}"
        return True

    await eventually(there, what=f"stop 8 at {step}")


async def test_an_application_started_by_stop_8_moves_to_v2_at_its_next_decision(
        dev_server, settings, pool, task_queue, inbox):
    """Stop 8 takes it to sandbox testing (pre-verified by someone who is a final approver as
    well). Today's worker: the next decision moves it to v2, which takes that decision by its
    own rules and continues as new; its timeline, keys, deadlines and four eyes carry over,
    and it reaches production with one key per environment. The moved run's history replays."""
    application = data.new_application(settings, ["account-balance"])
    app_id = application.application_id
    ours = settings.model_copy(update={"temporal_task_queue": task_queue})
    typed = unsealed(dev_server.client)
    stop = asyncio.Event()
    relay = asyncio.create_task(Relay(pool, ours).run(stop))
    async with stop8_worker(typed, pool, ours):
        handle = await starter.start_application(dev_server.client, ours, application)
        stop8_handle = typed.get_workflow_handle(app_id)
        await stop8_step(handle, "pre_verification")
        await stop8_handle.signal("pre_verification", stop8_payload(data.decision(
            data.REVIEWER_AND_APPROVER, verdict="approve", criteria=data.CRITERIA_HOLD)))
        for step in ("platform_contract", "final_approval"):
            await stop8_step(handle, step)
            await stop8_handle.signal(*approval(step, application)[:1],
                                      stop8_payload(approval(step, application)[1]))
        await stop8_step(handle, "sandbox_testing")
        before = await handle.query("status", result_type=stop8.ApplicationStatus)
    stop.set()
    await relay
    first_run = (await handle.describe()).run_id

    async with running(dev_server.client, ours, pool):
        # Until its next event, today's worker runs it with stop 8's code, answering in v2's
        # shapes.
        status = await drive.wait_for_step(handle, "sandbox_testing")
        assert (status.process, status.takes, status.run) == (
            "subscription", ["sandbox_testing_complete"], 1)
        assert status.deadlines == [Deadline(purpose=d.kind, due_at=d.due_at)
                                    for d in before.deadlines]
        await handle.signal(*approval("sandbox_testing", application))  # sealed; moves it
        moved = await drive.status_until(handle, lambda s: s.run == 2 and s.takes,
                                         "moved to v2, in a run of its own")
        assert (moved.step, moved.takes) == ("sandbox_verification", ["sandbox_verification"])
        # Stop 8's timeline and key carried, the moving decision taken by v2 after them.
        assert [d.decision for d in moved.decisions] == [
            "pre_verification", "platform_contract", "final_approval",
            "sandbox_testing_complete"]
        assert all(d.applied for d in moved.decisions)
        # The moving decision's seal checked by v2: in the name of who sealed it.
        contact = data.applicant(application)
        assert [(d.decided_by, d.identity) for d in moved.decisions] == [
            (d.decided_by, None) for d in before.decisions] + [
            (contact, person(contact).ref())]
        assert [(k.environment, k.key_id) for k in moved.keys] == [
            (k.environment, k.key_id) for k in before.keys]
        await drive.signal_at(handle, "sandbox_verification",
                              *approval("sandbox_verification", application))
        await drive.wait_for_step(handle, "production_switch")
        # Four eyes, from stop 8's record (a typed staff id) against a sealed decision: who
        # pre-verified may not switch to production.
        own = data.decision(data.REVIEWER_AND_APPROVER, verdict="approve",
                            service_contract=data.contract())
        await handle.signal("production_switch", own)
        refused = await drive.status_until(
            handle, lambda s: own["decision_id"] in drive.by_id(s), "four eyes applied")
        assert "four eyes" in drive.by_id(refused)[own["decision_id"]].reason
        await handle.signal(*approval("production_switch", application))
        final = await drive.result(handle)

    assert final.outcome == "in_production"
    keys = await pool.fetch(
        "SELECT environment, status FROM api_keys WHERE application_id = $1", app_id)
    assert Counter((k["environment"], k["status"]) for k in keys) == Counter(
        {("sandbox", "active"): 1, ("production", "active"): 1})
    history = await dev_server.client.get_workflow_handle(app_id, run_id=first_run) \
        .fetch_history()
    patches = [e.SerializeToString() for e in history.events
               if e.marker_recorded_event_attributes.marker_name == "core_patch"]
    # One patch, at the decision that found it waiting under today's worker: stop 8's own
    # (replayed) did not move it. Its number counts those that found it waiting, which
    # depends on when they arrived (a decision landing while a step works counts none).
    assert len(patches) == 1 and re.search(rb'"migrate-to-v2/[1-4]"', patches[0]), patches
    assert history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    replayed = await Replayer(workflows=WORKFLOWS, data_converter=dev_server.client.data_converter,
                              workflow_runner=WORKFLOW_RUNNER).replay_workflow(history)
    assert replayed.replay_failure is None
    # Stop 8's deliveries were not sent again: one mail per key.
    delivered = lambda: [m for m in inbox.messages  # noqa: E731
                         if f"{app_id}/key/" in (m["X-Notice-Id"] or "")]
    await eventually(lambda: len(delivered()) == 2, what="both keys delivered")
    assert len({m["X-Notice-Id"] for m in delivered()}) == 2


async def test_a_sealed_update_moves_an_application_started_by_stop_8_and_v2_verifies_it(
        dev_server, settings, pool, task_queue):
    """The moving event an update, sealed as the codec server seals (no typed `decided_by`,
    which stop 8's models would need): v2 takes it in the name of who sealed it. A typed
    decision after it is refused, "identity not verified". The moved run's history replays."""
    application = data.new_application(settings, ["account-balance"])
    app_id = application.application_id
    ours = settings.model_copy(update={"temporal_task_queue": task_queue})
    typed = unsealed(dev_server.client)
    async with stop8_worker(typed, pool, ours):
        handle = await starter.start_application(dev_server.client, ours, application)
        await stop8_step(handle, "pre_verification")
    first_run = (await handle.describe()).run_id

    async with running(dev_server.client, ours, pool):
        await drive.wait_for_step(handle, "pre_verification")
        decision = {"decision_id": "pv-sealed", "verdict": "approve",
                    "criteria": data.CRITERIA_HOLD}
        receipt = await typed.get_workflow_handle(app_id).execute_update(
            "pre_verification", sealed(decision, app_id, "pre_verification",
                                       by=person(data.REVIEWER)),
            result_type=models.DecisionReceipt)
        moved = await drive.status_until(handle, lambda s: s.run == 2 and s.takes,
                                         "moved to v2, in a run of its own")
        typed_claim = data.decision(data.PLATFORM, verdict="signed", contract=data.contract(),
                                    eligibility_confirmed=True)
        await typed.get_workflow_handle(app_id).signal("platform_contract", typed_claim)
        refused = await drive.status_until(
            handle, lambda s: typed_claim["decision_id"] in drive.by_id(s), "typed refused")

    assert receipt.applied, receipt
    assert moved.step == "platform_contract"
    [taken] = [d for d in moved.decisions if d.decision_id == "pv-sealed"]
    assert (taken.applied, taken.decided_by, taken.identity) == (
        True, data.REVIEWER, person(data.REVIEWER).ref())
    record = drive.by_id(refused)[typed_claim["decision_id"]]
    assert (record.applied, record.reason, record.decided_by) == (
        False, "identity not verified", f"{data.PLATFORM} (not verified)")
    assert refused.step == "platform_contract"
    history = await dev_server.client.get_workflow_handle(app_id, run_id=first_run) \
        .fetch_history()
    patches = [e.SerializeToString() for e in history.events
               if e.marker_recorded_event_attributes.marker_name == "core_patch"]
    assert len(patches) == 1 and b'"migrate-to-v2/1"' in patches[0]
    replayed = await Replayer(workflows=WORKFLOWS, data_converter=dev_server.client.data_converter,
                              workflow_runner=WORKFLOW_RUNNER).replay_workflow(history)
    assert replayed.replay_failure is None
    await dev_server.client.get_workflow_handle(app_id).terminate("test over")


async def test_a_deadline_reaching_an_application_started_by_stop_8_moves_it_to_v2(
        time_skipping_server, settings, pool, task_queue, inbox):
    """Nothing is decided after deployment: the reminder, when its day comes, moves the
    application. v2 lets that deadline pass (once: stop 8 had not), the next on its day."""
    env = time_skipping_server
    application = data.new_application(settings, ["account-balance"])
    app_id = application.application_id
    ours = settings.model_copy(update={"temporal_task_queue": task_queue})
    client = Client(**{**env.client.config(),
                       "data_converter": for_worker(env.client.data_converter)})
    async with Worker(client, task_queue=task_queue,
                      workflows=[Stop8Subscription, Stop8Publication],
                      activities=platform_activities(pool, ours),
                      workflow_runner=WORKFLOW_RUNNER,
                      # No sticky queue: the time-skipping server would keep the workflow on
                      # the gone worker's (the dev server lets go when a worker shuts down).
                      max_cached_workflows=0):
        handle = await starter.start_application(env.client, ours, application)
        await stop8_step(handle, "pre_verification")
        before = await handle.query("status", result_type=stop8.ApplicationStatus)
    try:
        async with running(env.client, ours, pool):
            await env.sleep(before.waiting_since + timedelta(days=7, hours=1)
                            - await env.get_current_time())
            moved = await drive.status_until(handle, lambda s: s.run == 2 and s.takes,
                                             "moved to v2 by the reminder")
            assert (moved.step, moved.waiting_since) == ("pre_verification",
                                                         before.waiting_since)
            assert [d.purpose for d in moved.deadlines] == ["escalation"]
            await env.sleep(timedelta(days=14))
            await drive.status_until(handle, lambda s: not s.deadlines, "the escalation")
            await handle.signal("withdraw", data.decision(data.applicant(application)))
            assert (await drive.result(handle)).outcome == "withdrawn"
    finally:
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate("test over")
    actions = [r["action"] for r in await pool.fetch(
        "SELECT action FROM audit_log WHERE application_id = $1 ORDER BY seq", app_id)]
    assert actions.count("reminder_due") == 1 and actions.count("escalation_due") == 1
    assert "moved_to_v2" in actions
    prefix = f"{app_id}/pre_verification/{before.waiting_since.isoformat()}/"
    await eventually(lambda: {notice_id(m) for m in inbox.messages
                              if notice_id(m).startswith(prefix)} == {
        prefix + "reminder", prefix + "escalation", prefix + "escalation/manager"},
        what="the reminder and the escalation, once each")
