"""A flood of decisions that do not apply cannot stop an application (issue 11): 12,000
wrong-step signals sent as fast as a client can (64 at a time, on loopback) at an application
waiting at pre-verification. No run is terminated; the refusals are on the record, one by one
up to a sender's rate and counted past it; once the flood stops the run continues as new; and
the application then goes to production with exactly one key per environment. The cost in
history events per refused signal is the benchmark's (bench/, phase "flood")."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import pytest

from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from onboarding.domain.models import ProcessLimits
from onboarding.domain.state import REFUSALS_PER_SENDER_PER_HOUR
from onboarding.temporal.dynamic_config import SIGNALS_PER_RUN
from tests.support import data, drive
from tests.support.data import APPROVER, decision
from tests.support.drive import approval
from tests.support.eventually import eventually
from tests.support.stand_ins import HeldCommit, with_stand_ins
from tests.test_cli import cli_env  # noqa: F401 - the fixture
from tests.test_cli import run as run_cli

FLOOD = 12_000
AT_ONCE = 64


async def flood(handle, n: int, at_once: int) -> Counter:
    """`n` final approvals at pre-verification, `at_once` in flight; what became of them:
    taken by Temporal, or refused by it (by the reason it gives)."""
    outcomes: Counter = Counter()
    sent = iter(range(n))

    async def sender() -> None:
        for _ in sent:
            try:
                await handle.signal("final_approval", decision(APPROVER, verdict="approve"))
            except RPCError as err:
                outcomes[err.message.split(" for ")[0][:80]] += 1  # its reason
            else:
                outcomes["taken"] += 1

    await asyncio.gather(*(sender() for _ in range(at_once)))
    return outcomes


@pytest.mark.slow
async def test_a_flood_of_wrong_step_signals_neither_terminates_nor_stops_the_application(
        dev_server, run_worker, settings, pool, task_queue, cli_env):
    client = dev_server.client
    application = data.new_application(settings, ["account-balance"])
    app_id = application.application_id
    async with run_worker(client):
        handle = await drive.start(client, settings, task_queue, application)
        await drive.wait_for_step(handle, "pre_verification")
        outcomes = await flood(handle, FLOOD, AT_ONCE)
        taken = outcomes["taken"]
        # While the flood lasts the run cannot end: Temporal refuses what passes its per-run
        # limit (the platform's dynamic config); the application then continues as new.
        assert taken >= SIGNALS_PER_RUN, outcomes
        assert set(outcomes) <= {"taken", "exceeded workflow execution limit"}

        # Each run that reached the limit continues as new once quiet (for a moment it
        # refuses signals: a client sends again); the status counts every refusal.
        async def continued() -> bool:
            shown = await drive.status(handle)
            assert len(shown.decisions) + shown.refused_not_listed >= taken, shown.run
            # Not a run that took Temporal's limit: that one continues as new once quiet. (The
            # run taking the flood's tail may hold hundreds, under the application's ceiling.)
            assert (await handle.describe()).raw_description.workflow_execution_info \
                .history_length < ProcessLimits().events_per_run, "the last run still full"
            return shown.run >= 2

        await eventually(continued, 120, "the flood's refusals counted in a new run")
        status = await drive.wait_for_step(handle, "pre_verification")
        assert status.takes == ["pre_verification"]
        # The reviewer's `show` says which run answers, and what it no longer lists.
        shown = await run_cli("show", app_id)
        assert shown.exit_code == 0, shown.output
        assert re.search(rf"run\s+{status.run} \(continued as new", shown.output)
        assert re.search(rf"not listed\s+{status.refused_not_listed} earlier refusals",
                         shown.output)
        for step in drive.PATH:
            if step == "market_data_licence":
                continue
            await drive.signal_at(handle, step, *approval(step, application))
        final = await drive.result(handle, timeout=60)

    assert final.outcome == "in_production"
    keys = await pool.fetch("SELECT environment, status FROM api_keys WHERE application_id = $1",
                            app_id)
    assert Counter((k["environment"], k["status"]) for k in keys) == Counter(
        {("sandbox", "active"): 1, ("production", "active"): 1})
    # No run terminated: each continued as new, the last completed.
    runs = await eventually(lambda: _runs(client, app_id), what="every run listed")
    assert set(runs[:-1]) == {WorkflowExecutionStatus.CONTINUED_AS_NEW}, runs
    assert runs[-1] == WorkflowExecutionStatus.COMPLETED
    # Refusals are cheap: the history events of every run, per signal taken (goal: at most 4).
    events = 0
    async for listed in client.list_workflows(f'WorkflowId = "{app_id}"'):
        events += (await client.get_workflow_handle(app_id, run_id=listed.run_id).describe()) \
            .raw_description.workflow_execution_info.history_length
    per_refusal = events / taken
    print(f"flood: {taken} signals taken, {events} history events in {len(runs)} runs, "
          f"{per_refusal:.2f} events per refused signal")
    assert per_refusal <= 4, per_refusal
    # On the record: the first refusals one by one, the rest counted ("N dropped from X").
    rows = await pool.fetch(
        """SELECT action, actor, details FROM audit_trail
           WHERE application_id = $1 AND result = 'refused'""", app_id)
    one_by_one = [r for r in rows if r["action"] == "final_approval"]
    counted = sum(r["details"]["count"] for r in rows if r["action"] == "refusals_dropped")
    assert len(one_by_one) == REFUSALS_PER_SENDER_PER_HOUR
    assert len(one_by_one) + counted == taken
    # Refused before any seal is checked (the wrong step): counted under the name claimed,
    # as the record shows it (docs/identity.md).
    assert {r["actor"] for r in rows} == {f"{APPROVER} (not verified)"}


async def test_refusals_journaled_by_a_workflow_task_temporal_discarded_are_on_the_record_once(
        dev_server, run_worker, settings, pool, task_queue):
    """A commit is written in the workflow task that makes it; when Temporal then discards that
    task (here: more signals arrived meanwhile than it buffers, and it force-closed the task),
    the task runs again with the signals that came since, and its commit with them. Every
    refusal is on the record once: none lost where the discarded task's commit took the
    numbers the new one gives them, none counted twice."""
    client = dev_server.client
    application = data.new_application(settings, ["account-balance"])
    app_id = application.application_id
    held = HeldCommit(pool, settings, after_write=True, holds=lambda commit: False)
    async with run_worker(client, with_stand_ins(pool, settings, held)):
        handle = await drive.start(client, settings, task_queue, application)
        await drive.wait_for_step(handle, "pre_verification")
        # The sender's refusals on the record one by one, up to its rate...
        assert await flood(handle, REFUSALS_PER_SENDER_PER_HOUR, 4) == {
            "taken": REFUSALS_PER_SENDER_PER_HOUR}

        async def first_on_record() -> bool:
            return await refused_on_record(pool, app_id) == (REFUSALS_PER_SENDER_PER_HOUR, 0)

        await eventually(first_on_record, what="the first refusals on the record")
        held.holds = lambda commit: any(getattr(e, "action", "") == "refusals_dropped"
                                        for e in commit.entries)
        # ... then counted, and committed with another sender's refusal: that commit is
        # written and its workflow task kept open.
        await handle.signal("final_approval", decision(APPROVER, verdict="approve"))
        await handle.signal("final_approval", decision("other.approver@example.com",
                                                       verdict="approve"))
        async with held.while_held(drive.TIMEOUT):
            assert await flood(handle, 150, 16) == {"taken": 150}

            async def discarded() -> bool:
                history = await handle.fetch_history()
                return any(e.HasField("workflow_task_failed_event_attributes")
                           for e in history.events)

            await eventually(discarded, drive.TIMEOUT, "the task discarded by Temporal")
        # The application ends: its last commit writes what is still only counted (signals
        # of the flood that came after the task ran again).
        await handle.signal("withdraw", decision(data.applicant(application)))
        assert (await drive.result(handle)).outcome == "withdrawn"

    # Every refusal on the record once: 21 one by one (the other sender's too), the rest
    # counted; 152 were sent after the first 20.
    assert await refused_on_record(pool, app_id) == (REFUSALS_PER_SENDER_PER_HOUR + 1, 151)
    # The discarded task's line, counting 1, is on the log and superseded on the record.
    superseding = await pool.fetch(
        """SELECT details FROM audit_log
           WHERE application_id = $1 AND action = 'lines_superseded'""", app_id)
    replaced = await pool.fetch(
        "SELECT action, details FROM audit_log WHERE entry_id = ANY($1::text[])",
        [entry_id for r in superseding for entry_id in r["details"]["entry_ids"]])
    assert ("refusals_dropped", 1) in [(r["action"], r["details"].get("count"))
                                       for r in replaced], replaced


async def refused_on_record(pool, app_id: str) -> tuple[int, int]:
    """An application's refusals on the record: one by one, and counted."""
    rows = await pool.fetch("""SELECT action, details FROM audit_trail
                               WHERE application_id = $1 AND result = 'refused'""", app_id)
    return (sum(r["action"] == "final_approval" for r in rows),
            sum(r["details"]["count"] for r in rows if r["action"] == "refusals_dropped"))


async def _runs(client, workflow_id: str) -> list[WorkflowExecutionStatus] | None:
    listed = [w async for w in client.list_workflows(f'WorkflowId = "{workflow_id}"')]
    statuses = [w.status for w in sorted(listed, key=lambda w: w.start_time)]
    return statuses if statuses and statuses[-1] == WorkflowExecutionStatus.COMPLETED else None
