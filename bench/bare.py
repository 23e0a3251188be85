"""The bare workflow: a subscription lifecycle's shape with nothing inside it.

It receives as many signals, and runs as many activities (no-ops), as a real lifecycle's
history shows, each when the real one did: every batch of commands that the real workflow
issued in one workflow task (activities to schedule, a step to show) is issued once as many
signals have arrived and as many activities have completed as when the real one issued it
(bench/benchmark.py reads that plan from a calibration lifecycle's history and passes it in).
It also upserts `ApplicationStep` where the real workflow does, with the same step names, so
one driver follows both the same way: it waits for the step in the history, then sends the
step's decision as a signal.

`IrreducibleWorkflow` is the floor: what the procedure cannot do without. The same seven
signals; for each, one no-op activity (the decision's effect on record), and one more for each
key the decision issues (final approval, production: 9 activities in all); no other command (no
step shown, no timer, no marker). The driver follows it by its activities' completions.

Run its worker on its own, as the benchmark does, in a process of its own:

    TEMPORAL_ADDRESS=127.0.0.1:7233 TEMPORAL_TASK_QUEUE=bare python -m bench.bare
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RawValue, RetryPolicy, SearchAttributeKey

# One entry per workflow task of the real workflow that issued commands: [signals received,
# activities completed, *commands], a command being a number of activities to schedule or the
# name of the step to show.
Plan = list[list[int | str]]

APPLICATION_STEP = SearchAttributeKey.for_keyword("ApplicationStep")
READY = "bare worker started"


@activity.defn(name="bench_noop")
async def noop() -> None:
    return None


@workflow.defn(name="BenchIrreducibleLifecycle")
class IrreducibleWorkflow:
    def __init__(self) -> None:
        self.signals = 0

    @workflow.run
    async def run(self, activities_per_signal: list[int]) -> int:
        for k, count in enumerate(activities_per_signal):
            await workflow.wait_condition(lambda k=k: self.signals > k)
            await asyncio.gather(*(workflow.execute_activity(
                noop, start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)))
                for _ in range(count)))
        return self.signals

    @workflow.signal(dynamic=True)
    def decision(self, name: str, args: Sequence[RawValue]) -> None:
        self.signals += 1


@workflow.defn(name="BenchBareLifecycle")
class BareWorkflow:
    def __init__(self) -> None:
        self.step = ""
        self.signals = 0
        self.completed = 0

    @workflow.run
    async def run(self, plan: Plan) -> int:
        running: list[asyncio.Task[None]] = []
        for signals, completed, *commands in plan:
            await workflow.wait_condition(
                lambda s=signals, c=completed: self.signals >= s and self.completed >= c)
            for command in commands:
                if isinstance(command, str):
                    self.step = command
                    workflow.upsert_search_attributes([APPLICATION_STEP.value_set(command)])
                else:
                    running += [asyncio.create_task(self._noop()) for _ in range(command)]
        await asyncio.gather(*running)
        return self.signals

    async def _noop(self) -> None:
        await workflow.execute_activity(
            noop,
            # The same options as the platform's activities.
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
        )
        self.completed += 1

    @workflow.signal(dynamic=True)
    def decision(self, name: str, args: Sequence[RawValue]) -> None:
        self.signals += 1

    @workflow.query
    def status(self) -> dict[str, str]:
        return {"step": self.step}


async def serve() -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    from onboarding.core.config import Settings
    from onboarding.temporal.codec import data_converter

    # Payloads encrypted as the platform's are (PAYLOAD_ENCRYPTION_KEYS): the comparison is of
    # the procedure, not of the data converter.
    client = await Client.connect(
        os.environ.get("TEMPORAL_ADDRESS", "localhost:7233"),
        namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"),
        data_converter=data_converter(Settings(_env_file=None)),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(
        client,
        task_queue=os.environ.get("TEMPORAL_TASK_QUEUE", "bench-bare"),
        workflows=[BareWorkflow, IrreducibleWorkflow],
        activities=[noop],
        graceful_shutdown_timeout=timedelta(seconds=5),
    )
    async with worker:
        print(READY, file=sys.stderr, flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the SDK's runtime threads can abort interpreter teardown (see starter.py)
