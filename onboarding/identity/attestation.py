"""Sealed decisions: an attestation binds a verified identity to one decision of one application.

A component that has verified the sender's access token (the codec server) seals the decision:
it adds `attestation`, a JWS signed with Ed25519 (EdDSA) under a sealing key that only sealing
components hold. It is not the payload encryption key, which every worker and every holder of
PAYLOAD_ENCRYPTION_KEYS has: a worker can check a seal, not make one.

    header   {"alg": "EdDSA", "kid": <sealing key id>, "typ": "onboarding-attestation+jwt"}
    claims   identity      {issuer, subject, kind, email, name, client_id}: who, verified
             application_id, decision (its name), decision_id
             content_sha256  SHA-256 of the decision's canonical JSON without `attestation`
             iat, exp (ATTESTATION_TTL_SECONDS later), jti

Keys, `kid:base64` entries, comma-separated, like PAYLOAD_ENCRYPTION_KEYS:
- SEALING_KEYS (private, 32-byte Ed25519 seeds; the codec server): the first seals, every one
  listed also verifies;
- SEALING_VERIFICATION_KEYS (public, 32 bytes; the workers): every one listed verifies.
Rotation is an overlap: add the new key first in SEALING_KEYS and to SEALING_VERIFICATION_KEYS,
keep the old public key listed while decisions sealed under it may still arrive (ATTESTATION_TTL
after the switch), then drop it. Verdicts already taken are in the histories (the check runs in
an activity), so replay never needs a retired key.

The canonical content is the JSON object with sorted keys, no spaces, UTF-8 (not ASCII-escaped).
`Sealer.seal_decision` first reads the decision with its model in the catalogue (so a malformed
one is refused before it reaches Temporal, naming each field and rule) and seals, and sends on,
the decision as that model gives it back: `decision_content(model)`, the fields set, as JSON.
The checker hashes `decision_content` of the decision as the workflow decoded it: the same
bytes, whether it came as a signal or an update, and whatever former field name it was typed
with (tests/test_identity.py checks it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ValidationError

from onboarding.core.config import keyring
from onboarding.domain.decisions import decision_type
from onboarding.identity.models import (
    ATTESTATION,
    BAD_SIGNATURE,
    EXPIRED,
    NOT_VERIFIED,
    OTHER_APPLICATION,
    OTHER_CONTENT,
    OTHER_DECISION,
    UNKNOWN_KEY,
    VerifiedIdentity,
    decision_content,
)

ALGORITHM = "EdDSA"
TYPE = "onboarding-attestation+jwt"
TTL = timedelta(minutes=15)
# Clocks of the sealer and of the worker a little apart.
LEEWAY = timedelta(seconds=30)

# --- keys --------------------------------------------------------------------------------------


_MADE = "as `python -m onboarding.identity.attestation` prints a pair"


def sealing_keys(text: str) -> dict[str, Ed25519PrivateKey]:
    """SEALING_KEYS, in order: the first seals."""
    return {kid: Ed25519PrivateKey.from_private_bytes(raw)
            for kid, raw in keyring(text, "SEALING_KEYS", "Ed25519", _MADE).items()}


def verification_keys(text: str) -> dict[str, Ed25519PublicKey]:
    """SEALING_VERIFICATION_KEYS."""
    return {kid: Ed25519PublicKey.from_public_bytes(raw)
            for kid, raw in keyring(text, "SEALING_VERIFICATION_KEYS", "Ed25519", _MADE).items()}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def public_entry(kid: str, key: Ed25519PrivateKey) -> str:
    """The SEALING_VERIFICATION_KEYS entry for a sealing key."""
    return f"{kid}:{_b64(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))}"


def new_sealing_key(kid: str) -> tuple[str, str]:
    """A fresh pair: (the SEALING_KEYS entry, the SEALING_VERIFICATION_KEYS entry)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    return f"{kid}:{_b64(private)}", public_entry(kid, key)


# --- content -----------------------------------------------------------------------------------


def canonical(content: Mapping[str, Any]) -> bytes:
    """The decision's JSON without its attestation: sorted keys, no spaces, UTF-8.
    ValueError for what JSON cannot carry (NaN, infinities)."""
    rest = {k: v for k, v in content.items() if k != ATTESTATION}
    return json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def content_digest(content: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(content)).hexdigest()


# --- sealing and checking ----------------------------------------------------------------------


class Unsealable(ValueError):
    """Why a decision is not sealed; `status` is the codec server's answer (400 or 413)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def sealed_json(content: Mapping[str, Any]) -> bytes:
    """A sealed decision's payload, as the codec server sends it on."""
    return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def _timestamp(moment: datetime) -> int:
    return int(moment.timestamp())


