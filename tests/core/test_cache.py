"""Caches: the in-process LRU, the Redis cache on the real server, versions, failing open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import structlog

from bookchat.core.cache import INDEX_VERSION, MemoryCache, RedisCache, versioned_key
from bookchat.core.redis import RedisStatus, create_redis
from tests.conftest import PrivateRedis

CLOSED_PORT_URL = "redis://127.0.0.1:1/0"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestMemoryCache:
    async def test_round_trip_and_delete(self) -> None:
        cache = MemoryCache()
        await cache.set("a", b"answer", ttl=60)
        assert await cache.get("a") == b"answer"
        await cache.delete("a")
        assert await cache.get("a") is None
        assert await cache.get("never-set") is None

    async def test_entries_expire_after_their_ttl(self) -> None:
        clock = FakeClock()
        cache = MemoryCache(clock=clock)
        await cache.set("a", b"1", ttl=10)
        clock.now += 9.9
        assert await cache.get("a") == b"1"
        clock.now += 0.2
        assert await cache.get("a") is None
        assert len(cache) == 0

    async def test_zero_ttl_stores_nothing(self) -> None:
        cache = MemoryCache()
        await cache.set("a", b"1", ttl=0)
        assert await cache.get("a") is None

    async def test_least_recently_used_entry_goes_first(self) -> None:
        cache = MemoryCache(max_entries=2)
        await cache.set("a", b"1", ttl=60)
        await cache.set("b", b"2", ttl=60)
        await cache.get("a")  # now "b" is the least recently used
        await cache.set("c", b"3", ttl=60)
        assert [await cache.get(key) for key in "abc"] == [b"1", None, b"3"]

    async def test_total_size_is_bounded(self) -> None:
        cache = MemoryCache(max_bytes=10)
        await cache.set("a", b"12345", ttl=60)
        await cache.set("b", b"12345", ttl=60)
        await cache.set("c", b"123", ttl=60)
        await cache.set("huge", b"x" * 11, ttl=60)
        assert [await cache.get(key) for key in ("a", "b", "c", "huge")] == [
            None,
            b"12345",
            b"123",
            None,
        ]

    async def test_bump_moves_keys_to_a_new_version(self) -> None:
        cache = MemoryCache()
        first = await versioned_key(cache, "answer", "what is ros?", "")
        assert first == await versioned_key(cache, "answer", "what is ros?", "")
        assert first != await versioned_key(cache, "answer", "what is ros", "?")
        assert await cache.version(INDEX_VERSION) == 0
        assert await cache.bump(INDEX_VERSION) == 1
        second = await versioned_key(cache, "answer", "what is ros?", "")
        assert second != first
        assert second is not None
        assert second.startswith("answer:v1:")
        assert "ros" not in second  # reader text is hashed


@pytest.fixture
async def redis_cache(redis_url: str) -> AsyncIterator[RedisCache]:
    client = create_redis(redis_url)
    yield RedisCache(client, RedisStatus())
    await client.aclose()


class TestRedisCache:
    async def test_round_trip_under_the_prefix(self, redis_cache: RedisCache) -> None:
        await redis_cache.set("answer:1", b"\x00bytes\xff", ttl=60)
        assert await redis_cache.get("answer:1") == b"\x00bytes\xff"
        assert await redis_cache.redis.exists("bookchat:answer:1") == 1
        await redis_cache.delete("answer:1")
        assert await redis_cache.get("answer:1") is None

    async def test_entries_expire(self, redis_cache: RedisCache) -> None:
        await redis_cache.set("short", b"1", ttl=0.2)
        await redis_cache.set("never", b"1", ttl=0)
        assert await redis_cache.get("short") == b"1"
        await asyncio.sleep(0.3)
        assert await redis_cache.get("short") is None
        assert await redis_cache.get("never") is None

    async def test_replicas_share_versions(self, redis_cache: RedisCache, redis_url: str) -> None:
        other_client = create_redis(redis_url)
        other = RedisCache(other_client, RedisStatus())
        try:
            version = await redis_cache.version(INDEX_VERSION)
            assert version is not None
            assert await other.version(INDEX_VERSION) == version
            key = await versioned_key(redis_cache, "answer", "q")
            assert key == await versioned_key(other, "answer", "q")

            assert await other.bump(INDEX_VERSION) == version + 1
            assert await redis_cache.version(INDEX_VERSION) == version + 1
            assert await versioned_key(redis_cache, "answer", "q") != key
        finally:
            await other_client.aclose()


class TestRedisCacheFailsOpen:
    async def test_unreachable_redis_is_a_miss_and_no_version(self) -> None:
        client = create_redis(CLOSED_PORT_URL)
        status = RedisStatus(cooldown=0)
        cache = RedisCache(client, status)
        try:
            with structlog.testing.capture_logs() as logs:
                await cache.set("a", b"1", ttl=60)
                assert await cache.get("a") is None
                await cache.delete("a")
                assert await cache.version(INDEX_VERSION) is None
                assert await versioned_key(cache, "answer", "q") is None
        finally:
            await client.aclose()

        assert status.last_failure is not None
        assert status.last_failure.error == "ConnectionError"
        warnings = [log for log in logs if log["event"] == "cache.unavailable"]
        assert len(warnings) == 1  # rate-limited logging

    async def test_a_missed_bump_is_paid_before_the_next_version(
        self, private_redis: PrivateRedis
    ) -> None:
        client = create_redis(private_redis.url)
        cache = RedisCache(client, RedisStatus(cooldown=0))
        try:
            before = await cache.version(INDEX_VERSION)
            assert before is not None

            private_redis.stop()
            assert await cache.bump(INDEX_VERSION) is None  # re-ingested during the outage
            assert await cache.version(INDEX_VERSION) is None  # no cache meanwhile

            private_redis.start()  # back, and empty: the counter is gone too
            after = await cache.version(INDEX_VERSION)
            assert after is not None
            assert after > before
            assert await cache.version(INDEX_VERSION) == after  # paid once, not every time
        finally:
            await client.aclose()

    async def test_breaker_skips_redis_after_a_failure(self) -> None:
        client = create_redis(CLOSED_PORT_URL)
        status = RedisStatus(cooldown=60)
        cache = RedisCache(client, status)
        try:
            with structlog.testing.capture_logs() as logs:
                for _ in range(3):
                    assert await cache.get("a") is None
        finally:
            await client.aclose()
        assert status.is_open()
        assert len(logs) == 1  # one failure; then Redis was not tried again
