"""The key verification endpoint as the API gateway sees it: over HTTP, against the real
database, and as the process the cluster runs (`python -m onboarding.services.key_verification`)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from onboarding.core.db import create_pool
from onboarding.core.logs import configure_logging
from onboarding.services.key_cache import KeyCache
from tests.support.eventually import eventually
from tests.support.gateway import VERIFY, Gateway
from tests.support.key_issuance import issue_key, revoke_keys
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parent.parent


def leaked(key: str, text: str) -> bool:
    """Whether any 8 characters of the key's secret part (after `cmsb_`) appear in text."""
    secret = key.split("_", 1)[1]
    return any(secret[i:i + 8] in text for i in range(len(secret) - 7))


async def verify_over(session: aiohttp.ClientSession, key: str) -> tuple[int, bool]:
    async with session.post(VERIFY, headers={"X-Api-Key": key}) as response:
        return response.status, (await response.json())["valid"]


@pytest.fixture(scope="module")
async def gateway(pool, settings):
    async with KeyCache.from_settings(pool, settings) as cache, Gateway(pool, cache) as gw:
        await eventually(lambda: cache.listening, what="the key cache listening")
        yield gw


async def notified(gateway: Gateway, forgotten_before: int) -> None:
    """Once the gateway's cache has forgotten an answer since `forgotten_before`."""
    await eventually(lambda: gateway.cache.stats.forgotten > forgotten_before,
                     what="a change notified to the key cache")


async def test_a_sandbox_key_is_valid_for_its_organisation_and_apis(gateway, pool, settings, inbox):
    app, key = await issue_key(pool, settings, inbox)
    status, body = await gateway.verify({"X-Api-Key": key})
    assert status == 200
    assert body["valid"] is True and body["reason"] == ""
    assert body["organisation"] == {
        "business_registration_number": app.organisation.business_registration_number,
        "name": app.organisation.legal_name,
    }
    assert (body["environment"], body["apis"]) == ("sandbox", ["account-balance"])
    assert body["key_id"] and body["expires_at"]


async def test_a_production_key_names_production(gateway, pool, settings, inbox):
    app, key = await issue_key(pool, settings, inbox, environment="production")
    status, body = await gateway.verify({"X-Api-Key": key})
    assert status == 200 and body["valid"] is True
    assert body["environment"] == "production"
    assert body["organisation"]["business_registration_number"] == \
        app.organisation.business_registration_number


async def test_unknown_keys_are_refused_and_grant_nothing(gateway):
    for unknown in ("cmsb_" + secrets.token_hex(26), "cmpr_" + "a" * 52, "not-a-key"):
        status, body = await gateway.verify({"X-Api-Key": unknown})
        assert status == 200
        assert body == {"valid": False, "reason": "unknown key", "organisation": None,
                        "environment": None, "apis": [], "key_id": None, "expires_at": None,
                        "suspended_apis": []}


async def test_a_revoked_key_is_refused_as_soon_as_the_revocation_is_notified(
        gateway, pool, settings, inbox):
    app, key = await issue_key(pool, settings, inbox)
    assert (await gateway.verify({"X-Api-Key": key}))[1]["valid"] is True
    forgotten = gateway.cache.stats.forgotten
    await revoke_keys(pool, settings, app, "withdrawn")
    await notified(gateway, forgotten)
    status, body = await gateway.verify({"X-Api-Key": key})
    assert status == 200
    assert (body["valid"], body["reason"]) == (False, "revoked")
    assert body["key_id"] and (body["organisation"], body["environment"], body["apis"]) == \
        (None, None, [])


async def test_an_expired_key_is_refused(gateway, pool, settings, inbox):
    app, key = await issue_key(pool, settings, inbox)
    await pool.execute("UPDATE api_keys SET expires_at = now() - interval '1 second' "
                       "WHERE application_id = $1", app.application_id)
    status, body = await gateway.verify({"X-Api-Key": key})
    assert status == 200
    assert (body["valid"], body["reason"], body["environment"]) == (False, "expired", None)


@pytest.mark.parametrize(("headers", "rule"), [
    ({}, "required"),
    ({"X-Api-Key": ""}, "required"),
    ([("X-Api-Key", "cmsb_one"), ("X-Api-Key", "cmsb_two")], "single"),
    ({"X-Api-Key": "k" * 201}, "max_length"),
    ({"X-Api-Key": "k" * 8000}, "max_length"),
    ({"X-Api-Key": "cmsb_ключ"}, "printable_ascii"),
    ({"X-Api-Key": "cmsb_two words"}, "printable_ascii"),
])
async def test_a_request_that_is_not_one_readable_key_gets_400_naming_field_and_rule(
        gateway, headers, rule):
    status, body = await gateway.verify(headers)
    assert status == 400
    assert (body["field"], body["rule"]) == ("X-Api-Key", rule)
    assert body["message"]
    for _, value in (headers.items() if isinstance(headers, dict) else headers):
        assert value == "" or value not in json.dumps(body, ensure_ascii=False)  # never echoed


