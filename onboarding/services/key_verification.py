"""The key verification endpoint, asked by the API gateway for every call it lets through.

    python -m onboarding.services.key_verification
                            (DATABASE_URL, GATEWAY_BIND, GATEWAY_PORT, LOG_*)

    POST /v1/keys/verify    the key in the X-Api-Key header; 200 with the verdict
    GET  /healthz           200 when the database answers, else 503

The answer is `onboarding.store.keys.KeyVerdict` as JSON: `valid`, `reason` ("" when
valid; "unknown key", "revoked" or "expired"), `organisation` {business_registration_number,
name}, `environment`, `apis`, `key_id`, `expires_at`. A refusal grants nothing (organisation,
environment and APIs are null or empty). Why refusals name their reason: see
onboarding/store/keys.py. Answers come from memory when they can, kept right by PostgreSQL's
notifications, and take the same time whether a key exists or not: see
onboarding/services/key_cache.py. Anything but a 200 with `valid: true` (a 400; a 503 when the
database cannot answer and no fresh answer is in memory) means: refuse the call.

Decisions:

- The key comes in the `X-Api-Key` header only, not in a JSON body: the gateway passes on the
  header its caller presented, there is no body to parse on the hot path, and one way in means
  one set of rules. A key elsewhere (body, query string) is not read.
- A request the endpoint cannot read as one key gets a 400 naming the field and the rule:
  `required` (absent or empty), `single` (the header given twice), `max_length`
  (MAX_KEY_LENGTH characters), `printable_ascii` (characters 0x21-0x7E only; issued keys are
  lower-case letters, digits and `_`). A well-formed string that is no key is simply an
  "unknown key".
- The presented key is never logged or echoed, not even in part. Verifications are tallied,
  not logged one by one: every TALLY_SECONDS, one line per outcome seen meanwhile ("keys
  verified": valid, reason and the key id when the key is on record, with how many times;
  malformed requests by rule; 503s by error). A line per verification cost about 90 µs of CPU,
  more than everything else a request takes from memory (bench/README.md), and a line per
  request lets a flood of requests become a flood of logs; the gateway logs every call anyway.
  Counting costs the same for every outcome. aiohttp's access log is off. One exception to
  "echoed": a header over 8 KiB is refused by aiohttp's own parser before this code runs, with
  a plain-text 400 that quotes its first 100 bytes back to the sender; its log line keeps only
  the kind of error (HTTP_LOG). The API gateway in front should cap headers below that.
- Answers are kept here only (onboarding/services/key_cache.py), where a revocation reaches
  them; they say `Cache-Control: no-store`, so that no proxy on the way keeps one.
- The hot path is lean: the answer's JSON is built once, when it is looked up, and sent as
  bytes; no model is built or serialised per request, nothing is logged per request (below),
  and the process runs on uvloop (about 25 µs of CPU less per request than asyncio's loop).
- SIGTERM or SIGINT stops accepting connections, lets requests in flight finish (up to
  SHUTDOWN_GRACE_SECONDS), then stops listening and closes the pool.
- The endpoint has no login of its own: it must be reachable by the gateway only (see
  GATEWAY_BIND in onboarding/core/config.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from time import monotonic

import asyncpg
import uvloop
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from onboarding.core.config import Settings
from onboarding.core.db import create_pool
from onboarding.core.logs import get_logger
from onboarding.core.service import run_until_stopped
from onboarding.services.key_cache import DATABASE_DOWN, KeyCache
from onboarding.store.keys import MAX_KEY_LENGTH

KEY_HEADER = "X-Api-Key"
SHUTDOWN_GRACE_SECONDS = 10  # a verification takes milliseconds
HEALTH_TIMEOUT_SECONDS = 2
TALLY_SECONDS = 10
NO_STORE = {"Cache-Control": "no-store"}
ANSWER_HEADERS = {**NO_STORE, "Content-Type": "application/json; charset=utf-8"}
POOL = web.AppKey("pool", asyncpg.Pool)
CACHE = web.AppKey("key_cache", KeyCache)
_PRINTABLE_ASCII = re.compile(r"[!-~]*")

log = get_logger("onboarding.gateway")


class _WithoutRequestBytes(logging.Filter):
    """aiohttp logs a request it cannot parse, as an error, with the parser's message, which
    quotes the raw bytes (an X-Api-Key over 8 KiB among them): keep only the kind of error, as
    a warning (the caller's mistake, not ours)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], HttpProcessingError):
            record.msg, record.args = "unreadable request: %s", (type(record.exc_info[1]).__name__,)
            record.exc_info = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


# aiohttp's own error log (requests it cannot parse, exceptions escaping a handler).
HTTP_LOG = logging.getLogger("onboarding.gateway.http")
HTTP_LOG.addFilter(_WithoutRequestBytes())


class Tally:
    """How many times each outcome happened since the last line about it (see "Decisions")."""

    # An outcome's first element says which line it makes, and how its other elements read.
    LINES = {"verified": ("info", "keys verified", ("valid", "reason", "key_id")),
             "malformed": ("info", "key verification refused: malformed request", ("rule",)),
             "unavailable": ("warning", "key verification failed: database unavailable",
                             ("error",))}

    def __init__(self) -> None:
        self._counts: dict[tuple, int] = {}
        self._since = monotonic()

    def count(self, outcome: tuple) -> None:
        self._counts[outcome] = self._counts.get(outcome, 0) + 1

    def flush(self) -> None:
        """One line per outcome counted since the last flush."""
        counts, self._counts = self._counts, {}
        now, since, self._since = monotonic(), self._since, monotonic()
        for (line, *values), count in counts.items():
            level, event, names = self.LINES[line]
            extra = {"field": KEY_HEADER} if line == "malformed" else {}
            getattr(log, level)(event, **extra, **dict(zip(names, values)), count=count,
                                seconds=round(now - since, 1))

    async def every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            self.flush()


TALLY = web.AppKey("tally", Tally)


def _malformed(presented: list[str]) -> tuple[str, str] | None:
    """The rule a request breaks, with its message, or None for one readable key."""
    if not presented or not presented[0]:
        return "required", f"the key goes in the {KEY_HEADER} header"
    if len(presented) > 1:
        return "single", f"one {KEY_HEADER} header, not {len(presented)}"
    if len(presented[0]) > MAX_KEY_LENGTH:
        return "max_length", f"at most {MAX_KEY_LENGTH} characters"
    if not _PRINTABLE_ASCII.fullmatch(presented[0]):
        return "printable_ascii", "printable ASCII characters only (0x21-0x7E)"
    return None


async def verify(request: web.Request) -> web.Response:
    presented = request.headers.getall(KEY_HEADER, [])
    if broken := _malformed(presented):
        rule, message = broken
        request.app[TALLY].count(("malformed", rule))
        return web.json_response({"field": KEY_HEADER, "rule": rule, "message": message},
                                 status=400, headers=NO_STORE)
    try:
        answer = await request.app[CACHE].verify(presented[0])
    except DATABASE_DOWN as exc:
        request.app[TALLY].count(("unavailable", type(exc).__name__))
        return web.json_response({"error": "database unavailable"}, status=503,
                                 headers=NO_STORE)
    request.app[TALLY].count(("verified", answer.valid, answer.reason, answer.key_id))
    return web.Response(body=answer.body, headers=ANSWER_HEADERS)


async def healthz(request: web.Request) -> web.Response:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            await request.app[POOL].fetchval("SELECT 1")
    except DATABASE_DOWN as exc:
        log.warning("health check failed", error=type(exc).__name__)
        return web.json_response({"status": "unavailable"}, status=503)
    return web.json_response({"status": "ok"})


async def _tallying(app: web.Application) -> AsyncIterator[None]:
    every = asyncio.create_task(app[TALLY].every(TALLY_SECONDS))
    yield
    every.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await every
    app[TALLY].flush()  # what was counted since the last line, before stopping


def create_app(pool: asyncpg.Pool, cache: KeyCache) -> web.Application:
    app = web.Application()
    app[POOL], app[CACHE], app[TALLY] = pool, cache, Tally()
    app.cleanup_ctx.append(_tallying)
    app.router.add_post("/v1/keys/verify", verify)
    app.router.add_get("/healthz", healthz)
    return app


def create_runner(pool: asyncpg.Pool, cache: KeyCache) -> web.AppRunner:
    # No access log: the tally of verifications replaces it.
    return web.AppRunner(create_app(pool, cache), access_log=None, logger=HTTP_LOG,
                         shutdown_timeout=SHUTDOWN_GRACE_SECONDS)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    pool = await create_pool(settings)
    try:
        async with KeyCache.from_settings(pool, settings) as cache:
            runner = create_runner(pool, cache)
            try:
                await runner.setup()
                await web.TCPSite(runner, settings.gateway_bind, settings.gateway_port).start()
                log.info("gateway started", bind=settings.gateway_bind,
                         port=settings.gateway_port)
                await stop.wait()
                log.info("gateway stopping: finishing requests in flight")
            finally:
                await runner.cleanup()
    finally:
        await pool.close()
    log.info("gateway stopped")


def main() -> None:
    # uvloop: about 25 µs of CPU less per request than asyncio's own loop (bench/README.md).
    run_until_stopped(serve, loop_factory=uvloop.new_event_loop)


if __name__ == "__main__":
    main()
