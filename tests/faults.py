"""What the fault tests share: the worker as a real process, private servers to stop and start,
and the search for a plaintext API key in everything the platform keeps.

Everything here listens on, and talks to, the loopback interface only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import asyncpg
from google.protobuf.message import Message as Proto
from pydantic import BaseModel, SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

import worker
from onboarding.core.config import Settings
from onboarding.devstack.embedded import wheel_binary
from onboarding.temporal import search_attributes as sa
from onboarding.temporal.client import connect
from tests.conftest import free_port, notice_id

WORKER_SCRIPT = Path(worker.__file__).resolve()


# --- the worker as its own process -------------------------------------------------------------


def _env_value(value: Any) -> str:
    """A setting as pydantic-settings reads it back from the environment."""

    def plain(v: Any) -> Any:
        if isinstance(v, SecretStr):
            return v.get_secret_value()
        if isinstance(v, BaseModel):
            return plain(v.model_dump())
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple | set | frozenset):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    value = plain(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)  # complex settings are read as JSON
    return str(value)


def worker_environment(settings: Settings) -> dict[str, str]:
    """The worker's environment: every setting that has a value, whatever settings exist.

    Built from `Settings.model_fields`, so a setting added later (payload encryption keys, ...)
    reaches the worker without this function knowing of it. Variables of the calling process
    that name a setting are left out: only `settings` speaks.
    """
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is not None:
            env[name.upper()] = _env_value(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class WorkerProcess:
    """`python worker.py` in a subprocess, killed and restarted at will; all it writes is kept."""

    def __init__(self, settings: Settings, log_dir: Path, name: str = "worker") -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.name = name
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # Killed from other threads too (the SMTP server's): start and kill one at a time.
        self._lock = threading.Lock()

    @property
    def log_files(self) -> list[Path]:
        return sorted(self.log_dir.glob(f"{self.name}-*.log"))

    def start(self) -> None:
        with self._lock:
            assert not self.running, "the worker is already running"
            self.starts += 1
            with open(self.log_dir / f"{self.name}-{self.starts:03d}.log", "wb") as log:
                # In a directory of its own, so that no `.env` of the checkout is read.
                self.process = subprocess.Popen(
                    [sys.executable, str(WORKER_SCRIPT)],
                    env=worker_environment(self.settings),
                    cwd=self.log_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> bool:
        """SIGKILL, as the kernel's OOM killer or a lost machine would; True if it was running."""
        with self._lock:
            process = self.process
            if process is None or process.poll() is not None:
                return False
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return True

    def stop(self, timeout: float = 15) -> None:
        if not self.running:
            return
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.log_files)


# --- what the audit log says ------------------------------------------------------------------


def record_of_a_whole_run(licence: bool) -> list[tuple[str, str]]:
    """What the audit log says of a whole run: each step entered and whom it waited on, and
    each decision applied, in the order the workflow wrote them."""
    decided = {"pre_verification_reviewer": "pre_verification",
               "market_data_sales": "market_data_licence", "platform_team": "platform_contract",
               "final_approver": "final_approval"}
    entries = [("step_entered", "")]
    for role in ["pre_verification_reviewer", "market_data_sales", "platform_team",
                 "final_approver"]:
        if role != "market_data_sales" or licence:
            entries += [("step_entered", role), ("applied", decided[role])]
    return entries + [
        ("step_entered", "applicant"), ("applied", "sandbox_testing_complete"),
        ("step_entered", "platform_team"), ("applied", "sandbox_verification"),
        ("step_entered", "final_approver"), ("applied", "production_switch"),
        ("step_entered", "")]


async def steps_on_record(db: asyncpg.Pool | asyncpg.Connection,
                          application_id: str) -> list[tuple[str, str]]:
    """The steps entered and the decisions applied, as `record_of_a_whole_run` lists them."""
    rows = await db.fetch(
        """SELECT action, outcome, details->>'waiting_on' AS waiting_on FROM audit_log
           WHERE application_id = $1 AND entry_id ~ '^[^/]+/[^/]+/[0-9]+$'
             AND (action = 'step_entered' OR outcome = 'applied')
           ORDER BY split_part(entry_id, '/', 3)::int""", application_id)
    return [("step_entered", r["waiting_on"]) if r["action"] == "step_entered"
            else ("applied", r["action"]) for r in rows]


# --- a private Temporal dev server, persisted to a file ----------------------------------------