async def test_the_key_is_read_from_the_header_only(gateway, pool, settings, inbox):
    _, key = await issue_key(pool, settings, inbox)
    status, body = await gateway.verify({}, json={"key": key})
    assert (status, body["rule"]) == (400, "required")
    status, body = await gateway.verify({}, params={"key": key})
    assert (status, body["rule"]) == (400, "required")


async def test_the_key_never_reaches_the_logs(gateway, pool, settings, inbox, capfd):
    app, key = await issue_key(pool, settings, inbox)
    configure_logging(settings.model_copy(update={"log_format": "json"}))
    try:
        gateway.tally.flush()  # what earlier tests counted
        capfd.readouterr()
        valid = (await gateway.verify({"X-Api-Key": key}))[1]
        await gateway.verify({"X-Api-Key": key[:-1]})  # a mistyped key: unknown
        await gateway.verify({"X-Api-Key": key + "é"})  # malformed
        await gateway.verify({"X-Api-Key": key + "x" * 200})  # too long
        # Too long for aiohttp's parser (8 KiB), which refuses it before our code runs.
        async with gateway.session.post(VERIFY, headers={"X-Api-Key": key + "x" * 9000}) as r:
            assert r.status == 400
        forgotten = gateway.cache.stats.forgotten
        await revoke_keys(pool, settings, app, "withdrawn")
        await notified(gateway, forgotten)
        await gateway.verify({"X-Api-Key": key})
        await gateway.verify({"X-Api-Key": key})  # from memory this time
        gateway.tally.flush()
        err = capfd.readouterr().err
    finally:
        configure_logging(settings)
    assert not leaked(key, err)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    # One line per outcome, with how many times.
    verified = [line for line in lines if line["event"] == "keys verified"]
    assert sorted((line["valid"], line["reason"], line["key_id"] or "", line["count"])
                  for line in verified) == sorted([
                      (True, "", valid["key_id"], 1), (False, "unknown key", "", 1),
                      (False, "revoked", valid["key_id"], 2)])
    assert sorted((line["field"], line["rule"], line["count"]) for line in lines
                  if line["event"].startswith("key verification refused")) == \
        [("X-Api-Key", "max_length", 1), ("X-Api-Key", "printable_ascii", 1)]


async def test_healthz_answers_while_the_database_does(gateway, settings):
    async with gateway.session.get("/healthz") as response:
        assert (response.status, await response.json()) == (200, {"status": "ok"})
    closed = await create_pool(settings)
    await closed.close()
    nothing_in_memory = KeyCache.from_settings(closed, settings)
    async with Gateway(closed, nothing_in_memory) as down:
        async with down.session.get("/healthz") as response:
            assert (response.status, await response.json()) == (503, {"status": "unavailable"})
        # Fail closed: no verdict without the database.
        assert await down.verify({"X-Api-Key": "cmsb_" + "a" * 52}) == \
            (503, {"error": "database unavailable"})


async def test_the_process_answers_and_finishes_requests_in_flight_on_sigterm(
        pool, settings, inbox):
    _, key = await issue_key(pool, settings, inbox)
    port = free_port()
    env = {**os.environ, "DATABASE_URL": settings.database_url.get_secret_value(),
           "GATEWAY_PORT": str(port), "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "onboarding.services.key_verification", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:

            async def healthy() -> bool:
                try:
                    async with session.get("/healthz") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await eventually(healthy, 20, "the key verification endpoint up", interval=0.2)
            # A verification held up in the database while SIGTERM arrives still gets its answer.
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
                in_flight = asyncio.create_task(verify_over(session, key))
                await eventually(lambda: conn.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE relation = 'api_keys'::regclass "
                    "AND NOT granted"), what="the verification waiting on the lock", interval=0.05)
                proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.5)
                assert proc.returncode is None  # waiting for the request in flight
            assert await asyncio.wait_for(in_flight, 10) == (200, True)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = (await proc.stderr.read()).decode()
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert [e for e in events if e.startswith("gateway")] == [
        "gateway started", "gateway stopping: finishing requests in flight", "gateway stopped"]
    assert "keys verified" in events and "key cache listening" in events
    assert not leaked(key, err)
