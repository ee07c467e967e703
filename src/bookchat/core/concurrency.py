"""Caps on work in flight: slots per client (answer streams) and bulkheads (searches).

A rate limit counts requests over time; these count what is running now. A client's slots live
in this process, or in Redis when it is configured, so that every replica sees the same count.
A slot in Redis expires on its own after `ttl_seconds` (the longest a holder can run), so a
replica that crashes while holding slots does not leak them. Like the rate limits, slots fail
OPEN when Redis is down: a Redis outage must not refuse every stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis

from bookchat.core.config import Settings
from bookchat.core.errors import DependencyUnavailable
from bookchat.core.redis import REDIS_OUTAGE_ERRORS, RedisStatus

logger = structlog.get_logger(__name__)

KEY_PREFIX = "bookchat:slots"
STORAGE_UNAVAILABLE_EVENT = "slots.storage_unavailable"

# Drop the expired slots, then take one if fewer than the limit are held. Redis's clock, not
# the replicas': they may disagree. Returns 1 when taken, else 0.
_ACQUIRE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl_ms = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now_ms + ttl_ms, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl_ms)
return 1
"""


def _opaque(identity: str) -> str:
    # Keys in Redis are visible to whoever runs it: no IPs or user ids in clear.
    return hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()


class ClientSlots:
    """At most `limit` slots per identity at a time, counted in this process."""

    profile = "memory"

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self._held: Counter[str] = Counter()

    async def acquire(self, identity: str, limit: int) -> str | None:
        """A token for a new slot of `identity`, or None when it already holds `limit`."""
        if self._held[identity] >= limit:
            return None
        self._held[identity] += 1
        return identity

    async def release(self, identity: str, token: str) -> None:
        """Give back the slot `acquire` returned `token` for."""
        self._held[identity] -= 1
        if self._held[identity] <= 0:
            del self._held[identity]


class RedisClientSlots(ClientSlots):
    """The same, shared by every replica: a sorted set per identity, slot -> expiry time."""

    profile = "redis"

    def __init__(
        self, scope: str, redis: Redis, status: RedisStatus, *, ttl_seconds: float
    ) -> None:
        super().__init__(scope)
        self.redis = redis
        self.status = status
        self.ttl_ms = max(1, math.ceil(ttl_seconds * 1000))
        self._acquire = redis.register_script(_ACQUIRE)

    def _key(self, identity: str) -> str:
        return f"{KEY_PREFIX}:{self.scope}:{_opaque(identity)}"

    async def acquire(self, identity: str, limit: int) -> str | None:
        if self.status.is_open():
            return ""  # fail open; "" releases nothing
        token = uuid.uuid4().hex
        try:
            taken = await self._acquire(
                keys=[self._key(identity)], args=[self.ttl_ms, limit, token]
            )
        except REDIS_OUTAGE_ERRORS as exc:
            self.status.record_failure(STORAGE_UNAVAILABLE_EVENT, exc, scope=self.scope)
            return ""
        self.status.record_success()
        return token if taken else None

    async def release(self, identity: str, token: str) -> None:
        if not token or self.status.is_open():
            return  # a slot Redis did not count, or Redis is down: it expires on its own
        try:
            await self.redis.zrem(self._key(identity), token)
        except REDIS_OUTAGE_ERRORS as exc:
            self.status.record_failure(STORAGE_UNAVAILABLE_EVENT, exc, scope=self.scope)


def stream_slot_lifetime(settings: Settings) -> float:
    """The longest a stream can hold its slot: what it does before its first event (a
    follow-up rewrite and the retrieval, each with its model retries), its run, and a last send
    to a reader who does not read. A slot in Redis expires after it, so a crashed replica's
    slots come back."""
    before = 2 * settings.llm_timeout_seconds * (settings.llm_max_retries + 1)
    return before + settings.stream_max_seconds + settings.stream_send_timeout_seconds


def build_client_slots(
    scope: str, redis: Redis | None, status: RedisStatus, *, ttl_seconds: float
) -> ClientSlots:
    """Slots shared through Redis when it is configured, else counted in this process."""
    if redis is None:
        return ClientSlots(scope)
    return RedisClientSlots(scope, redis, status, ttl_seconds=ttl_seconds)


class Bulkhead:
    """At most `size` holders at a time, and at most `per_client` of them from one client; a
    caller that waits longer than `wait_seconds` for its turn gets a 503 with `Retry-After`
    instead of an ever longer queue.

    Without the per-client share, one client's burst fills every place and the queue before
    them, and everyone else waits behind all of it; with it, the burst waits behind itself and
    another client's request finds a place (or queues behind at most `per_client` requests of
    each other busy client)."""

    def __init__(
        self, name: str, size: int, *, wait_seconds: float, per_client: int | None = None
    ) -> None:
        self.name = name
        self.size = size
        self.wait_seconds = wait_seconds
        self.per_client = per_client
        self._semaphore = asyncio.Semaphore(size)
        # A client's own places, kept while it holds or waits for one.
        self._clients: dict[str, _Share] = {}

    @asynccontextmanager
    async def slot(self, client: str | None = None) -> AsyncIterator[None]:
        """Hold one of the places for the duration of the block (one of `client`'s, too)."""
        own = self._enter(client)
        held: list[asyncio.Semaphore] = []
        try:
            try:
                async with asyncio.timeout(self.wait_seconds):
                    for semaphore in (own, self._semaphore):
                        if semaphore is not None:
                            await semaphore.acquire()
                            held.append(semaphore)
            except TimeoutError:
                logger.warning("bulkhead.full", bulkhead=self.name, size=self.size)
                raise DependencyUnavailable(
                    f"The {self.name} is busy; try again in a moment.",
                    headers={"Retry-After": "1"},
                ) from None
            yield
        finally:
            for semaphore in reversed(held):
                semaphore.release()
            self._leave(client)

    def _enter(self, client: str | None) -> asyncio.Semaphore | None:
        if client is None or self.per_client is None:
            return None
        share = self._clients.get(client)
        if share is None:
            share = self._clients[client] = _Share(asyncio.Semaphore(self.per_client))
        share.users += 1
        return share.places

    def _leave(self, client: str | None) -> None:
        if client is None or client not in self._clients:
            return
        share = self._clients[client]
        share.users -= 1
        if share.users <= 0:
            del self._clients[client]


@dataclass(slots=True)
class _Share:
    """One client's places in a bulkhead, and how many of its requests hold or wait for one."""

    places: asyncio.Semaphore
    users: int = 0
