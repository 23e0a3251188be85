"""The worker killed with SIGKILL, again and again, while applications move and keys are issued.

Fault injected: `python worker.py` runs as a subprocess and is killed (-9) at random moments,
most of them aimed at key issuance: when a final approval or production switch has just been
applied, when a key is in the database but its delivery mail is not marked sent, and while
the SMTP server receives a key's delivery mail (just before and just after it answers 250, the
window where a resend cannot be avoided). Each time, a new worker process is started. The
random choices come from a seed printed with every failure (`FAULT_SEED=<n>` replays them).

What it proves: every application still reaches production, through every step; each has
exactly one sandbox and one production key, each key has exactly one delivery notice in the
outbox, and every copy of a delivery mail that reached the SMTP server (a resend after a crash
between the server's 250 and the outbox update) carries the same Message-ID and the same key,
whose hash is the one kept. Then the plaintext-key scan: none of the delivered keys appears in
any workflow history (raw and decoded), search attribute, database table or worker log.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.message import Message

import asyncpg
import pytest

import starter
from onboarding.domain.admission import prepare_subscription
from onboarding.domain.models import ApplicationStatus, SubscriptionApplication
from onboarding.temporal.client import connect
from tests.support import data
from tests.support.drive import PATH, approval
from tests.support.eventually import eventually
from tests.support.inbox import Inbox, body, notice_id
from tests.support.leaks import (
    Haystack,
    delivered_key,
    gather_database,
    gather_workflow_records,
    key_hash,
    key_mails,
)
from tests.support.records import record_of_a_whole_run, steps_on_record
from tests.support.sealing import sealing
from tests.support.servers import serve_smtp
from tests.support.worker_process import WorkerProcess

APPLICATIONS = [["account-balance"]] * 4 + [["stock-quotes", "account-balance"]]
MAX_KILLS = 30
KILLING_FOR = 38.0  # seconds at most; then the applications may finish in peace
RUN_TIMEOUT = 90.0


class KillingInbox(Inbox):
    """The SMTP server: keeps every message, and may kill the worker while a key's delivery
    mail arrives, before answering 250 (the worker never hears the answer) or just after."""

    def __init__(self, kill, application_ids: list[str]) -> None:
        super().__init__()
        self.kill = kill
        self.ours = set(application_ids)

    async def handle_DATA(self, server, session, envelope) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        notice = notice_id(self.messages[-1])
        # Only this run's applications' keys: the relay also sends what earlier tests left.
        if "/key/" in notice and notice.split("/", 1)[0] in self.ours:
            copy = sum(notice_id(m) == notice for m in self.messages)
            if self.kill.rng.random() < 0.5:
                self.kill("smtp, before its 250", target=f"{notice}#{copy}",
                          chance=0.8 if copy == 1 else 0.3)
            else:
                self.kill("smtp, after its 250", target=f"{notice}#{copy}",
                          chance=0.8 if copy == 1 else 0.3,
                          after=self.kill.rng.uniform(0.001, 0.02))
        return answer


@dataclass
class KilledRun:
    seed: int
    applications: list[SubscriptionApplication]
    statuses: dict[str, ApplicationStatus]
    mail: list[Message]
    worker: WorkerProcess
    kills: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def __str__(self) -> str:
        return (f"seed {self.seed} (FAULT_SEED={self.seed} replays it): {sum(self.kills.values())}"
                f" kills {dict(self.kills)}, {self.worker.starts} worker starts, "
                f"{self.seconds:.1f} s")


class Killer:
    """Kills the worker when told to (from any thread) with the given chance, at most once per
    target, at most MAX_KILLS times, and only during the first KILLING_FOR seconds; the
    supervisor loop starts it again."""

    def __init__(self, worker: WorkerProcess, rng: random.Random) -> None:
        self.worker = worker
        self.rng = rng
        self.lock = threading.Lock()
        self.kills: Counter = Counter()
        self.until = time.monotonic() + KILLING_FOR
        self.targets: set[str] = set()

    def __call__(self, why: str, *, target: str | None = None, chance: float = 1.0,
                 after: float = 0.0) -> None:
        with self.lock:
            if target is not None:
                if target in self.targets:
                    return
                self.targets.add(target)
            if (sum(self.kills.values()) >= MAX_KILLS or time.monotonic() > self.until
                    or self.rng.random() > chance):
                return
        if after:
            threading.Timer(after, self._kill, (why,)).start()
        else:
            self._kill(why)

    def _kill(self, why: str) -> None:
        if self.worker.kill():
            with self.lock:
                self.kills[why] += 1


async def supervise(worker: WorkerProcess, killer: Killer, rng: random.Random,
                    done: asyncio.Event) -> None:
    """Restart the worker whenever it is dead; between triggered kills, kill at random."""
    next_random = time.monotonic() + rng.uniform(3, 6)
    while not done.is_set():
        if not worker.running:
            await asyncio.sleep(rng.uniform(0, 0.3))
            worker.start()
        elif time.monotonic() > next_random:
            killer("random")
            next_random = time.monotonic() + rng.uniform(3, 6)
        await asyncio.sleep(0.02)


async def watch_key_issuance(pool: asyncpg.Pool, killer: Killer, app_ids: list[str],
                             rng: random.Random, done: asyncio.Event) -> None:
    """Aim kills at key issuance, as seen in the database: a key decision just applied (the
    issuance is starting), a key on record whose delivery is not yet marked sent."""
    while not done.is_set():
        for row in await pool.fetch(
            """SELECT a.application_id || '/' || a.action AS target FROM audit_trail a
               WHERE a.application_id = ANY($1) AND a.outcome = 'applied'
                 AND a.action IN ('final_approval', 'production_switch')""", app_ids):
            if row["target"] not in killer.targets:
                killer("key decision applied", target=row["target"], chance=0.8,
                       after=rng.uniform(0, 0.3))
        for row in await pool.fetch(
            """SELECT k.issuance_id FROM api_keys k
               JOIN notices n ON n.notice_id = k.issuance_id || '/delivery'
               WHERE k.application_id = ANY($1) AND n.status = 'pending'""", app_ids):
            killer("key on record, mail pending", target=row["issuance_id"], chance=0.8)
        await asyncio.sleep(0.01)


async def drive_to_production(client, pool: asyncpg.Pool, worker_settings,
                              application: SubscriptionApplication) -> ApplicationStatus:
    """Every decision, each sent once its step is on record (the status query needs a live
    worker, which this test keeps killing: the applications table does not)."""
    handle = await starter.start_application(client, worker_settings, application)
    market_data = any(a == "stock-quotes" for a in application.requested_apis)
    for step in PATH:
        if step == "market_data_licence" and not market_data:
            continue
        await until_step(pool, application.application_id, step)
        name, payload = approval(step, application)
        await handle.signal(name, payload)
    return await asyncio.wait_for(handle.result(), RUN_TIMEOUT)


async def until_step(pool: asyncpg.Pool, application_id: str, step: str) -> None:
    async def at_step() -> bool:
        last = await pool.fetchval(
            "SELECT current_step FROM applications WHERE application_id = $1", application_id)
        assert last == step, f"last: {last}"
        return True

    await eventually(at_step, RUN_TIMEOUT, f"{application_id} reaching {step}", interval=0.05)


@pytest.fixture(scope="module")
async def killed_run(dev_server, settings, pool, tmp_path_factory) -> KilledRun:
    seed = int(os.environ.get("FAULT_SEED") or random.SystemRandom().randrange(2**32))
    print(f"worker-kill run: FAULT_SEED={seed}")
    rng = random.Random(seed)
    applications = [prepare_subscription(data.subscription_form(apis), settings)
                    for apis in APPLICATIONS]
    app_ids = [a.application_id for a in applications]

    worker = WorkerProcess(settings, tmp_path_factory.mktemp("killed-worker"))
    killer = Killer(worker, rng)
    inbox = KillingInbox(killer, app_ids)
    smtp = serve_smtp(inbox)
    worker.settings = settings.model_copy(update={
        "temporal_address": dev_server.client.service_client.config.target_host,
        "temporal_task_queue": f"kill-{seed}",
        "smtp_port": smtp.port,
        "log_format": "json",
        "metrics_port": 0,
    })
    client = sealing(await connect(worker.settings))  # decisions sealed as typed
    done = asyncio.Event()
    started = time.monotonic()
    worker.start()
    helpers = [asyncio.create_task(supervise(worker, killer, rng, done)),
               asyncio.create_task(watch_key_issuance(pool, killer, app_ids, rng, done))]
    try:
        async with asyncio.timeout(RUN_TIMEOUT * 2):
            finished = await asyncio.gather(
                *(drive_to_production(client, pool, worker.settings, a) for a in applications))
        # No more kills: a key's delivery the last of them put off goes out at its next
        # attempt (the relay's back-off), which may come after the last application's end.
        done.set()
        await asyncio.gather(*helpers, return_exceptions=True)
        killer.until = 0.0  # the mail server kills no more either

        async def delivered() -> bool:
            if not worker.running:  # killed last, by a kill already under way
                worker.start()
            return await deliveries_sent(pool, app_ids)

        await eventually(delivered, 120, "every key delivery sent once the kills stopped")
    finally:
        done.set()
        await asyncio.gather(*helpers, return_exceptions=True)
        await asyncio.sleep(0.5)  # a last notice may still be on its way
        worker.stop()
        smtp.stop()
    run = KilledRun(seed=seed, applications=applications,
                    statuses={s.application_id: s for s in finished},
                    mail=[m for m in inbox.messages if notice_id(m).split("/", 1)[0] in app_ids],
                    worker=worker, kills=killer.kills, seconds=time.monotonic() - started)
    print(f"worker-kill run: {run}")
    return run


async def test_every_application_reaches_production_with_each_key_once(killed_run, pool):
    run = killed_run
    app_ids = [a.application_id for a in run.applications]
    assert sum(run.kills.values()) >= 10, f"too few kills to mean anything: {run}"
    assert {s.outcome for s in run.statuses.values()} == {"in_production"}, run

    # Every step on the record once, in the workflow's order, and every decision applied.
    for application in run.applications:
        status = run.statuses[application.application_id]
        licence = "stock-quotes" in application.requested_apis
        assert [(d.decision, d.applied) for d in status.decisions] == [
            (approval(s, application)[0], True) for s in PATH
            if s != "market_data_licence" or licence], (run, status.decisions)
        assert await steps_on_record(pool, application.application_id) == \
            record_of_a_whole_run(licence), run

    keys = await pool.fetch(
        """SELECT application_id, environment, issuance_id, key_hash, status FROM api_keys
           WHERE application_id = ANY($1)""", app_ids)
    assert Counter((k["application_id"], k["environment"]) for k in keys) == Counter(
        {(a, e): 1 for a in app_ids for e in ("sandbox", "production")}), run
    assert {k["status"] for k in keys} == {"active"}

    deliveries = await pool.fetch(
        """SELECT notice_id, status FROM notices
           WHERE application_id = ANY($1) AND template = 'api_key_delivery'""", app_ids)
    assert sorted(d["notice_id"] for d in deliveries) == \
        sorted(f"{k['issuance_id']}/delivery" for k in keys), run
    assert {d["status"] for d in deliveries} == {"sent"}
    issued = await pool.fetchval(
        """SELECT count(*) FROM audit_trail WHERE application_id = ANY($1)
             AND action = 'api_key_issued'""", app_ids)
    assert issued == len(keys), run

    # Each delivery mail reached the SMTP server at least once; every copy is the same mail.
    mails = key_mails(run.mail)
    hashes = {f"{k['issuance_id']}/delivery": bytes(k["key_hash"]) for k in keys}
    assert set(mails) == set(hashes), run
    resends = {}
    for notice, copies in mails.items():
        assert len({m["Message-ID"] for m in copies}) == 1, (run, notice)
        assert len({delivered_key(m) for m in copies}) == 1, (run, notice)
        assert key_hash(delivered_key(copies[0])) == hashes[notice], (run, notice)
        if len(copies) > 1:
            resends[notice] = len(copies) - 1
    # Other notices: sent at least once each, and a resend is the same message.
    for notice, copies in _by_notice(run.mail).items():
        assert len({m["Message-ID"] for m in copies}) == 1, (run, notice)
    others = {n: len(c) - 1 for n, c in _by_notice(run.mail).items()
              if len(c) > 1 and n not in mails}
    print(f"worker-kill run: key delivery resends {resends or 'none'}; "
          f"other notices resent {others or 'none'}")


async def deliveries_sent(pool: asyncpg.Pool, app_ids: list[str]) -> bool:
    return not await pool.fetchval(
        """SELECT count(*) FROM notices WHERE application_id = ANY($1)
             AND template = 'api_key_delivery' AND status <> 'sent'""", app_ids)


def _by_notice(messages: list[Message]) -> dict[str, list[Message]]:
    found: dict[str, list[Message]] = {}
    for m in messages:
        found.setdefault(notice_id(m), []).append(m)
    return found


async def test_no_plaintext_key_anywhere_after_the_run(killed_run, pool):
    run = killed_run
    keys = {delivered_key(m) for copies in key_mails(run.mail).values() for m in copies}
    assert len(keys) == 2 * len(run.applications), run

    haystack = Haystack()
    client = sealing(await connect(run.worker.settings))
    payloads = await gather_workflow_records(client, run.statuses, haystack)
    async with pool.acquire() as conn:
        tables = await gather_database(conn, haystack)
    logs = run.worker.logs()
    haystack.add("worker logs", logs)
    for m in run.mail:
        if notice_id(m).rsplit("/", 1)[-1] != "delivery":
            haystack.add(f"mail {notice_id(m)}", m.as_string() + body(m))

    # We looked in the right places: the applications' records are there, readable (decoded,
    # when payloads are encrypted), and a key would be found where it is.
    assert payloads > 100 and tables['"public"."api_keys"'] >= len(keys)
    assert "api key issued" in logs and run.applications[0].application_id in logs
    assert haystack.where(run.applications[0].organisation.legal_name)
    control = Haystack()
    control.add("a delivery mail", body(next(iter(key_mails(run.mail).values()))[0]))
    assert [control.where(key) for key in keys].count(["a delivery mail"]) == 1
    found = {key[:12] + "...": haystack.where(key) for key in keys}
    assert not any(found.values()), {k: w for k, w in found.items() if w}
