"""Key verification for the API gateway: is this presented key valid, and for what?

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
  key). The benchmark measures it (`python -m bench.benchmark`, phase "gateway").
- An earlier version also compared the stored hash (or a stand-in for a missing row) with the
  presented one using `hmac.compare_digest`. That comparison could only ever succeed for a row
  the index had just found by that very hash, so it added work and no protection: removed.

Reasons. A refusal says why: "unknown key", "revoked" or "expired". Only the gateway sees it
(this is an internal service), and only someone presenting the whole key can get "revoked" or
"expired", so the distinction tells nothing about keys the presenter does not hold. It lets the
gateway tell a fintech that its key expired or was revoked rather than that it is wrong, and
lets operations see revoked keys still in use (by key id). A refusal grants nothing: no
organisation, environment or APIs, only the key id when the key is on record.

Nothing is cached: every verification reads the current row, so a key revoked a moment ago is
refused at once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import asyncpg

from onboarding.domain.keys import key_hash
from onboarding.domain.models import Environment, Model

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


async def verify_key(pool: asyncpg.Pool, presented: str, now: datetime | None = None) -> KeyVerdict:
    now = now or datetime.now(UTC)
    row = await pool.fetchrow(_LOOKUP, key_hash(presented[:MAX_KEY_LENGTH]))
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
