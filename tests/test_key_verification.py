"""The gateway's question: is this presented key valid, for whom, where, and for which APIs?"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from onboarding.store.keys import verify_key
from tests.support.key_issuance import issue_key, revoke_keys


async def test_an_issued_key_is_valid_for_its_organisation_environment_and_apis(pool, settings, inbox):
    app, key = await issue_key(pool, settings, inbox)
    verdict = await verify_key(pool, key)
    assert verdict.valid and verdict.reason == ""
    assert verdict.organisation.business_registration_number == \
        app.organisation.business_registration_number
    assert verdict.organisation.name == app.organisation.legal_name
    assert (verdict.environment, verdict.apis) == ("sandbox", ["account-balance"])
    assert verdict.key_id and verdict.expires_at > datetime.now(UTC) + timedelta(days=29)


async def test_unknown_revoked_and_expired_keys_are_refused(pool, settings, inbox):
    app, key = await issue_key(pool, settings, inbox)
    unknown = await verify_key(pool, "cmsb_" + secrets.token_hex(26))
    assert not unknown.valid and unknown.reason == "unknown key" and unknown.key_id is None
    assert (await verify_key(pool, key[:-1])).reason == "unknown key"
    assert (await verify_key(pool, "")).reason == "unknown key"
    assert (await verify_key(pool, "x" * 10_000)).reason == "unknown key"
    later = datetime.now(UTC) + timedelta(days=31)
    expired = await verify_key(pool, key, now=later)
    assert not expired.valid and expired.reason == "expired" and expired.organisation is None
    await revoke_keys(pool, settings, app, "withdrawn")
    verdict = await verify_key(pool, key)
    assert not verdict.valid and verdict.reason == "revoked" and verdict.key_id
    # A refusal grants nothing.
    assert (verdict.organisation, verdict.environment, verdict.apis, verdict.expires_at) == \
        (None, None, [], None)
