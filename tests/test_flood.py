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
        """SELECT action, actor, details FROM audit_log
           WHERE application_id = $1 AND result = 'refused'""", app_id)
    one_by_one = [r for r in rows if r["action"] == "final_approval"]
    counted = sum(r["details"]["count"] for r in rows if r["action"] == "refusals_dropped")
    assert len(one_by_one) == REFUSALS_PER_SENDER_PER_HOUR
    assert len(one_by_one) + counted == taken
    # Refused before any seal is checked (the wrong step): counted under the name claimed,
    # as the record shows it (docs/identity.md).
    assert {r["actor"] for r in rows} == {f"{APPROVER} (not verified)"}


async def _runs(client, workflow_id: str) -> list[WorkflowExecutionStatus] | None:
    listed = [w async for w in client.list_workflows(f'WorkflowId = "{workflow_id}"')]
    statuses = [w.status for w in sorted(listed, key=lambda w: w.start_time)]
    return statuses if statuses and statuses[-1] == WorkflowExecutionStatus.COMPLETED else None
