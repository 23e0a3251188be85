"""The workflow sandbox as the worker configures it (onboarding/temporal/sandbox.py) still
refuses what would make a workflow non-deterministic, with the workflow modules' bytecode read
once per process and the domain modules passed through."""

from __future__ import annotations

import uuid

import pytest
from temporalio.worker import Worker

from onboarding.temporal.sandbox import PASSTHROUGH, WORKFLOW_PACKAGE, _CachedCodeLoader
from tests.support.sandboxed import SandboxProbe
from worker import WORKFLOW_RUNNER


@pytest.mark.parametrize("call, expected", [("datetime.now", "refused"),
                                            ("datetime.utcnow", "refused"),
                                            ("json.loads", "allowed")])
async def test_a_forbidden_call_in_workflow_code_is_refused(time_skipping_server, call,
                                                            expected):
    client, queue = time_skipping_server.client, f"sandbox-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[SandboxProbe],
                      workflow_runner=WORKFLOW_RUNNER):
        answer = await client.execute_workflow(SandboxProbe.run, call,
                                               id=f"sandbox-{uuid.uuid4().hex}",
                                               task_queue=queue)
    assert answer == expected
    # The workflow modules came into that sandbox from the bytecode read once, and still
    # restricted.
    assert any(path.endswith("workflows/process.py") for path in _CachedCodeLoader.code)


def test_no_workflow_module_is_passed_through():
    passed = WORKFLOW_RUNNER.restrictions.passthrough_modules
    assert set(PASSTHROUGH) <= passed
    for name in ("workflows", "workflows.process", "workflows.handlers",
                 "workflows.subscription", "workflows.publication", "workflows.reconciliation"):
        assert not any(name == p or name.startswith(p + ".") for p in passed), name
    assert WORKFLOW_PACKAGE not in passed
    assert not WORKFLOW_RUNNER.restrictions.passthrough_all_modules