class DevServer:
    """`temporal server start-dev` on a file of our own, to stop and start on the same port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.db_file = directory / "temporal.db"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        args = [
            wheel_binary("temporal"), "server", "start-dev",
            "--db-filename", str(self.db_file),
            "--ip", "127.0.0.1",
            "--port", str(self.port),
            "--headless",
            "--log-level", "warn",
        ]
        for key in sa.ALL:
            args += ["--search-attribute", f"{key.name}=Keyword"]
        log = open(self.directory / f"temporal-{self.starts}.log", "wb")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    async def connect(self, settings: Settings, timeout: float = 60) -> Client:
        """A client of this server as the platform makes them (its data converter included)."""
        ours = settings.model_copy(update={"temporal_address": self.address})
        async with asyncio.timeout(timeout):
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise AssertionError("the dev server exited: " + self.log()[-3000:])
                try:
                    client = await connect(ours)
                    await client.count_workflows()  # the namespace answers, not just the port
                    return client
                except Exception:
                    await asyncio.sleep(0.2)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, and wait until it has exited (its state flushed to the file)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("the dev server did not stop on SIGTERM") from None

    def log(self) -> str:
        return "".join(p.read_text(errors="replace")
                       for p in sorted(self.directory.glob("temporal-*.log")))


# --- looking for a plaintext key ---------------------------------------------------------------


KEY_IN_MAIL = re.compile(r"(?:API key|API 키): (\S+)")


def mail_body(message: Message) -> str:
    return message.get_payload(decode=True).decode()


def delivered_key(message: Message) -> str | None:
    found = KEY_IN_MAIL.search(mail_body(message))
    return found[1] if found else None


def key_mails(messages: Iterable[Message]) -> dict[str, list[Message]]:
    """Key-delivery mail by notice id (`<application>/key/<environment>/delivery`)."""
    found: dict[str, list[Message]] = {}
    for m in messages:
        if re.fullmatch(r".+/key/(sandbox|production)/delivery", notice_id(m)):
            found.setdefault(notice_id(m), []).append(m)
    return found


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass
class Haystack:
    """Everything the platform keeps, by where it was found, to be searched for keys."""

    texts: dict[str, bytes] = field(default_factory=dict)

    def add(self, where: str, content: str | bytes) -> None:
        data = content.encode(errors="surrogatepass") if isinstance(content, str) else content
        self.texts[where] = self.texts.get(where, b"") + data + b"\n"

    def where(self, needle: str) -> list[str]:
        raw = needle.encode()
        return [where for where, text in self.texts.items() if raw in text]


def payloads_in(message: Proto) -> Iterator[Payload]:
    """Every Payload anywhere inside a protobuf message (history events, failures, ...)."""
    if isinstance(message, Payload):
        yield message
        return
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        if descriptor.is_repeated:
            if descriptor.message_type.GetOptions().map_entry:
                items = value.values()
                if descriptor.message_type.fields_by_name["value"].message_type is None:
                    continue
            else:
                items = value
            for item in items:
                yield from payloads_in(item)
        else:
            yield from payloads_in(value)


async def gather_workflow_records(client: Client, workflow_ids: Iterable[str],
                                  haystack: Haystack) -> int:
    """Add each workflow's full history (raw, and decoded when a codec is set) and its search
    attributes to `haystack`; returns how many payloads were looked at."""
    codec = client.data_converter.payload_codec
    count = 0
    for workflow_id in workflow_ids:
        handle = client.get_workflow_handle(workflow_id)
        history = await handle.fetch_history()
        haystack.add(f"history of {workflow_id} (JSON)", history.to_json())
        for event in history.events:
            where = f"history of {workflow_id}, event {event.event_id} ({event.event_type})"
            haystack.add(where, event.SerializeToString())
            payloads = list(payloads_in(event))
            count += len(payloads)
            for payload in payloads:
                haystack.add(where, payload.data)
            if codec and payloads:
                for payload in await codec.decode(payloads):
                    haystack.add(f"{where}, decoded", payload.data)
        description = await handle.describe()
        haystack.add(f"search attributes of {workflow_id}",
                     description.raw_description.workflow_execution_info.search_attributes
                     .SerializeToString())
        haystack.add(f"search attributes of {workflow_id}",
                     repr(description.typed_search_attributes))
        haystack.add(f"memo of {workflow_id}",
                     description.raw_description.workflow_execution_info.memo.SerializeToString())
    return count


async def gather_database(conn: asyncpg.Connection, haystack: Haystack) -> dict[str, int]:
    """Every row of every table of the database's own schemas, as JSON; rows per table."""
    tables = await conn.fetch(
        """SELECT table_schema, table_name FROM information_schema.tables
           WHERE table_type = 'BASE TABLE'
             AND table_schema NOT IN ('pg_catalog', 'information_schema')
           ORDER BY 1, 2""")
    counts = {}
    for t in tables:
        name = f'"{t["table_schema"]}"."{t["table_name"]}"'
        rows = await conn.fetch(f"SELECT row_to_json(t)::text AS row FROM {name} t")
        counts[name] = len(rows)
        haystack.add(f"table {name}", "\n".join(r["row"] for r in rows))
    return counts
