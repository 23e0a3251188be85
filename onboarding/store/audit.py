"""The audit log: the one place that writes it.

Every decision (applied or refused), every step, every change to the world and every failed
activity attempt is one row. The entry id, chosen by the writer, makes a retried write harmless
(`ON CONFLICT DO NOTHING`); the database refuses UPDATE, DELETE and TRUNCATE (migration 0001).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import asyncpg

from onboarding.store.text import storable

Result = Literal["applied", "refused", "succeeded", "failed"]


@dataclass(frozen=True)
class Entry:
    entry_id: str
    application_id: str | None
    workflow_id: str | None
    action: str
    result: Result
    actor: str = "platform"
    reason: str = ""
    details: dict[str, object] = field(default_factory=dict)


_INSERT = """INSERT INTO audit_log (entry_id, application_id, workflow_id, actor, action, result,
                                    reason, details)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (entry_id) DO NOTHING"""


def _row(e: Entry) -> tuple:
    # Details as JSON can hold: dates and the like as their text.
    details = storable(json.loads(json.dumps(e.details, default=str)))
    return (e.entry_id, e.application_id, e.workflow_id, storable(e.actor), e.action, e.result,
            storable(e.reason) or None, details)


async def append(db: asyncpg.Pool | asyncpg.Connection, entries: Sequence[Entry]) -> None:
    """Write `entries` in their order (the log's `seq` follows it within one transaction)."""
    if len(entries) == 1:
        await db.execute(_INSERT, *_row(entries[0]))
    elif entries:
        await db.executemany(_INSERT, [_row(e) for e in entries])



async def find(db: asyncpg.Pool | asyncpg.Connection, entry_id: str) -> Entry | None:
    """The line of `entry_id`, if it is written."""
    row = await db.fetchrow("""SELECT entry_id, application_id, workflow_id, action, result, actor,
                                      COALESCE(reason, '') AS reason, details
                                 FROM audit_log WHERE entry_id = $1""", entry_id)
    return Entry(**dict(row)) if row is not None else None
