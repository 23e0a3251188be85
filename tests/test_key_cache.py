"""Key verification from memory (onboarding/services/key_cache.py), against the real database:
answers change the moment PostgreSQL notifies a change, and when notifications are lost, by the
end of the answers' lifetime; nothing but hashes is kept; when the database cannot answer and
nothing fresh is in memory, the endpoint refuses (503); every replica refuses a revoked key.

Answers here live an hour unless a test says otherwise, so that a refusal can only come from
the mechanism the test is about."""

from __future__ import annotations

import asyncio
import gc
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from onboarding.core.db import create_pool
from onboarding.domain import keys
from onboarding.domain.admission import prepare_subscription
from onboarding.domain.record import ApplicationOnRecord, KeyIssued
from onboarding.services.key_cache import KeyCache
from onboarding.store import keys as store_keys
from tests.support import data
from tests.support.eventually import eventually
from tests.support.gateway import Gateway, listening
from tests.support.key_issuance import commit, issue_key, revoke_keys
from tests.support.proxy import Proxy

@asynccontextmanager
async def proxy_to(settings) -> AsyncIterator[Proxy]:
    proxy = await Proxy(settings.database_url.get_secret_value()).start()
    try:
        yield proxy
    finally:
        await proxy.close()


def url(settings) -> str:
    return settings.database_url.get_secret_value()


async def answer(cache: KeyCache, key: str) -> tuple[bool, str]:
    a = await cache.verify(key)
    return a.valid, a.reason


def answers(cache: KeyCache, key: str, expected: tuple[bool, str]):
    """For `eventually`: whether the cache now answers `expected` on the key."""
    async def check() -> bool:
        return await answer(cache, key) == expected
    return check


async def revoke(pool, settings, app) -> None:
    await revoke_keys(pool, settings, app, "withdrawn")


def unknown_key() -> str:
    return "cmsb_" + secrets.token_hex(26)


async def test_a_revoked_key_is_refused_as_soon_as_the_revocation_is_notified(
        pool, settings, inbox):
    app, key = await issue_key(pool, settings, inbox)
    async with listening(pool, url(settings)) as cache:
        assert await answer(cache, key) == (True, "")
        lookups = cache.stats.lookups
        assert await answer(cache, key) == (True, "") and cache.stats.lookups == lookups
        await revoke(pool, settings, app)
        await eventually(lambda: cache.stats.forgotten == 1, what="the revocation notified")
        assert await answer(cache, key) == (False, "revoked")


async def test_a_key_issued_or_its_organisation_renamed_is_answered_anew_at_once(
        pool, settings, inbox):
    # A key presented before it is issued (it can be derived, here): its unknown-key answer is
    # kept, and the issuance's notification makes it go.
    app = prepare_subscription(data.subscription_form(apis=["account-balance"]), settings)
    key = keys.derive_key(settings.key_issuance_secret.get_secret_value(),
                          f"{app.application_id}/key/sandbox", "sandbox")
    brn = app.organisation.business_registration_number
    async with listening(pool, url(settings)) as cache:
        assert await answer(cache, key) == (False, "unknown key")
        await commit(pool, settings, app,
                     ApplicationOnRecord(seq=0, process="subscription",
                                         organisation=app.organisation,
                                         requested_apis=app.requested_apis),
                     KeyIssued(seq=1, environment="sandbox", scopes=["account-balance"],
                               valid_days=30, recipients=[data.applicant(app)], language="en"))
        await eventually(lambda: cache.stats.forgotten == 1, what="the issuance notified")
        verdict = (await cache.verify(key)).verdict
        assert verdict.valid and verdict.organisation.name == app.organisation.legal_name
        # The verdict names the organisation: renaming it reaches its keys' answers.
        await pool.execute("UPDATE organisations SET legal_name = legal_name || ' (renamed)' "
                           "WHERE business_registration_number = $1", brn)
        await eventually(lambda: cache.stats.forgotten == 2, what="the renaming notified")
        assert (await cache.verify(key)).verdict.organisation.name == \
            f"{app.organisation.legal_name} (renamed)"


