"""The workflow sandbox as the worker configures it (onboarding/temporal/sandbox.py): the
workflow modules imported once, in the sandbox, and shared by every run; a call that would make
a workflow non-deterministic still refused, in every run, on every thread; a run changing the
shared modules' state caught."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import sys
import threading
import uuid

import pytest
from temporalio.api.common.v1 import Payloads
from temporalio.bridge.proto.workflow_activation import UpdateRandomSeed
from temporalio.converter import DataConverter, DefaultPayloadConverter
from temporalio.worker import Replayer, Worker, WorkflowInstanceDetails
from temporalio.worker._workflow_instance import _WorkflowInstanceImpl
from temporalio.worker.workflow_sandbox import (
    RestrictedWorkflowAccessError,
    SandboxedWorkflowRunner,
    SandboxRestrictions,
)
from temporalio.worker.workflow_sandbox._runner import _fake_info
from temporalio.workflow import _Definition

from onboarding.core.config import Settings
from onboarding.temporal.codec import data_converter
from onboarding.temporal.sandbox import (
    PASSTHROUGH,
    WORKFLOW_PACKAGE,
    LeanWorkflowInstance,
    PerThreadRestrictionContext,
    SharedSandboxRunner,
    workflow_runner,
)
from tests.support.sandboxed import SandboxModules, SandboxProbe, SandboxRandom
from worker import WORKFLOW_RUNNER

RUNS_AT_ONCE = 12


async def _answers(server, runner, workflow, arg=None, runs=RUNS_AT_ONCE):  # type: ignore[no-untyped-def]
    client, queue = server.client, f"sandbox-{uuid.uuid4().hex[:8]}"
    args = [] if arg is None else [arg]
    async with Worker(client, task_queue=queue, workflows=[SandboxProbe, SandboxModules],
                      workflow_runner=runner):
        # All at once: time must not skip while one waits for its result.
        with server.auto_time_skipping_disabled():
            return await asyncio.gather(*(
                client.execute_workflow(workflow, *args, id=f"sandbox-{uuid.uuid4().hex}",
                                        task_queue=queue) for _ in range(runs)))


@pytest.mark.parametrize("call, expected", [("datetime.now", "refused"),
                                            ("datetime.utcnow", "refused"),
                                            ("random.random", "refused"),
                                            ("os.getcwd", "refused"),
                                            ("open", "refused"),
                                            ("json.loads", "allowed"),
                                            ("workflow.now", "allowed")])
async def test_a_forbidden_call_in_a_shared_workflow_module_is_refused(time_skipping_server,
                                                                       call, expected):
    # Many runs at once, each through the module objects every run of the runner shares.
    answers = await _answers(time_skipping_server, WORKFLOW_RUNNER, SandboxProbe.run, call)
    assert answers == [expected] * RUNS_AT_ONCE
    assert "workflows.process" in WORKFLOW_RUNNER.shared_modules
    assert "tests.support.sandboxed" in WORKFLOW_RUNNER.shared_modules


async def test_passed_through_a_forbidden_call_is_not_refused(time_skipping_server):
    # Why the workflow modules are never passed through: there they have the real datetime.
    runner = SharedSandboxRunner(restrictions=SandboxRestrictions.default
                                 .with_passthrough_modules(*PASSTHROUGH, WORKFLOW_PACKAGE))
    assert await _answers(time_skipping_server, runner, SandboxProbe.run, "datetime.now",
                          runs=1) == ["allowed"]


async def test_every_run_uses_the_same_restricted_modules(time_skipping_server):
    answers = await _answers(time_skipping_server, WORKFLOW_RUNNER, SandboxModules.run)
    assert all(a == answers[0] for a in answers)
    shared = WORKFLOW_RUNNER.shared_modules
    sandboxed = shared["workflows.process"]
    assert answers[0][:4] == [id(sandboxed), id(sandboxed.datetime),
                              id(shared["tests.support.sandboxed"].SandboxProbe),
                              id(shared["tests.support.sandboxed"].CALLS)]
    # and one payload converter (its type adapters made once, not for every run).
    # Not the host's modules: the sandbox's, with the SDK's restricted datetime.
    assert sandboxed is not sys.modules["workflows.process"]
    assert sandboxed.datetime is not sys.modules["workflows.process"].datetime
    assert WORKFLOW_RUNNER.changed_module_state() == []


async def test_a_run_changing_shared_module_state_is_caught(time_skipping_server):
    assert WORKFLOW_RUNNER.changed_module_state() == []
    assert await _answers(time_skipping_server, WORKFLOW_RUNNER, SandboxProbe.run,
                          "change module state", runs=1) == ["allowed"]
    assert WORKFLOW_RUNNER.changed_module_state() == ["tests.support.sandboxed"]
    WORKFLOW_RUNNER.shared_modules["tests.support.sandboxed"].SEEN.clear()
    assert WORKFLOW_RUNNER.changed_module_state() == []


async def test_one_thread_leaving_run_time_does_not_lift_another_threads_restrictions():
    # `open` is refused at run time only (modules may open files while they are imported):
    # whether a thread is at run time is the one thing the runs' shared context keeps per thread.
    runner = workflow_runner()
    runner.prepare_workflow(_Definition.must_from_class(SandboxProbe))  # imports, no server
    importer = runner._shared.importer
    context = importer.restriction_context
    assert isinstance(context, PerThreadRestrictionContext)

    def opens() -> str:
        try:
            with importer.applied():
                open(os.devnull).close()
        except RestrictedWorkflowAccessError:
            return "refused"
        return "allowed"

    assert opens() == "allowed"  # not at run time, as while importing
    at_run_time, other_done, outcome = threading.Event(), threading.Event(), []

    def run_a() -> None:
        context.is_runtime = True
        at_run_time.set()
        other_done.wait(10)
        outcome.append(opens())
        context.is_runtime = False

    def run_b() -> None:
        at_run_time.wait(10)
        context.is_runtime = True
        outcome.append(opens())
        context.is_runtime = False  # its activation ends
        other_done.set()

    threads = [threading.Thread(target=run_a), threading.Thread(target=run_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert outcome == ["refused", "refused"]
    assert not context.is_runtime and opens() == "allowed"


def test_only_a_payload_converter_holding_nothing_of_a_run_is_shared():
    shared = workflow_runner()._shared
    pydantic = data_converter(Settings())
    one = shared.payload_converter_factory(pydantic._new_payload_converter)
    assert one() is one()
    assert shared.payload_converter_factory(
        dataclasses.replace(pydantic, payload_codec=None)._new_payload_converter)() is one()

    class Unknown(DefaultPayloadConverter):  # could hold what a run gave it
        pass

    other = dataclasses.replace(pydantic, payload_converter_class=Unknown)
    per_run = shared.payload_converter_factory(other._new_payload_converter)
    assert per_run() is not per_run()


def test_no_workflow_module_is_passed_through():
    assert isinstance(WORKFLOW_RUNNER, SharedSandboxRunner)
    passed = WORKFLOW_RUNNER.restrictions.passthrough_modules
    assert set(PASSTHROUGH) <= passed
    for name in ("workflows", "workflows.process", "workflows.handlers",
                 "workflows.subscription", "workflows.publication", "workflows.reconciliation",
                 "workflows.live_service", "workflows.api_retirement"):
        assert not any(name == p or name.startswith(p + ".") for p in passed), name
    assert WORKFLOW_PACKAGE not in passed
    assert not WORKFLOW_RUNNER.restrictions.passthrough_all_modules


def _drawn(seed: int) -> list:
    """What SandboxRandom draws from a generator seeded as the SDK seeds a run's."""
    r = random.Random(seed)
    first = [r.random(), r.randint(0, 2)]
    return first + [str(uuid.UUID(bytes=r.getrandbits(128).to_bytes(16, "big"), version=4)),
                    r.random()]


