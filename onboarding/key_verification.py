"""Key verification for the API gateway: is this presented key valid, and for what?

Only the key's SHA-256 is on record (onboarding/keys.py), so a presented key is hashed and
looked up by its hash. The lookup cannot tell an attacker anything about other keys: a key has
full entropy, so knowing that some hash is or is not on record says nothing about a guess's
neighbours. What could differ is the work after the lookup; it is the same whether the key
exists or not: the stored hash (or a fixed stand-in) is compared in constant time, and the
verdict is built the same way.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

import asyncpg

from onboarding.keys import key_hash
from onboarding.models import Environment, Model

_STAND_IN = bytes(32)
MAX_KEY_LENGTH = 200


class KeyVerdict(Model):
    valid: bool
    reason: str = ""
    business_registration_number: str | None = None
    environment: Environment | None = None
    apis: list[str] = []
    key_id: str | None = None
    expires_at: datetime | None = None


_LOOKUP = """SELECT key_id::text, key_hash, business_registration_number, environment, scopes,
                    status, expires_at
             FROM api_keys WHERE key_hash = $1"""


async def verify_key(pool: asyncpg.Pool, presented: str, now: datetime | None = None) -> KeyVerdict:
    now = now or datetime.now(UTC)
    digest = key_hash(presented[:MAX_KEY_LENGTH])
    row = await pool.fetchrow(_LOOKUP, digest)
    stored = bytes(row["key_hash"]) if row else _STAND_IN
    matches = hmac.compare_digest(stored, digest) and row is not None
    if not matches:
        return KeyVerdict(valid=False, reason="unknown key")
    assert row is not None
    if row["status"] != "active":
        return KeyVerdict(valid=False, reason="revoked", key_id=row["key_id"])
    if row["expires_at"] <= now:
        return KeyVerdict(valid=False, reason="expired", key_id=row["key_id"])
    return KeyVerdict(
        valid=True,
        business_registration_number=row["business_registration_number"],
        environment=row["environment"],
        apis=list(row["scopes"]),
        key_id=row["key_id"],
        expires_at=row["expires_at"],
    )
