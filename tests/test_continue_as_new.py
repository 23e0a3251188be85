"""A history that stays bounded: a run continues as new at a wait, before any of Temporal's
limits, carrying the application's whole state (workflows/process.py, onboarding/domain/state.py).
On the time-skipping server with the activities stood in for, at a test's low ceiling (ten
signals a run), in the middle of a step: its deadlines still fall on their days, a decision
sent again across the run boundary is still a repeat, four eyes still holds, and the
application goes on to production."""

from __future__ import annotations

from datetime import timedelta

from temporalio.api.enums.v1 import EventType

from onboarding.domain.models import ProcessLimits
from tests.support import data, drive
from tests.support.data import APPROVER, PLATFORM, REVIEWER_AND_APPROVER, SALES, decision
from tests.support.drive import approval, by_id
from tests.support.logic import logic  # noqa: F401 - the fixture
from tests.support.sealing import person

LOW = ProcessLimits(signals_per_run=10)


async def test_a_run_continued_as_new_in_the_middle_of_a_step_keeps_its_deadlines_and_rules(
        logic):
    env = logic.env
    application = logic.subscription(["account-balance"]).model_copy(update={"limits": LOW})
    app_id = application.application_id
    handle = await logic.start(application)
    await drive.signal_at(handle, "pre_verification", "pre_verification", decision(
        REVIEWER_AND_APPROVER, verdict="approve", criteria=data.CRITERIA_HOLD))
    await drive.signal_at(handle, "platform_contract", *approval("platform_contract",
                                                                 application))
    at_step = await drive.wait_for_step(handle, "final_approval")
    since = at_step.waiting_since
    assert at_step.run == 1

    # A decision refused in the first run, and enough refused signals to pass the ceiling.
    not_entitled = decision(SALES, verdict="approve")
    await handle.signal("final_approval", not_entitled)
    for _ in range(LOW.signals_per_run):
        await handle.signal("sandbox_verification", decision(PLATFORM, verdict="approve"))
    continued = await drive.status_until(handle, lambda s: s.run == 2, "the run continued")
    assert (continued.step, continued.takes, continued.waiting_since) == (
        "final_approval", ["final_approval"], since)
    assert continued.deadlines == at_step.deadlines
    assert by_id(continued)[not_entitled["decision_id"]].applied is False
    # Carried: who sealed each decision, as verified (four eyes compares these).
    [pre] = [d for d in continued.decisions if d.decision == "pre_verification"]
    assert (pre.decided_by, pre.identity) == (REVIEWER_AND_APPROVER,
                                              person(REVIEWER_AND_APPROVER).ref())

    # The same decision again, in the new run: a repeat. Four eyes: the pre-verifier may not.
    await handle.signal("final_approval", not_entitled)
    own = decision(REVIEWER_AND_APPROVER, verdict="approve")
    await handle.signal("final_approval", own)
    status = await drive.status_until(
        handle, lambda s: own["decision_id"] in by_id(s), "four eyes applied")
    repeats = [d for d in status.decisions if d.decision_id == not_entitled["decision_id"]]
    assert [d.reason.startswith("decision ") and "already received" in d.reason
            for d in repeats] == [False, True]
    assert "four eyes" in by_id(status)[own["decision_id"]].reason

    # The reminder and the escalation fall on their days, counted from the step's start in
    # the first run.
    await env.sleep(since + timedelta(days=7, hours=1) - await env.get_current_time())
    await env.sleep(timedelta(days=14))
    audited = [(e.action, e.details.get("since")) for e in logic.stand_ins.entries(app_id, "audit")
               if e.action in ("reminder_due", "escalation_due")]
    assert audited == [("reminder_due", since.date().isoformat()),
                       ("escalation_due", since.date().isoformat())]
    told = [e.notice.notice_id for e in logic.stand_ins.entries(app_id, "notice")]
    assert f"{app_id}/final_approval/{since.isoformat()}/reminder" in told
    assert f"{app_id}/final_approval/{since.isoformat()}/escalation/manager" in told

    # And the application goes on, to production.
    await handle.signal("final_approval", decision(APPROVER, verdict="approve"))
    await drive.drive_to(handle, application, "production_switch")
    await handle.signal(*approval("production_switch", application))
    final = await drive.result(handle)
    assert final.outcome == "in_production" and final.run >= 2
    assert {k.environment for k in final.keys} == {"sandbox", "production"}
    # Every entry once, numbered on across the runs.
    seqs = [e.seq for c in logic.stand_ins.commits if c.workflow_id == app_id
            for e in c.entries]
    assert seqs == list(range(len(seqs)))
    history = await handle.fetch_history()
    assert history.events[0].workflow_execution_started_event_attributes \
        .continued_execution_run_id
    assert not any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
                   for e in history.events)
