"""Looking for a plaintext API key in everything the platform keeps: workflow histories (raw
and decoded), search attributes, memos, database tables, logs and mail."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message

import asyncpg
from google.protobuf.message import Message as Proto
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from tests.support.inbox import body, notice_id

KEY_IN_MAIL = re.compile(r"(?:API key|API 키): (\S+)")


def delivered_key(message: Message) -> str | None:
    found = KEY_IN_MAIL.search(body(message))
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