async def test_a_key_expiring_while_its_answer_is_in_memory_is_refused_from_its_expiry(
        pool, settings, inbox):
    app, key = await issue_key(pool, settings, inbox)
    await pool.execute("UPDATE api_keys SET expires_at = now() + interval '3 seconds' "
                       "WHERE application_id = $1", app.application_id)
    async with listening(pool, url(settings)) as cache:
        assert await answer(cache, key) == (True, "")
        await eventually(answers(cache, key, (False, "expired")), 10, "expired", interval=0.05)


async def test_a_listener_gone_silent_is_replaced_and_every_answer_forgotten(
        pool, settings, inbox):
    app, key = await issue_key(pool, settings, inbox)
    async with proxy_to(settings) as proxy, \
            listening(pool, proxy.url, heartbeat=0.2, heartbeat_timeout=0.5) as cache:
        assert await answer(cache, key) == (True, "")
        cleared = cache.stats.cleared
        # The listener's connection carries nothing more, and nothing tells it so (a dead NAT
        # entry): the revocation's notification never reaches it.
        proxy.freeze()
        await revoke(pool, settings, app)
        await eventually(answers(cache, key, (False, "revoked")), 10, "the revoked key refused")
        # Not by a notification, nor by age: the heartbeat found the listener silent, a new one
        # connected, and every answer was forgotten.
        assert cache.stats.notifications == 0 and cache.stats.cleared > cleared
        assert cache.listening


async def test_with_notifications_lost_a_revoked_key_is_refused_once_its_answer_ages_out(
        pool, settings, inbox):
    app, key = await issue_key(pool, settings, inbox)
    async with proxy_to(settings) as proxy, \
            listening(pool, proxy.url, max_age=1.0) as cache:
        assert await answer(cache, key) == (True, "")
        cleared = cache.stats.cleared
        await proxy.cut()  # no listener can connect: every notification from now on is lost
        await revoke(pool, settings, app)
        await eventually(answers(cache, key, (False, "revoked")), 10, "the revoked key refused",
                         interval=0.05)
        assert not cache.listening
        assert cache.stats.notifications == 0 and cache.stats.cleared == cleared


async def test_503_once_the_database_is_unreachable_and_nothing_fresh_is_in_memory(
        pool, settings, inbox):
    _, key = await issue_key(pool, settings, inbox)
    async with proxy_to(settings) as proxy:
        cut_off = await create_pool(settings, database_url=proxy.url)
        try:
            async with listening(cut_off, proxy.url, max_age=5.0) as cache, \
                    Gateway(cut_off, cache) as gateway:
                assert await gateway.answer(key) == (True, "")
                await proxy.cut()
                down = (503, {"error": "database unavailable"})
                # Never asked about: only the database could answer.
                assert await gateway.verify({"X-Api-Key": unknown_key()}) == down
                # Asked a moment ago: its answer is fresh, and still given...
                assert await gateway.answer(key) == (True, "")
                # ... until it is older than its lifetime.

                async def refused() -> bool:
                    return await gateway.verify({"X-Api-Key": key}) == down

                await eventually(refused, 15, "503 once the answer aged out", interval=0.2)
                await proxy.restore()
                await eventually(lambda: cache.listening, 15, "the listener back")
                assert await gateway.answer(key) == (True, "")
        finally:
            await cut_off.close()


async def test_every_replica_refuses_a_revoked_key(pool, settings, inbox):
    app, key = await issue_key(pool, settings, inbox)
    async with replica(settings) as first, replica(settings) as second:
        for gateway in (first, second):
            assert await gateway.answer(key) == (True, "")
            lookups = gateway.cache.stats.lookups
            assert await gateway.answer(key) == (True, "")  # from memory
            assert gateway.cache.stats.lookups == lookups
        await revoke(pool, settings, app)

        async def refused_by_both() -> bool:
            return [await g.answer(key) for g in (first, second)] == [(False, "revoked")] * 2

        await eventually(refused_by_both, 10, "every replica refusing the revoked key")
        # And at once, not by chance: both were told.
        assert [g.cache.stats.forgotten for g in (first, second)] == [1, 1]


@asynccontextmanager
async def replica(settings) -> AsyncIterator[Gateway]:
    """An endpoint replica as deployed: its own pool, its own cache listening."""
    pool = await create_pool(settings)
    try:
        async with KeyCache.from_settings(pool, settings) as cache, Gateway(pool, cache) as gw:
            await eventually(lambda: cache.listening, what="the replica's cache listening")
            yield gw
    finally:
        await pool.close()


