"""Driving an application as its people would: wait for a step, then decide."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import WorkflowHandle

from onboarding.domain.models import ApplicationStatus

TIMEOUT = 30


async def status(handle: WorkflowHandle) -> ApplicationStatus:
    return await handle.query("status", result_type=ApplicationStatus)


async def wait_for_step(handle: WorkflowHandle, step: str, timeout: float = TIMEOUT) -> ApplicationStatus:
    """Poll the status query until the application is at `step`."""
    last = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                last = await status(handle)
                if last.step == step:
                    return last
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"application never reached {step}; last status: {last}") from None


async def signal_at(handle: WorkflowHandle, step: str, name: str, payload: dict[str, Any]) -> None:
    await wait_for_step(handle, step)
    await handle.signal(name, payload)


async def result(handle: WorkflowHandle, timeout: float = TIMEOUT) -> ApplicationStatus:
    return await asyncio.wait_for(handle.result(), timeout)
