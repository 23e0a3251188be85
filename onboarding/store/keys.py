"""API keys on record: issued (a hash and a display prefix, never the key), revoked, and
verified for the API gateway.

Key verification: is this presented key valid, and for what?

Only the key's SHA-256 is on record (onboarding/domain/keys.py), so a presented key is hashed and
looked up by its hash, in the unique index on `api_keys.key_hash`.

Timing. Whether a key exists must not show in how long the answer takes, beyond what the
answer says anyway:

- The lookup compares hashes, never the presented key with a stored one, so the time the
  index search takes depends on SHA-256 of the guess: it cannot tell a guesser that a guess is
  "closer" to a real key. Knowing even a stored hash would not help (a key has 256 bits of
  entropy and SHA-256 has no known preimage attack).
- One statement, one row, one code path, whether the key exists or not: the presented hash is
  the left side of a LEFT JOIN, so an unknown key comes back as a row of NULLs, and the verdict
  is built from that row by the same code as for a known key, without an early return.
- What is left differs by microseconds: for a key on record, PostgreSQL reads its row and its
  organisation's, and a few more values are decoded and validated. Removing that would mean
  reading a stand-in row for every unknown key; it is not worth it, because the difference
  can only tell someone who already holds a key that it is on record (a revoked or expired
  key). The benchmark measures it (`python -m bench.benchmark`, phase "gateway", from the
  database).
- An earlier version also compared the stored hash (or a stand-in for a missing row) with the
  presented one using `hmac.compare_digest`. That comparison could only ever succeed for a row
  the index had just found by that very hash, so it added work and no protection: removed.

Reasons. A refusal says why: "unknown key", "revoked" or "expired". Only the gateway sees it
(this is an internal service), and only someone presenting the whole key can get "revoked" or
"expired", so the distinction tells nothing about keys the presenter does not hold. It lets the
gateway tell a fintech that its key expired or was revoked rather than that it is wrong, and
lets operations see revoked keys still in use (by key id). A refusal grants nothing: no
organisation, environment or APIs, only the key id when the key is on record.

The endpoint answers from memory (onboarding/services/key_cache.py): it keeps the verdicts this
lookup gave, by key hash, and forgets one as soon as PostgreSQL notifies a change to what it was
built from (`CHANGES_CHANNEL`, migration 0020). `verify_key` here reads the current rows every
time: the authoritative answer, for Python callers and for the cache's misses (`look_up`).

THE RULE for whoever changes `_LOOKUP`: every table it reads (today api_keys and organisations;
later, suspensions) must notify `CHANGES_CHANNEL`, with the hashes of the keys whose verdict a
change may alter, from a trigger like those of migration 0020. Otherwise the replicas see that
table's changes only when their answers age out (KEY_CACHE_MAX_AGE_SECONDS).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import asyncpg

from onboarding.domain.keys import display_prefix, key_hash
from onboarding.domain.models import Environment, KeySummary, Model

Db = asyncpg.Pool | asyncpg.Connection
_COLUMNS = "key_id, environment, display_prefix, scopes, expires_at, status"

# Issued keys are 57 characters; anything this long cannot be one. Hashing at most this much
# bounds the work whatever is presented.
MAX_KEY_LENGTH = 200

Refusal = Literal["unknown key", "revoked", "expired"]


class KeyHolder(Model):
    business_registration_number: str
    name: str


class KeyVerdict(Model):
    valid: bool
    reason: Refusal | Literal[""] = ""
    organisation: KeyHolder | None = None
    environment: Environment | None = None
    apis: list[str] = []
    key_id: str | None = None
    expires_at: datetime | None = None


# What `_LOOKUP` reads is notified here, by key hash (migration 0020 and THE RULE above).
CHANGES_CHANNEL = "api_key_changes"
# A notification meaning "forget every verdict" (TRUNCATE).
FORGET_ALL = "*"

_LOOKUP = """SELECT k.key_id::text, k.business_registration_number, o.legal_name,
                    k.environment, k.scopes, k.status, k.expires_at
             FROM (VALUES ($1::bytea)) AS presented (key_hash)
             LEFT JOIN api_keys k ON k.key_hash = presented.key_hash
             LEFT JOIN organisations o
                    ON o.business_registration_number = k.business_registration_number"""


def _refusal(row: asyncpg.Record, now: datetime) -> Refusal | Literal[""]:
    if row["key_id"] is None:
        return "unknown key"
    if row["status"] != "active":
        return "revoked"
    if row["expires_at"] <= now:
        return "expired"
    return ""


async def look_up(db: Db, presented_hash: bytes) -> asyncpg.Record:
    """The one row of a key hash: the key's and its organisation's, or NULLs when unknown."""
    return await db.fetchrow(_LOOKUP, presented_hash)


def verdict_of(row: asyncpg.Record, now: datetime) -> KeyVerdict:
    """The verdict on a `look_up` row at `now`: one code path whether the key exists or not."""
    reason = _refusal(row, now)
    valid = reason == ""
    return KeyVerdict(
        valid=valid,
        reason=reason,
        organisation=KeyHolder(business_registration_number=row["business_registration_number"],
                               name=row["legal_name"]) if valid else None,
        environment=row["environment"] if valid else None,
        apis=list(row["scopes"]) if valid else [],
        key_id=row["key_id"],
        expires_at=row["expires_at"] if valid else None,
    )


async def verify_key(pool: asyncpg.Pool, presented: str, now: datetime | None = None) -> KeyVerdict:
    """The verdict on a presented key from the current rows (no cache)."""
    row = await look_up(pool, key_hash(presented[:MAX_KEY_LENGTH]))
    return verdict_of(row, now or datetime.now(UTC))


# --- issuing and revoking --------------------------------------------------------------------


def _summary(row: asyncpg.Record) -> KeySummary:
    return KeySummary(key_id=str(row["key_id"]), environment=row["environment"],
                      display_prefix=row["display_prefix"], scopes=list(row["scopes"]),
                      expires_at=row["expires_at"], status=row["status"])


async def issue(db: Db, *, issuance_id: str, application_id: str,
                business_registration_number: str, environment: Environment,
                scopes: list[str], valid_days: int, key: str) -> tuple[KeySummary, bool]:
    """The key of `issuance_id` on record, by its hash and display prefix; with True when this
    call issued it, False when it was on record already (a retried issuance: the same key,
    derived again from the same issuance id). Run it in a transaction."""
    row = await db.fetchrow(
        f"""INSERT INTO api_keys (key_id, issuance_id, application_id,
                business_registration_number, environment, key_hash, display_prefix, scopes,
                expires_at)
            VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (issuance_id) DO NOTHING RETURNING {_COLUMNS}""",
        issuance_id, application_id, business_registration_number, environment,
        key_hash(key), display_prefix(key), scopes,
        datetime.now(UTC) + timedelta(days=valid_days),
    )
    if row is not None:
        return _summary(row), True
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE issuance_id = $1",
                            issuance_id)
    return _summary(row), False


async def issued(db: Db, issuance_id: str) -> asyncpg.Record | None:
    """The key row of an issuance, its hash included (to check a re-derived key against)."""
    return await db.fetchrow(
        f"SELECT {_COLUMNS}, key_hash FROM api_keys WHERE issuance_id = $1", issuance_id)


async def revoke(db: Db, application_id: str, reason: str) -> list[KeySummary]:
    """Every active key of the application revoked; those revoked now."""
    rows = await db.fetch(
        f"""UPDATE api_keys SET status = 'revoked', revoked_at = now(), revoked_reason = $2
            WHERE application_id = $1 AND status = 'active' RETURNING {_COLUMNS}""",
        application_id, reason)
    return [_summary(r) for r in rows]


async def of_application(db: Db, application_id: str) -> list[KeySummary]:
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM api_keys WHERE application_id = $1 ORDER BY issued_at",
        application_id)
    return [_summary(r) for r in rows]


# --- keys whose process is gone (the key-reconciliation schedule) --------------------------------


class HeldKey(Model):
    """An active key, the process that owns it, and whom to tell of it."""

    key_id: str
    application_id: str
    environment: Environment
    display_prefix: str
    owner_workflow_id: str  # the process that owns the key
    contacts: list[str]
    language: Literal["ko", "en"]  # of the application's notices


async def held_by_open_processes(db: Db) -> list[HeldKey]:
    """Every active key whose owner has not, on record, reached production: the keys of open
    applications (and of any that ended without revoking them). The owner is the key's
    `owner_workflow_id` when set (a process that took the key over, e.g. a live service), else
    its application's workflow; an application's own keys stay once it is in production."""
    rows = await db.fetch(
        """SELECT k.key_id::text, k.application_id, k.environment, k.display_prefix,
                  coalesce(k.owner_workflow_id, a.workflow_id) AS owner_workflow_id,
                  o.contact_emails AS contacts,
                  coalesce((SELECT n.language FROM notices n
                            WHERE n.application_id = k.application_id
                            ORDER BY n.created_at LIMIT 1), 'ko') AS language
           FROM api_keys k
           JOIN applications a ON a.application_id = k.application_id
           JOIN organisations o ON o.business_registration_number = k.business_registration_number
           WHERE k.status = 'active'
             AND NOT (k.owner_workflow_id IS NULL AND a.status = 'in_production')
           ORDER BY owner_workflow_id, k.issued_at""")
    return [HeldKey(**dict(r)) for r in rows]


async def revoke_each(db: Db, key_ids: list[str], reason: str) -> list[KeySummary]:
    """These keys revoked, those still active and still not settled; the ones revoked now.
    Checked again here, not only when they were listed: an application may have reached
    production (its commit) and its workflow completed in between."""
    rows = await db.fetch(
        f"""UPDATE api_keys k SET status = 'revoked', revoked_at = now(), revoked_reason = $2
            FROM applications a
            WHERE a.application_id = k.application_id AND k.key_id = ANY($1::uuid[])
              AND k.status = 'active'
              AND NOT (k.owner_workflow_id IS NULL AND a.status = 'in_production')
            RETURNING {', '.join('k.' + c.strip() for c in _COLUMNS.split(','))}""",
        key_ids, reason)
    return [_summary(r) for r in rows]
