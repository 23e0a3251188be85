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

Suspensions (the live service: workflows/live_service.py) are rows of `key_suspensions` in
force for the key's organisation (every key of it) or its application, for every API or for
some: a key suspended for every API it grants is refused ("suspended"); one suspended for some
is valid for the others (`apis`), the suspended ones named (`suspended_apis`). A revoked or
expired key is refused as such whatever its suspensions.

The endpoint answers from memory (onboarding/services/key_cache.py): it keeps the verdicts this
lookup gave, by key hash, and forgets one as soon as PostgreSQL notifies a change to what it was
built from (`CHANGES_CHANNEL`, migration 0020). `verify_key` here reads the current rows every
time: the authoritative answer, for Python callers and for the cache's misses (`look_up`).

THE RULE for whoever changes `_LOOKUP`: every table it reads (api_keys and organisations:
migration 0020; key_suspensions: migration 0030) must notify `CHANGES_CHANNEL`, with the hashes
of the keys whose verdict a change may alter, from a trigger like those of migration 0020.
Otherwise the replicas see that table's changes only when their answers age out
(KEY_CACHE_MAX_AGE_SECONDS).
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

Refusal = Literal["unknown key", "revoked", "expired", "suspended"]


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
    # The key's APIs suspended now (partially suspended: `valid`, these left out of `apis`).
    suspended_apis: list[str] = []


# What `_LOOKUP` reads is notified here, by key hash (migration 0020 and THE RULE above).
CHANGES_CHANNEL = "api_key_changes"
# A notification meaning "forget every verdict" (TRUNCATE).
FORGET_ALL = "*"

# The suspensions in force on the key: whether one covers every API (`suspended_all`), and the
# APIs the others cover (`suspended_scopes`). NULLs for an unknown key, like the rest.
_LOOKUP = """SELECT k.key_id::text, k.business_registration_number, o.legal_name,
                    k.environment, k.scopes, k.status, k.expires_at,
                    s.suspended_all, s.suspended_scopes
             FROM (VALUES ($1::bytea)) AS presented (key_hash)
             LEFT JOIN api_keys k ON k.key_hash = presented.key_hash
             LEFT JOIN organisations o
                    ON o.business_registration_number = k.business_registration_number
             LEFT JOIN LATERAL (
                 SELECT coalesce(bool_or(ks.scopes IS NULL), false) AS suspended_all,
                        coalesce(array_agg(DISTINCT scope) FILTER (WHERE scope IS NOT NULL),
                                 '{}') AS suspended_scopes
                 FROM key_suspensions ks
                 LEFT JOIN LATERAL unnest(ks.scopes) AS scope ON true
                 WHERE ks.lifted_at IS NULL
                   AND ks.business_registration_number = k.business_registration_number
                   AND (ks.application_id IS NULL OR ks.application_id = k.application_id)
             ) s ON k.key_id IS NOT NULL"""


def _suspended(row: asyncpg.Record) -> list[str]:
    """The key's APIs a suspension in force covers."""
    if row["key_id"] is None:
        return []
    if row["suspended_all"]:
        return list(row["scopes"])
    held = set(row["suspended_scopes"] or ())
    return [api for api in row["scopes"] if api in held]


def _refusal(row: asyncpg.Record, now: datetime, suspended: list[str]) -> Refusal | Literal[""]:
    if row["key_id"] is None:
        return "unknown key"
    if row["status"] != "active":
        return "revoked"
    if row["expires_at"] <= now:
        return "expired"
    if len(suspended) == len(row["scopes"]):
        return "suspended"
    return ""


async def look_up(db: Db, presented_hash: bytes) -> asyncpg.Record:
    """The one row of a key hash: the key's, its organisation's and its suspensions', or NULLs
    when unknown."""
    return await db.fetchrow(_LOOKUP, presented_hash)


