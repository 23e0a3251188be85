"""Driving an application as its people would: wait for a step, then decide."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio.client import Client, WorkflowHandle

import starter
from onboarding.core.config import Settings
from onboarding.domain.models import ApplicationStatus, DecisionRecord, SubscriptionApplication
from tests.support.data import (
    APPROVER,
    CRITERIA_HOLD,
    PLATFORM,
    REVIEWER,
    SALES,
    applicant,
    contract,
    decision,
)
from tests.support.eventually import TIMEOUT, eventually

# A subscription's steps in order; each is moved on by the decision `approval` makes for it.
PATH = ["pre_verification", "market_data_licence", "platform_contract", "final_approval",
        "sandbox_testing", "sandbox_verification", "production_switch"]


async def start(client: Client, settings: Settings, task_queue: str,
                application: SubscriptionApplication) -> WorkflowHandle:
    return await starter.start_application(
        client, settings.model_copy(update={"temporal_task_queue": task_queue}), application
    )


async def status(handle: WorkflowHandle) -> ApplicationStatus:
    return await handle.query("status", result_type=ApplicationStatus)


async def status_until(handle: WorkflowHandle, holds: Callable[[ApplicationStatus], Any],
                       what: str, timeout: float = TIMEOUT, *,
                       interval: float = 0.1) -> ApplicationStatus:
    """Ask the status query until `holds(status)`; return that status."""

    async def check() -> ApplicationStatus:
        shown = await status(handle)
        assert holds(shown), f"last status: {shown}"
        return shown

    return await eventually(check, timeout, what, interval=interval)


async def wait_for_step(handle: WorkflowHandle, step: str,
                        timeout: float = TIMEOUT) -> ApplicationStatus:
    """Poll the status query until the application waits at `step` and takes its decision
    (the step's record written: its keys are on it), or has ended there."""
    return await status_until(handle, lambda s: s.step == step and (s.takes or s.outcome),
                              f"the application reaching {step}", timeout)


async def decisions_recorded(handle: WorkflowHandle, count: int) -> ApplicationStatus:
    """The status once it holds at least `count` decisions, applied or refused."""
    return await status_until(handle, lambda s: len(s.decisions) >= count,
                              f"{count} decisions recorded")


def by_id(status: ApplicationStatus) -> dict[str, DecisionRecord]:
    return {d.decision_id: d for d in status.decisions}


async def signal_at(handle: WorkflowHandle, step: str, name: str, payload: dict[str, Any]) -> None:
    await wait_for_step(handle, step)
    await handle.signal(name, payload)


async def result(handle: WorkflowHandle, timeout: float = TIMEOUT) -> ApplicationStatus:
    return await asyncio.wait_for(handle.result(), timeout)


def approval(step: str, application: SubscriptionApplication) -> tuple[str, dict[str, Any]]:
    """The signal name and payload that approve `step`."""
    return {
        "pre_verification": ("pre_verification",
                             decision(REVIEWER, verdict="approve", criteria=CRITERIA_HOLD)),
        "market_data_licence": ("market_data_licence",
                                decision(SALES, verdict="concluded", contract=contract())),
        "platform_contract": ("platform_contract",
                              decision(PLATFORM, verdict="signed", contract=contract(),
                                       eligibility_confirmed=True)),
        "final_approval": ("final_approval", decision(APPROVER, verdict="approve")),
        "sandbox_testing": ("sandbox_testing_complete", decision(applicant(application))),
        "sandbox_verification": ("sandbox_verification", decision(PLATFORM, verdict="approve")),
        "production_switch": ("production_switch",
                              decision(APPROVER, verdict="approve", service_contract=contract())),
    }[step]


async def drive_to(handle: WorkflowHandle, application: SubscriptionApplication, step: str,
                   *, licence: bool = False) -> ApplicationStatus:
    """Approve every step from the current one up to `step`; return the status at `step`."""
    now = (await status_until(handle, lambda s: not s.verifying,
                              "no decision being verified")).step
    for current in PATH[PATH.index(now) if now in PATH else 0:]:
        if current == "market_data_licence" and not licence:
            continue
        if current == step:
            break
        name, payload = approval(current, application)
        await signal_at(handle, current, name, payload)
    return await wait_for_step(handle, step)
