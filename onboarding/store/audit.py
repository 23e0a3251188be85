"""The audit log: the one place that writes it.

Every decision (applied or refused), every step, every change to the world and every failed
activity attempt is one row. The entry id, chosen by the writer, makes a retried write harmless
(`ON CONFLICT DO NOTHING`); the database refuses UPDATE, DELETE and TRUNCATE (migration 0001).

A line can be superseded, never changed: a `lines_superseded` line names lines that a later
one replaces (activities/records.py: a commit made by a workflow task Temporal discarded). The
record as it stands is the view `audit_trail` (migration 0040): the log without them.
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


SUPERSEDED = "lines_superseded"

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


async def add(db: asyncpg.Pool | asyncpg.Connection, entry: Entry) -> bool:
    """Write `entry` unless its id is taken: whether it was written."""
    return await db.fetchval(_INSERT + " RETURNING true", *_row(entry)) is not None


def same_line(written: Entry, entry: Entry) -> bool:
    """Whether `written` says what `entry` would (as stored: NUL characters replaced)."""
    return _row(written)[3:] == _row(entry)[3:]


async def since_first_of(conn: asyncpg.Connection, application_id: str,
                         entry_ids: Sequence[str]) -> list[Entry]:
    """The application's lines from the first of `entry_ids` written on, in the log's order,
    without those superseded."""
    rows = await conn.fetch(
        """SELECT entry_id, application_id, workflow_id, action, result, actor,
                  COALESCE(reason, '') AS reason, details
             FROM audit_trail
            WHERE application_id = $1
              AND seq >= (SELECT min(seq) FROM audit_log WHERE entry_id = ANY($2::text[]))
            ORDER BY seq""", application_id, list(entry_ids))
    return [Entry(**dict(r)) for r in rows]


async def find(db: asyncpg.Pool | asyncpg.Connection, entry_id: str) -> Entry | None:
    """The line of `entry_id`, if it is written."""
    row = await db.fetchrow("""SELECT entry_id, application_id, workflow_id, action, result, actor,
                                      COALESCE(reason, '') AS reason, details
                                 FROM audit_log WHERE entry_id = $1""", entry_id)
    return Entry(**dict(row)) if row is not None else None