async def test_a_run_draws_what_the_sdks_generator_of_its_seed_draws(time_skipping_server):
    # The lean instance makes the run's generator when first asked for: the same draws as the
    # SDK's, made when the instance is; and its history replays on the SDK's own sandbox.
    client, queue = time_skipping_server.client, f"sandbox-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[SandboxRandom],
                      workflow_runner=WORKFLOW_RUNNER):
        handles = [await client.start_workflow(SandboxRandom.run, id=f"sandbox-{uuid.uuid4().hex}",
                                               task_queue=queue) for _ in range(3)]
        for handle in handles:
            seed, drawn = await handle.result()
            assert drawn == _drawn(seed)
    histories = [await handle.fetch_history() for handle in handles]
    for runner in (SandboxedWorkflowRunner(), WORKFLOW_RUNNER):
        replayer = Replayer(workflows=[SandboxRandom], workflow_runner=runner,
                            data_converter=client.data_converter)
        for history in histories:
            await replayer.replay_workflow(history)


async def test_the_lean_instance_draws_as_the_sdks_across_new_seeds():
    # Seeds replaced before any draw, between draws, twice in a row: state for state the SDK's.
    det = WorkflowInstanceDetails(
        payload_converter_factory=DataConverter.default._new_payload_converter,
        failure_converter_class=DataConverter.default.failure_converter_class,
        interceptor_classes=[], defn=_Definition.must_from_class(SandboxRandom),
        info=_fake_info, randomness_seed=1234, extern_functions={},
        disable_eager_activity_execution=False, worker_level_failure_exception_types=[],
        patch_activation_callback=None, last_completion_result=Payloads(), last_failure=None)
    sdk, lean = _WorkflowInstanceImpl(det), LeanWorkflowInstance(det)  # type: ignore[abstract]
    assert lean._random_made is None  # holds no generator until asked for one
    for step in ("reseed 99", "draw", "draw", "reseed 7", "reseed 8", "draw", "reseed 8",
                 "draw"):
        for instance in (sdk, lean):
            if step == "draw":
                r = instance.workflow_random()
                instance.__dict__.setdefault("drawn", []).append(
                    [r.random(), r.getrandbits(64), r.gauss(0, 1)])
            else:
                instance._apply_update_random_seed(UpdateRandomSeed(
                    randomness_seed=int(step.split()[1])))
        assert lean.workflow_random_seed() == sdk.workflow_random_seed()
    assert lean.__dict__["drawn"] == sdk.__dict__["drawn"]
    assert lean.workflow_random().getstate() == sdk.workflow_random().getstate()
