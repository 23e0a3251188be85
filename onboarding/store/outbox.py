"""The outbox: notices written in the transaction that decides them, sent afterwards by the
relay (onboarding/mail/relay.py).

The notice id, chosen by the writer, makes a notice written twice one notice. A notice holds
no secret: a key's delivery notice names the issuance, and the relay derives the key again
when it sends it. Writing a notice wakes the relays (`NOTIFY notices`, delivered on commit).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg

from onboarding.domain.models import Notice
from onboarding.store import catalogue
from onboarding.store.text import storable

Db = asyncpg.Pool | asyncpg.Connection
CHANNEL = "notices"

_PENDING = """SELECT notice_id, application_id, template, language, recipients, context,
                     attempts
              FROM notices WHERE status = 'pending' AND next_attempt_at <= now()"""


async def enqueue(db: Db, *, notice_id: str, application_id: str, template: str, language: str,
                  recipients: list[str], context: dict[str, Any]) -> bool:
    """The notice in the outbox, pending; False when it was there already."""
    written = await db.fetchval(
        """INSERT INTO notices (notice_id, application_id, template, language, recipients,
               context) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (notice_id) DO NOTHING RETURNING true""",
        notice_id, application_id, template, language, sorted(set(recipients)),
        storable(context))
    if written:
        await db.execute(f"NOTIFY {CHANNEL}")
    return bool(written)


async def recipients(db: Db, notice: Notice) -> list[str]:
    """The addresses a notice goes to: those it names, everyone holding its role, every member
    company's contacts."""
    found = list(notice.recipients)
    if notice.recipient_role:
        found += await catalogue.staff_holding(db, notice.recipient_role)
    if notice.to_member_companies:
        found += await catalogue.member_company_contacts(db)
    return sorted(set(found))


async def claim(conn: asyncpg.Connection, notice_id: str | None = None) -> asyncpg.Record | None:
    """A pending notice that is due, locked until the caller's transaction ends; one that
    another relay holds is skipped. `notice_id`: that notice only."""
    if notice_id is None:
        return await conn.fetchrow(
            _PENDING + " ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED")
    return await conn.fetchrow(_PENDING + " AND notice_id = $1 FOR UPDATE SKIP LOCKED",
                               notice_id)


async def mark_sent(conn: asyncpg.Connection, notice_id: str) -> None:
    await conn.execute(
        """UPDATE notices SET status = 'sent', sent_at = now(), attempts = attempts + 1,
               last_error = NULL
           WHERE notice_id = $1""", notice_id)


async def put_off(db: Db, notice_id: str, error: str, delay: timedelta) -> None:
    """A failed attempt: counted, its error kept, the next one not before `delay` from now."""
    await db.execute(
        """UPDATE notices SET attempts = attempts + 1, last_error = $2,
               next_attempt_at = now() + $3
           WHERE notice_id = $1 AND status = 'pending'""",
        notice_id, storable(error)[:1000], delay)


async def status(db: Db, notice_id: str) -> str | None:
    return await db.fetchval("SELECT status FROM notices WHERE notice_id = $1", notice_id)
