"""API keys: how a key is made, and what of it may be kept.

A key is derived as HMAC-SHA256(KEY_ISSUANCE_SECRET, issuance id): 256 bits no one can guess
without the secret, and the same key again when an issuance is retried after a crash, so a
retry re-delivers the key it already issued instead of issuing a second one. The platform
keeps only SHA-256 of the key (a key has full entropy, so a fast hash suffices) and a short
display prefix that identifies it to a person without revealing it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from onboarding.domain.models import Environment

_PREFIX = {"sandbox": "cmsb", "production": "cmpr"}
DISPLAY_PREFIX_LENGTH = 12


def derive_key(secret: str, issuance_id: str, environment: Environment) -> str:
    digest = hmac.new(secret.encode(), issuance_id.encode(), hashlib.sha256).digest()
    body = base64.b32encode(digest).decode().rstrip("=").lower()
    return f"{_PREFIX[environment]}_{body}"


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_PREFIX_LENGTH]