class Sealer:
    """Seals under the first of its keys (SEALING_KEYS); verifies under all of them."""

    def __init__(self, keys: Mapping[str, Ed25519PrivateKey], ttl: timedelta = TTL) -> None:
        if not keys:
            raise ValueError("SEALING_KEYS is empty")
        self._keys = dict(keys)
        self._kid = next(iter(self._keys))
        self.ttl = ttl

    def seal(self, identity: VerifiedIdentity, application_id: str, decision: str,
             decision_id: str, content: Mapping[str, Any], *,
             now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        claims = {
            "identity": identity.model_dump(mode="json"),
            "application_id": application_id,
            "decision": decision,
            "decision_id": decision_id,
            "content_sha256": content_digest(content),
            "iat": _timestamp(now),
            "exp": _timestamp(now + self.ttl),
            "jti": secrets.token_urlsafe(12),
        }
        return jwt.encode(claims, self._keys[self._kid], algorithm=ALGORITHM,
                          headers={"kid": self._kid, "typ": TYPE})

    def seal_decision(self, identity: VerifiedIdentity, content: Mapping[str, Any], *,
                      now: datetime | None = None) -> dict[str, Any]:
        """The decision `content` (its JSON, as sent), as the workflow will read it, sealed for
        `identity`. Unsealable (400: not a decision of the application's process, or not
        valid as sent; 413: larger than the catalogue lets that decision be, seal included)."""
        application_id, name, decision_id = (content.get(k) for k in
                                             ("application_id", "decision", "decision_id"))
        if not all(isinstance(v, str) and v for v in (application_id, name, decision_id)):
            raise Unsealable("a decision is sealed only when it carries application_id, "
                             "decision (its name) and decision_id, as strings")
        kind = decision_type(application_id, name)
        if kind is None:
            raise Unsealable(f"{name} is not a decision a person takes on {application_id} (the "
                             "Web UI lists them as its signals; so does `openapi-onboarding "
                             "decide --help`)")
        try:
            read = decision_content(kind.model.model_validate(dict(content)))
        except ValidationError as err:
            raise Unsealable(f"malformed {name}: " + "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(payload)'}: {e['msg']} [{e['type']}]"
                for e in err.errors())) from None
        try:
            read[ATTESTATION] = self.seal(identity, application_id, name, decision_id, read,
                                          now=now)
        except ValueError as err:  # NaN or infinity: not JSON the workflow could read back
            raise Unsealable(f"decision {name} is not plain JSON: {err}") from None
        size = len(sealed_json(read))
        if size > kind.max_payload_bytes:
            raise Unsealable(f"decision {name} is {size} bytes sealed; the platform takes at "
                             f"most {kind.max_payload_bytes}", status=413)
        return read

    def verifier(self) -> AttestationVerifier:
        return AttestationVerifier({kid: key.public_key() for kid, key in self._keys.items()})


class AttestationVerifier:
    """Checks seals with the public keys alone (SEALING_VERIFICATION_KEYS)."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        self._keys = dict(keys)

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def check(self, attestation: str | None, application_id: str, decision: str,
              decision_id: str, content: Mapping[str, Any], at: datetime
              ) -> VerifiedIdentity | str:
        """Who sealed this decision, or the reason (worded for the record) it does not count.
        `at`: when the decision was received (the workflow's time), not the clock now."""
        if not attestation:
            return NOT_VERIFIED
        try:
            header = jwt.get_unverified_header(attestation)
        except jwt.PyJWTError:
            return BAD_SIGNATURE
        key = self._keys.get(str(header.get("kid")))
        if key is None:
            return UNKNOWN_KEY
        if header.get("alg") != ALGORITHM or header.get("typ") != TYPE:
            return BAD_SIGNATURE
        try:
            claims = jwt.decode(attestation, key, algorithms=[ALGORITHM],
                                options={"verify_exp": False, "verify_iat": False,
                                         "verify_nbf": False, "verify_aud": False})
            identity = VerifiedIdentity.model_validate(claims["identity"])
            expires = int(claims["exp"])
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            return BAD_SIGNATURE
        if _timestamp(at - LEEWAY) >= expires:
            return EXPIRED
        if claims.get("application_id") != application_id:
            return OTHER_APPLICATION
        if claims.get("decision") != decision or claims.get("decision_id") != decision_id:
            return OTHER_DECISION
        try:
            digest = content_digest(content)
        except ValueError:
            return OTHER_CONTENT
        if claims.get("content_sha256") != digest:
            return OTHER_CONTENT
        return identity


def main() -> None:
    """`python -m onboarding.identity.attestation [KID]`: a new sealing key pair."""
    import sys

    kid = sys.argv[1] if len(sys.argv) > 1 else datetime.now(UTC).strftime("seal-%Y%m%d")
    private, public = new_sealing_key(kid)
    print(f"SEALING_KEYS={private}\nSEALING_VERIFICATION_KEYS={public}")


if __name__ == "__main__":
    main()