async def test_a_flood_of_unknown_keys_pushes_out_only_unknown_keys_answers(
        pool, settings, inbox):
    _, key = await issue_key(pool, settings, inbox)
    async with listening(pool, url(settings), max_keys=10, max_unknown=5) as cache:
        assert await answer(cache, key) == (True, "")
        flood = [unknown_key() for _ in range(50)]
        for guess in flood:
            assert await answer(cache, guess) == (False, "unknown key")
        assert len(cache) == 1 + 5  # the real key's answer and the five latest guesses'
        lookups = cache.stats.lookups
        assert await answer(cache, key) == (True, "")
        assert await answer(cache, flood[-1]) == (False, "unknown key")
        assert cache.stats.lookups == lookups  # both from memory


async def test_memory_holds_hashes_and_answers_never_a_key(pool, settings, inbox):
    app, key = await issue_key(pool, settings, inbox)
    _, other = await issue_key(pool, settings, inbox)
    presented = [key, other, key[:-1], unknown_key()]
    async with listening(pool, url(settings)) as cache:
        for k in presented:
            await cache.verify(k)
        await revoke(pool, settings, app)
        await eventually(lambda: cache.stats.forgotten == 1, what="the revocation notified")
        await cache.verify(key)
        assert len(cache) == len(presented)
        kept = reachable_data(cache)
        assert {keys.key_hash(k) for k in presented} <= kept
        for k in presented:
            secret = k.split("_", 1)[1]
            assert not any(secret[:16] in text or secret[-16:] in text for text in
                           (d.decode(errors="replace") if isinstance(d, bytes) else d
                            for d in kept))


def reachable_data(cache: KeyCache) -> set[str | bytes]:
    """Every string and bytes object the cache holds, outside the database driver and the
    event loop's machinery."""
    skip = (asyncpg.Pool, asyncpg.Connection, asyncio.Future, asyncio.AbstractEventLoop)
    found: set[str | bytes] = set()
    seen: set[int] = set()
    todo: list[object] = [cache]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, skip) or callable(obj) and obj is not cache:
            continue
        seen.add(id(obj))
        if isinstance(obj, str | bytes):
            found.add(obj)
            continue
        todo.extend(gc.get_referents(obj))
    return found


async def test_a_lifetime_of_zero_answers_every_time_from_the_database(pool, settings, inbox):
    _, key = await issue_key(pool, settings, inbox)
    async with listening(pool, url(settings), max_age=0.0) as cache:
        for _ in range(3):
            assert await answer(cache, key) == (True, "")
        assert cache.stats.lookups == 3 and len(cache) == 0


async def test_a_lookup_under_way_when_its_key_changes_answers_but_is_not_kept(
        pool, settings, inbox):
    app, key = await issue_key(pool, settings, inbox)
    async with listening(pool, url(settings)) as cache, pool.acquire() as holder:
        # The lookup reads organisations: held up there while the key is revoked.
        async with holder.transaction():
            await holder.execute("LOCK TABLE organisations IN ACCESS EXCLUSIVE MODE")
            asked = asyncio.create_task(answer(cache, key))
            await eventually(lambda: holder.fetchval(
                "SELECT count(*) FROM pg_locks WHERE relation = 'organisations'::regclass "
                "AND NOT granted"), what="the lookup waiting on the lock", interval=0.05)
            await store_keys.revoke(pool, app.application_id, "withdrawn")
            await eventually(lambda: cache.stats.notifications == 1, what="the revocation")
        assert await asked == (False, "revoked")
        assert await answer(cache, key) == (False, "revoked")
        assert cache.stats.lookups == 2  # the first answer was not kept


async def test_requests_for_the_same_key_meanwhile_share_one_lookup(pool, settings, inbox):
    _, key = await issue_key(pool, settings, inbox)
    async with listening(pool, url(settings)) as cache:
        answers = await asyncio.gather(*(answer(cache, key) for _ in range(20)))
        assert answers == [(True, "")] * 20 and cache.stats.lookups == 1

