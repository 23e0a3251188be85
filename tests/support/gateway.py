"""The key verification endpoint in a test: the app as `python -m onboarding.services.key_verification`
runs it, on a free local port, with a client session to ask it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import aiohttp
from aiohttp import web

from onboarding.services.key_cache import KeyCache
from onboarding.services.key_verification import TALLY, create_runner
from tests.support.eventually import eventually
from tests.support.net import free_port

VERIFY = "/v1/keys/verify"
HOUR = 3600.0


@asynccontextmanager
async def listening(pool: asyncpg.Pool, dsn: str, **options) -> AsyncIterator[KeyCache]:
    """A key cache on `pool` whose listener connects to `dsn`, once it listens. Its answers
    live an hour unless a test says otherwise, so that a refusal can only come from a
    notification (or from what the test changes)."""
    options = {"max_age": HOUR, "max_keys": 100, "max_unknown": 100, **options}
    async with KeyCache(pool, dsn, **options) as cache:
        await eventually(lambda: cache.listening, what="the key cache listening")
        yield cache


class Gateway:
    def __init__(self, pool: asyncpg.Pool, cache: KeyCache) -> None:
        self.cache = cache
        self.runner = create_runner(pool, cache)
        self.tally = self.runner.app[TALLY]
        self.port = free_port()

    async def __aenter__(self) -> Gateway:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.session = aiohttp.ClientSession(f"http://127.0.0.1:{self.port}")
        return self

    async def __aexit__(self, *_) -> None:
        await self.session.close()
        await self.runner.cleanup()

    async def verify(self, headers: dict[str, str] | list[tuple[str, str]],
                     **kw) -> tuple[int, dict]:
        async with self.session.post(VERIFY, headers=headers, **kw) as response:
            if response.status == 200:
                assert response.headers["Cache-Control"] == "no-store"
            return response.status, await response.json()

    async def answer(self, key: str) -> tuple[bool, str]:
        """(valid, reason) for a key; fails on anything but a 200."""
        status, body = await self.verify({"X-Api-Key": key})
        assert status == 200, (status, body)
        return body["valid"], body["reason"]
