"""A workflow for tests/test_sandbox.py: it makes a call the sandbox must refuse, through a
module the workflows import, and says whether it was refused."""

from __future__ import annotations

from temporalio import workflow
from temporalio.worker.workflow_sandbox import RestrictedWorkflowAccessError

# Imported as the workflow modules import each other: not passed through.
from workflows import process

CALLS = {
    # Each through what workflows/process.py imported (`datetime`, `asyncio`, `json`): the
    # names its code calls.
    "datetime.now": lambda: process.datetime.now(),
    "datetime.utcnow": lambda: process.datetime.utcnow(),
    "json.loads": lambda: process.json.loads("{}"),  # allowed: deterministic
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
