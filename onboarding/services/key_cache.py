"""Key verification from memory: the endpoint's verdicts, kept, and forgotten the moment
PostgreSQL says what they were built from changed.

The gateway asks for every call it lets through, and almost always about the same few keys, so
each endpoint replica keeps the answers it gave, by key hash (SHA-256 of the presented key:
never the key itself), as the bytes it sends. What keeps them right:

- **Notifications.** A trigger on every table the verdict reads (migration 0020; the rule in
  onboarding/store/keys.py) notifies channel `api_key_changes` with the hashes of the keys a
  committed change affects: issued, revoked, re-scoped, expiry moved, organisation renamed,
  and later suspended. One connection per replica LISTENs (application_name `key cache`) and
  forgets those answers; every replica gets every notification, so a revocation is refused
  everywhere within the time a notification takes (milliseconds; bench/README.md).
- **Nothing answered from a lookup older than a change it may have missed.** A lookup under
  way when a change to its key is notified (or when the cache is cleared) still answers the
  request that asked for it, but is not kept, and later requests look up afresh: PostgreSQL
  delivers a notification only once the change is visible to new snapshots.
- **A heartbeat.** Every HEARTBEAT_SECONDS the listening connection notifies itself on a
  channel of its own and waits for it to come back. Notifications reach a session in commit
  order, so its own coming back proves every change committed before it was delivered too; no
  answer within HEARTBEAT_TIMEOUT_SECONDS (a connection silently gone: a dead NAT entry, a
  hung server) and the connection is dropped and replaced.
- **On every (re)connection, everything is forgotten**: notifications sent while no one
  listened are lost for good. The listening connection is a session of its own on the
  primary (DATABASE_URL): LISTEN works neither through a pooler in transaction mode
  (PgBouncer's) nor on a standby.
- **A short bounded lifetime, whatever happens to notifications**: no answer is older than
  KEY_CACHE_MAX_AGE_SECONDS (default 10 s), nor kept past the key's own expiry. It bounds what
  a lost notification can cost: a listener down and unable to reconnect, a write that skipped
  the triggers (session_replication_role = replica), a table the verdict reads that someone
  forgot to give a trigger. 0 turns the cache off (every answer from the database).

Failing closed. A key whose answer is not in memory and fresh is looked up; when the database
cannot answer (down, unreachable, or slower than LOOKUP_TIMEOUT_SECONDS) the lookup raises and
the endpoint answers 503. A listener that is down does not stop lookups (the database may still
answer); it only means that answers are trusted no longer than their lifetime.

Memory. Keys on record are few (two per application) and only an issuance adds one, so
answers about known keys (valid, revoked, expired) are bounded by KEY_CACHE_MAX_KEYS. Unknown
keys are not: anyone can present a new random one per request. Their answers go to a bound of
their own, KEY_CACHE_MAX_UNKNOWN, oldest first out, so a flood of random keys pushes out only
other unknown keys' answers, never a real key's (one LRU for both would let the flood evict the
keys real traffic uses, sending it to the database exactly when the flood loads it). Oldest
first rather than least recently used: every answer lives the same short lifetime anyway, so
insertion order is expiry order, and a hit writes nothing (see timing). Unknown keys' answers
are kept at all because a misconfigured client repeats its wrong key at the rate of its calls,
and so that a repeated unknown key costs what a repeated known one costs. A flood of random
keys still reaches the database, one lookup per key, as it did before the cache: rate limiting
belongs to the gateway in front.

Timing: what someone presenting keys can learn from how long the answer takes.

- A key answered from memory: one SHA-256 of what was presented, one dict lookup by hash, one
  clock comparison, and the stored bytes sent, whether the key exists or not; known and unknown
  keys' answers are the same kind of entry in the same table (the bounds above are kept apart
  from the lookup, and a hit touches neither). The dict is keyed by SHA-256 digests, hashed
  again with Python's per-process SipHash key, so guesses cannot be chosen to collide.
- A key not in memory: the same statement and the same row-to-verdict code as before the cache
  (onboarding/store/keys.py: microseconds more for a key on record), then kept in its bound.
- So the time tells whether this replica answered a key from memory, that is, whether that
  key was presented (to this replica) within the last few seconds. An attacker can make their
  own guesses cached by presenting them twice; the answer already says whether a guess is a
  key, and the time adds nothing to it. Learning whether a key is cached means presenting it,
  which means holding it. What an attacker can learn about others is how busy the unknown-key
  bound is (how fast their own guesses are pushed out), not which keys exist or are in use.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from time import monotonic

import asyncpg

from onboarding.core.config import Settings
from onboarding.core.logs import get_logger
from onboarding.domain.keys import key_hash
from onboarding.store.keys import (CHANGES_CHANNEL, FORGET_ALL, MAX_KEY_LENGTH, KeyVerdict,
                                   look_up, verdict_of)

HEARTBEAT_SECONDS = 1.0
HEARTBEAT_TIMEOUT_SECONDS = 2.0
LOOKUP_TIMEOUT_SECONDS = 2.0
RECONNECT_SECONDS = (0.1, 2.0)  # first and longest wait before connecting again
LISTENER_NAME = "key cache"  # its application_name in pg_stat_activity
# What an unreachable database looks like to a lookup or to the listener.
DATABASE_DOWN = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

log = get_logger("onboarding.key_cache")


@dataclass(frozen=True, slots=True)
class Answer:
    """A verdict as the endpoint sends it (`body`, JSON) and logs it."""

    body: bytes
    valid: bool
    reason: str
    key_id: str | None

    @classmethod
    def of(cls, verdict: KeyVerdict) -> Answer:
        return cls(verdict.model_dump_json().encode(), verdict.valid, verdict.reason,
                   verdict.key_id)

    @property
    def verdict(self) -> KeyVerdict:
        return KeyVerdict.model_validate_json(self.body)


class _Entry:
    __slots__ = ("answer", "fresh_until")

    def __init__(self, answer: Answer, fresh_until: float) -> None:
        self.answer, self.fresh_until = answer, fresh_until


class _Lookup:
    """A lookup under way, run by the first request for its key; the others meanwhile wait for
    its answer."""

    __slots__ = ("answer", "spoiled")

    def __init__(self, answer: asyncio.Future[Answer]) -> None:
        self.answer = answer
        self.spoiled = False  # a change was notified meanwhile: answer, but do not keep


@dataclass
class CacheStats:
    lookups: int = 0  # answers read from the database
    forgotten: int = 0  # answers dropped on a notification
    cleared: int = 0  # times everything was forgotten (each (re)connection of the listener)
    notifications: int = 0  # notifications of changes received


class KeyCache:
    """`await cache.verify(key)`, from memory when it can be; `async with` runs the listener."""

    def __init__(self, pool: asyncpg.Pool, listen_dsn: str, *, max_age: float,
                 max_keys: int, max_unknown: int,
                 heartbeat: float = HEARTBEAT_SECONDS,
                 heartbeat_timeout: float = HEARTBEAT_TIMEOUT_SECONDS,
                 lookup_timeout: float = LOOKUP_TIMEOUT_SECONDS) -> None:
        self._pool, self._dsn = pool, listen_dsn
        self._max_age, self._lookup_timeout = max_age, lookup_timeout
        self._heartbeat, self._heartbeat_timeout = heartbeat, heartbeat_timeout
        self._entries: dict[bytes, _Entry] = {}
        # Insertion order of each bound's hashes (the lookup itself uses `_entries` only).
        self._known: OrderedDict[bytes, None] = OrderedDict()
        self._unknown: OrderedDict[bytes, None] = OrderedDict()
        self._bounds = {True: (self._known, max_keys), False: (self._unknown, max_unknown)}
        self._lookups: dict[bytes, _Lookup] = {}
        self._listener: asyncio.Task[None] | None = None
        self._pong: asyncio.Future[None] | None = None
        self._ping_channel = f"key_cache_{secrets.token_hex(8)}"
        self.listening = False
        self.stats = CacheStats()

    @classmethod
    def from_settings(cls, pool: asyncpg.Pool, settings: Settings) -> KeyCache:
        if not settings.database_url:
            raise RuntimeError("DATABASE_URL is not set")
        return cls(pool, settings.database_url.get_secret_value(),
                   max_age=settings.key_cache_max_age_seconds,
                   max_keys=settings.key_cache_max_keys,
                   max_unknown=settings.key_cache_max_unknown)

    def __len__(self) -> int:
        return len(self._entries)

    # --- answering -------------------------------------------------------------------------

    async def verify(self, presented: str) -> Answer:
        """The answer on a presented key; raises one of DATABASE_DOWN when it is not in memory
        and fresh, and the database cannot give it."""
        digest = key_hash(presented[:MAX_KEY_LENGTH])
        entry = self._entries.get(digest)
        if entry is not None and monotonic() < entry.fresh_until:
            return entry.answer
        if (under_way := self._lookups.get(digest)) is not None:
            # Shielded: one that goes away does not take the answer from the others.
            return await asyncio.shield(under_way.answer)
        return await self._look_up(digest)

    async def _look_up(self, digest: bytes) -> Answer:
        # Run by the request itself rather than in a task of its own: a task would cost two
        # more turns of the event loop, about 30 µs, on every lookup.
        lookup = self._lookups[digest] = _Lookup(asyncio.get_running_loop().create_future())
        lookup.answer.add_done_callback(_retrieved)
        asked_at = monotonic()  # the answer's age counts from before its snapshot
        try:
            async with asyncio.timeout(self._lookup_timeout):
                row = await look_up(self._pool, digest)
            now = datetime.now(UTC)
            verdict = verdict_of(row, now)
            answer = Answer.of(verdict)
        except asyncio.CancelledError:
            lookup.answer.cancel()
            raise
        except Exception as exc:
            lookup.answer.set_exception(exc)
            raise
        finally:
            if self._lookups.get(digest) is lookup:
                del self._lookups[digest]
        lookup.answer.set_result(answer)
        self.stats.lookups += 1
        if not lookup.spoiled and self._max_age > 0:
            lifetime = self._max_age
            if verdict.expires_at is not None:  # a valid key: refused from its expiry on
                lifetime = min(lifetime, (verdict.expires_at - now).total_seconds())
            self._keep(digest, _Entry(answer, asked_at + lifetime),
                       known=row["key_id"] is not None, now=asked_at)
        return answer

    def _keep(self, digest: bytes, entry: _Entry, known: bool, now: float) -> None:
        self._forget(digest)
        order, bound = self._bounds[known]
        self._entries[digest] = entry
        order[digest] = None
        while len(order) > bound:
            self._entries.pop(order.popitem(last=False)[0])
        # The aged go too (insertion order is near enough expiry order: oldest first).
        while order:
            oldest = next(iter(order))
            if self._entries[oldest].fresh_until > now:
                break
            del order[oldest], self._entries[oldest]

    def _forget(self, digest: bytes) -> None:
        if self._entries.pop(digest, None) is not None:
            self._known.pop(digest, None)
            self._unknown.pop(digest, None)
        if (lookup := self._lookups.pop(digest, None)) is not None:
            lookup.spoiled = True

    def clear(self) -> None:
        """Forget every answer, and keep none of the lookups under way."""
        self._entries.clear()
        self._known.clear()
        self._unknown.clear()
        for lookup in self._lookups.values():
            lookup.spoiled = True
        self._lookups.clear()
        self.stats.cleared += 1

    # --- listening ---------------------------------------------------------------------------

    def _changed(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.stats.notifications += 1
        if payload == FORGET_ALL:
            self.clear()
            return
        try:
            digests = [bytes.fromhex(h) for h in payload.split(",")]
        except ValueError:  # not ours to read: forgetting everything is always safe
            log.warning("unreadable key change notification: forgetting every answer")
            self.clear()
            return
        for digest in digests:
            if digest in self._entries:
                self.stats.forgotten += 1
            self._forget(digest)

    def _ponged(self, *_: object) -> None:
        if self._pong is not None and not self._pong.done():
            self._pong.set_result(None)

    async def _listen(self) -> None:
        wait, reported = RECONNECT_SECONDS[0], False
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(
                    self._dsn, timeout=self._heartbeat_timeout,
                    server_settings={"application_name": LISTENER_NAME})
                lost = asyncio.get_running_loop().create_future()
                conn.add_termination_listener(lambda _c: lost.done() or lost.set_result(None))
                await conn.add_listener(CHANGES_CHANNEL, self._changed)
                await conn.add_listener(self._ping_channel, self._ponged)
                self.clear()  # what was notified while no one listened is lost
                self.listening, wait, reported = True, RECONNECT_SECONDS[0], False
                log.info("key cache listening", channel=CHANGES_CHANNEL)
                await self._beat(conn, lost)
                error = "connection closed"
            except DATABASE_DOWN as exc:
                error = type(exc).__name__
            finally:
                self.listening = False
                if conn is not None:
                    conn.terminate()
            if not reported:  # once an outage
                log.warning("key cache not listening: answers trusted for their lifetime only",
                            error=error, max_age_seconds=self._max_age)
                reported = True
            await asyncio.sleep(wait)
            wait = min(wait * 2, RECONNECT_SECONDS[1])

    async def _beat(self, conn: asyncpg.Connection, lost: asyncio.Future[None]) -> None:
        """Returns when the connection closes; raises TimeoutError when it stops answering."""
        while not lost.done():
            self._pong = asyncio.get_running_loop().create_future()
            async with asyncio.timeout(self._heartbeat_timeout):
                await conn.execute(f"NOTIFY {self._ping_channel}")
                await asyncio.wait((self._pong, lost), return_when=asyncio.FIRST_COMPLETED)
            await asyncio.wait((lost,), timeout=self._heartbeat)

    async def start(self) -> None:
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except asyncio.CancelledError:
                pass
            self._listener = None

    async def __aenter__(self) -> KeyCache:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


def _retrieved(answer: asyncio.Future) -> None:
    # No other request may have waited for a failed lookup: its failure is the first one's.
    if not answer.cancelled():
        answer.exception()
