"""The processes' logic on the time-skipping server, with their activities stood in for in
memory (tests/support/fakes.py): the `logic` fixture (import it into a test module) runs a
worker of today's workflows on a task queue of its own and ends, when the test is over,
whatever it left open (the time-skipping server is shared)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import Worker

import starter
from onboarding.domain.admission import prepare_subscription
from onboarding.domain.live_service import live_service_id
from onboarding.domain.models import ApplicationStatus, SubscriptionApplication
from onboarding.temporal.codec import for_worker
from tests.support import data
from tests.support.fakes import StandIns
from worker import WORKFLOW_RUNNER, WORKFLOWS


class Logic:
    def __init__(self, client: Client, settings, task_queue: str, stand_ins: StandIns) -> None:
        self.client, self.task_queue, self.stand_ins = client, task_queue, stand_ins
        self.settings = settings.model_copy(update={"temporal_task_queue": task_queue})
        self.started: list[WorkflowHandle] = []

    async def start(self, application) -> WorkflowHandle:
        handle = await starter.start_application(self.client, self.settings, application)
        self.started.append(handle)
        return handle

    async def end_what_is_open(self) -> None:
        """Left open on the shared time-skipping server, an application's timers would fire
        under other tests' skipped time, with no worker to take them."""
        # The live services of those that reached production (their ids come from the
        # application ids, which a raw start need not use as its workflow id).
        live = [self.client.get_workflow_handle(workflow_id) for workflow_id in sorted(
            self.stand_ins.live_services | {live_service_id(h.id) for h in self.started
                                            if h.id.startswith("subscription-")})]
        for handle in self.started + live:
            try:
                running = (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
            except RPCError:  # never started (a live service of one not in production)
                continue
            if running:
                await handle.terminate("test over")

    def subscription(self, apis: list[str]) -> SubscriptionApplication:
        return prepare_subscription(data.subscription_form(apis), self.settings)

    async def start_raw(self, workflow: str, raw: Any, workflow_id: str,
                        **options: Any) -> WorkflowHandle:
        """Started as any client may, without starter.py: the input as it is given."""
        handle = await self.client.start_workflow(workflow, raw, id=workflow_id,
                                                  task_queue=self.task_queue,
                                                  result_type=ApplicationStatus, **options)
        self.started.append(handle)
        return handle


@pytest.fixture
async def logic(logic_server, plain_settings) -> AsyncIterator[Logic]:
    env = logic_server
    stand_ins = StandIns(plain_settings)
    task_queue = f"logic-{uuid.uuid4().hex[:8]}"
    client = Client(**{**env.client.config(),
                       "data_converter": for_worker(env.client.data_converter)})
    async with Worker(client, task_queue=task_queue, workflows=WORKFLOWS,
                      activities=stand_ins.activities(), workflow_runner=WORKFLOW_RUNNER):
        logic = Logic(env.client, plain_settings, task_queue, stand_ins)
        logic.env = env
        try:
            yield logic
        finally:
            await logic.end_what_is_open()
