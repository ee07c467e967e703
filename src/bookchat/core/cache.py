"""Caches of bytes with a time to live: in process by default, shared through Redis when set.

Invalidation is by version: keys embed the current version of a namespace (`INDEX_VERSION` for
anything derived from the book), and `bump` moves every later lookup to new keys, so a
re-ingested book never meets answers cached from the old text. The old entries age out by TTL.

Redis failures fail open: a read is a miss, a write is skipped. The version is the exception to
"carry on regardless": when Redis cannot say which version is current, `version` returns None and
callers must neither read nor write the cache (see `versioned_key`). A local stand-in counter
would be wrong the moment Redis came back, and a stale answer after re-ingestion is worse than a
miss. A `bump` that fails is owed and retried before this process's next version read, and
versions start from the clock rather than 0, so a Redis that restarted empty never hands out a
version that already keyed entries.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import structlog
from redis.asyncio import Redis

from bookchat.core.config import Settings
from bookchat.core.metrics import Metrics, metric_book
from bookchat.core.redis import REDIS_OUTAGE_ERRORS, RedisStatus

logger = structlog.get_logger(__name__)

# Bumped whenever the book's content changes (ingestion, document update or delete).
INDEX_VERSION = "index"
REDIS_PREFIX = "bookchat:"
CACHE_UNAVAILABLE_EVENT = "cache.unavailable"


class Cache(Protocol):
    """Bytes by key with a TTL, and namespace versions for invalidation."""

    @property
    def profile(self) -> str: ...

    async def get(self, key: str) -> bytes | None:
        """The value, or None when absent, expired or unreachable."""
        ...

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store for `ttl` seconds (a TTL of 0 or less stores nothing)."""
        ...

    async def delete(self, key: str) -> None: ...

    async def version(self, name: str) -> int | None:
        """The current version of `name`; None when unknown (then do not use the cache)."""
        ...

    async def bump(self, name: str) -> int | None:
        """Move `name` to a new version, so keys built with the old one are never read again."""
        ...


async def versioned_key(
    cache: Cache, kind: str, *parts: str, version: str = INDEX_VERSION
) -> str | None:
    """`<kind>:v<version>:<sha256 of parts>`, or None when the version is unknown: skip the cache.

    Parts are hashed so keys stay short and hold no reader text in clear.
    """
    current = await cache.version(version)
    if current is None:
        return None
    digest = hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()
    return f"{kind}:v{current}:{digest}"


class MemoryCache:
    """An LRU of at most `max_entries` entries and `max_bytes` bytes of values, with TTLs."""

    profile = "memory"

    def __init__(
        self,
        *,
        max_entries: int = 5_000,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self._versions: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at <= self._clock():
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._remove(key)
        if ttl <= 0 or len(value) > self.max_bytes:
            return
        self._entries[key] = (self._clock() + ttl, value)
        self._bytes += len(value)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)

    async def delete(self, key: str) -> None:
        self._remove(key)

    async def version(self, name: str) -> int | None:
        return self._versions.get(name, 0)

    async def bump(self, name: str) -> int | None:
        self._versions[name] = self._versions.get(name, 0) + 1
        return self._versions[name]

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[1])


class RedisCache:
    """Entries under `bookchat:<key>`, versions under `bookchat:version:<name>`; fails open."""

    profile = "redis"

    def __init__(self, redis: Redis, status: RedisStatus, *, prefix: str = REDIS_PREFIX) -> None:
        self.redis = redis
        self.status = status
        self.prefix = prefix
        self._owed_bumps: set[str] = set()

    async def get(self, key: str) -> bytes | None:
        if self.status.is_open():
            return None
        try:
            value = await self.redis.get(self.prefix + key)
        except REDIS_OUTAGE_ERRORS as exc:
            self._failed(exc, "get")
            return None
        self.status.record_success()
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        if ttl <= 0 or self.status.is_open():
            return
        try:
            await self.redis.set(self.prefix + key, value, px=max(1, round(ttl * 1000)))
        except REDIS_OUTAGE_ERRORS as exc:
            self._failed(exc, "set")
            return
        self.status.record_success()

    async def delete(self, key: str) -> None:
        if self.status.is_open():
            return
        try:
            await self.redis.delete(self.prefix + key)
        except REDIS_OUTAGE_ERRORS as exc:
            self._failed(exc, "delete")
            return
        self.status.record_success()

    async def version(self, name: str) -> int | None:
        if name in self._owed_bumps:
            return await self._pay_bump(name)
        if self.status.is_open():
            return None
        return await self._versioned(name, "version", increment=False)

    async def bump(self, name: str) -> int | None:
        # Entries keyed with the old version must never be served once Redis answers again:
        # a bump that fails is owed, and paid before this process next reads the version.
        self._owed_bumps.add(name)
        version = await self._pay_bump(name)
        if version is None:
            logger.error("cache.bump_failed", version=name)
        return version

    async def _pay_bump(self, name: str) -> int | None:
        if self.status.is_open():
            return None
        version = await self._versioned(name, "bump", increment=True)
        if version is not None:
            self._owed_bumps.discard(name)
        return version

    async def _versioned(self, name: str, operation: str, *, increment: bool) -> int | None:
        """The version of `name` (started from the clock when missing), moved on by one when
        `increment`; None when Redis fails."""
        key = self._version_key(name)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(key, _clock_version(), nx=True)
                if increment:
                    pipe.incr(key)
                else:
                    pipe.get(key)
                _, value = await pipe.execute()
        except REDIS_OUTAGE_ERRORS as exc:
            self._failed(exc, operation)
            return None
        self.status.record_success()
        return int(value)

    def _version_key(self, name: str) -> str:
        return f"{self.prefix}version:{name}"

    def _failed(self, exc: BaseException, operation: str) -> None:
        self.status.record_failure(CACHE_UNAVAILABLE_EVENT, exc, operation=operation)


def _clock_version() -> int:
    # Milliseconds since the epoch: later than any version counted up from an earlier start.
    return time.time_ns() // 1_000_000


class MeasuredCache:
    """A cache that counts its reads as hits and misses, per kind of entry (the key's first
    segment: `answer`, `embedding`)."""

    def __init__(self, inner: Cache, metrics: Metrics) -> None:
        self.inner = inner
        self._lookups = metrics.cache_lookups

    @property
    def profile(self) -> str:
        return self.inner.profile

    async def get(self, key: str) -> bytes | None:
        value = await self.inner.get(key)
        kind = key.partition(":")[0]
        self._lookups.labels(metric_book(), kind, "miss" if value is None else "hit").inc()
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self.inner.set(key, value, ttl)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def version(self, name: str) -> int | None:
        return await self.inner.version(name)

    async def bump(self, name: str) -> int | None:
        return await self.inner.bump(name)


def build_cache(
    settings: Settings, redis: Redis | None, status: RedisStatus, metrics: Metrics | None = None
) -> Cache:
    """The Redis cache when Redis is configured, else the in-process one (measured when
    `metrics` is given)."""
    cache: Cache = MemoryCache() if redis is None else RedisCache(redis, status)
    return cache if metrics is None else MeasuredCache(cache, metrics)
