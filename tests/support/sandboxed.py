"""A workflow for tests/test_sandbox.py: it makes a call the sandbox must refuse, through a
module the workflows import, and says whether it was refused."""

from __future__ import annotations

import os
import random

from temporalio import workflow
from temporalio.worker.workflow_sandbox import RestrictedWorkflowAccessError

# Imported as the workflow modules import each other: not passed through.
from workflows import process

# Module state a run must not change (tests/test_sandbox.py changes it, to see it caught).
SEEN: list[str] = []

CALLS = {
    # Each through what workflows/process.py imported (`datetime`, `asyncio`, `json`): the
    # names its code calls.
    "datetime.now": lambda: process.datetime.now(),
    "datetime.utcnow": lambda: process.datetime.utcnow(),
    "json.loads": lambda: process.json.loads("{}"),  # allowed: deterministic
    # Through what this module imported, and a builtin.
    "random.random": lambda: random.random(),
    "os.getcwd": lambda: os.getcwd(),
    "open": lambda: open(os.devnull),
    "workflow.now": lambda: workflow.now(),  # allowed: the SDK's deterministic time
    "change module state": lambda: SEEN.append("a run was here"),
}


@workflow.defn(name="SandboxProbe")
class SandboxProbe:
    @workflow.run
    async def run(self, call: str) -> str:
        try:
            CALLS[call]()
        except RestrictedWorkflowAccessError:
            return "refused"
        return "allowed"


@workflow.defn(name="SandboxModules")
class SandboxModules:
    """Which module objects (and payload converter) a run sees: their ids (a test compares
    runs with each other)."""

    @workflow.run
    async def run(self) -> list[int]:
        return [id(process), id(process.datetime), id(SandboxProbe), id(CALLS),
                id(workflow.payload_converter())]


@workflow.defn(name="SandboxRandom")
class SandboxRandom:
    """What a run draws from the SDK's deterministic random (tests/test_sandbox.py compares it
    with a generator made from the run's seed), before and after its timers: as many as its
    second draw says, so that a replay drawing otherwise would not match its history."""

    @workflow.run
    async def run(self) -> list:
        seed = workflow.random_seed()
        drawn: list = [workflow.random().random(), workflow.random().randint(0, 2)]
        for _ in range(1 + drawn[1]):
            await workflow.sleep(1)
        drawn += [str(workflow.uuid4()), workflow.random().random()]
        return [seed, drawn]