def verdict_of(row: asyncpg.Record, now: datetime) -> KeyVerdict:
    """The verdict on a `look_up` row at `now`: one code path whether the key exists or not."""
    suspended = _suspended(row)
    reason = _refusal(row, now, suspended)
    valid = reason == ""
    return KeyVerdict(
        valid=valid,
        reason=reason,
        organisation=KeyHolder(business_registration_number=row["business_registration_number"],
                               name=row["legal_name"]) if valid else None,
        environment=row["environment"] if valid else None,
        apis=[api for api in row["scopes"] if api not in suspended] if valid else [],
        key_id=row["key_id"],
        expires_at=row["expires_at"] if valid else None,
        suspended_apis=suspended if valid or reason == "suspended" else [],
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
                scopes: list[str], valid_days: int, key: str,
                expires_at: datetime | None = None,
                owner_workflow_id: str | None = None) -> tuple[KeySummary, bool]:
    """The key of `issuance_id` on record, by its hash and display prefix; with True when this
    call issued it, False when it was on record already (a retried issuance: the same key,
    derived again from the same issuance id). It expires at `expires_at` when the process
    fixed it (its own clock: a live service's renewal), else `valid_days` from now. Run it in
    a transaction."""
    row = await db.fetchrow(
        f"""INSERT INTO api_keys (key_id, issuance_id, application_id,
                business_registration_number, environment, key_hash, display_prefix, scopes,
                expires_at, owner_workflow_id)
            VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (issuance_id) DO NOTHING RETURNING {_COLUMNS}""",
        issuance_id, application_id, business_registration_number, environment,
        key_hash(key), display_prefix(key), scopes,
        expires_at or datetime.now(UTC) + timedelta(days=valid_days), owner_workflow_id,
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


async def revoke(db: Db, application_id: str, reason: str,
                 key_ids: list[str] | None = None) -> list[KeySummary]:
    """Every active key of the application revoked (or only `key_ids` of them); those revoked
    now."""
    rows = await db.fetch(
        f"""UPDATE api_keys SET status = 'revoked', revoked_at = now(), revoked_reason = $2
            WHERE application_id = $1 AND status = 'active'
              AND ($3::uuid[] IS NULL OR key_id = ANY($3::uuid[])) RETURNING {_COLUMNS}""",
        application_id, reason, key_ids)
    return [_summary(r) for r in rows]


async def take_over(db: Db, application_id: str, owner_workflow_id: str) -> None:
    """The application's active keys owned by `owner_workflow_id` (its live service): key
    reconciliation asks that process, not the application's, whether they may stay."""
    await db.execute(
        """UPDATE api_keys SET owner_workflow_id = $2
           WHERE application_id = $1 AND status = 'active'
             AND owner_workflow_id IS DISTINCT FROM $2""", application_id, owner_workflow_id)


async def change_scopes(db: Db, application_id: str, scopes: list[str]) -> None:
    """The APIs every active key of the application grants."""
    await db.execute(
        """UPDATE api_keys SET scopes = $2 WHERE application_id = $1 AND status = 'active'
             AND scopes IS DISTINCT FROM $2""", application_id, scopes)


# --- suspensions -------------------------------------------------------------------------------


async def suspend(db: Db, *, suspension_id: str, business_registration_number: str,
                  application_id: str | None, scopes: list[str] | None, cause: str,
                  reason: str, suspended_by: str) -> bool:
    """A suspension in force (once: by its id); whether this call wrote it."""
    return bool(await db.fetchval(
        """INSERT INTO key_suspensions (suspension_id, business_registration_number,
               application_id, scopes, cause, reason, suspended_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (suspension_id) DO NOTHING RETURNING true""",
        suspension_id, business_registration_number, application_id, scopes, cause, reason,
        suspended_by))


async def lift(db: Db, *, business_registration_number: str, application_id: str | None,
               cause: str, lifted_by: str, suspension_id: str | None = None) -> list[str]:
    """The suspensions in force of `cause` (on the organisation when `application_id` is
    None, else on the application; or only `suspension_id`) lifted; their ids."""
    return [r["suspension_id"] for r in await db.fetch(
        """UPDATE key_suspensions SET lifted_at = now(), lifted_by = $5
           WHERE lifted_at IS NULL AND business_registration_number = $1 AND cause = $3
             AND application_id IS NOT DISTINCT FROM $2
             AND ($4::text IS NULL OR suspension_id = $4) RETURNING suspension_id""",
        business_registration_number, application_id, cause, suspension_id, lifted_by)]


async def market_data_apis(db: Db) -> list[str]:
    return [r["api_id"] for r in await db.fetch(
        "SELECT api_id FROM api_catalogue WHERE is_market_data ORDER BY api_id")]


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


async def revoke_each(db: Db, key_ids: list[str], reason: str,
                      owner: str | None = None) -> list[KeySummary]:
    """These keys revoked, those still active and still not settled (and still owned by
    `owner`, the process found closed, when given); the ones revoked now. Checked again here,
    not only when they were listed: an application may have reached production (its commit)
    and its workflow completed in between, or its live service taken its keys over."""
    rows = await db.fetch(
        f"""UPDATE api_keys k SET status = 'revoked', revoked_at = now(), revoked_reason = $2
            FROM applications a
            WHERE a.application_id = k.application_id AND k.key_id = ANY($1::uuid[])
              AND k.status = 'active'
              AND NOT (k.owner_workflow_id IS NULL AND a.status = 'in_production')
              AND ($3::text IS NULL OR coalesce(k.owner_workflow_id, a.workflow_id) = $3)
            RETURNING {', '.join('k.' + c.strip() for c in _COLUMNS.split(','))}""",
        key_ids, reason, owner)
    return [_summary(r) for r in rows]
