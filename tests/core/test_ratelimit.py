"""Rate limits: the limiter on memory and on the real Redis, who the caller is, the 429 on the
chat endpoints, and failing open when Redis goes away."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from fastapi import Depends, FastAPI, Request

from bookchat.core.errors import RateLimited
from bookchat.core.ratelimit import (
    RateDecision,
    RateLimiter,
    client_ip,
    enforce,
    ip_identity,
    parse_trusted_proxies,
)
from bookchat.core.redis import RedisStatus, create_redis
from bookchat.dependencies import rate_limited
from tests.conftest import AppFactory, PrivateRedis, make_settings

CLOSED_PORT_URL = "redis://127.0.0.1:1/0"


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    """The in-process limiter, then the one on the test Redis."""
    if request.param == "memory":
        yield RateLimiter.in_memory()
        return
    client = create_redis(request.getfixturevalue("redis_url"))
    yield RateLimiter.on_redis(client, RedisStatus())
    await client.aclose()


class TestLimiter:
    async def test_allows_the_quota_then_refuses_with_retry_after(
        self, limiter: RateLimiter
    ) -> None:
        decisions = [await limiter.hit("chat", "ip:10.0.0.1", "3/minute") for _ in range(4)]

        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert [d.remaining for d in decisions] == [2, 1, 0, 0]
        assert decisions[-1].retry_after in range(55, 61)
        assert all(d.retry_after == 0 for d in decisions[:3])

    async def test_identities_and_scopes_are_counted_apart(self, limiter: RateLimiter) -> None:
        assert (await limiter.hit("chat", "user:a", "1/minute")).allowed
        assert not (await limiter.hit("chat", "user:a", "1/minute")).allowed
        assert (await limiter.hit("chat", "user:b", "1/minute")).allowed
        assert (await limiter.hit("login", "user:a", "1/minute")).allowed

    async def test_every_part_of_a_compound_rate_applies(self, limiter: RateLimiter) -> None:
        rate = "100/hour;2/second"
        assert (await limiter.hit("chat", "ip:10.0.0.2", rate)).allowed
        assert (await limiter.hit("chat", "ip:10.0.0.2", rate)).allowed
        refused = await limiter.hit("chat", "ip:10.0.0.2", rate)
        assert not refused.allowed
        assert refused.retry_after == 1

    async def test_the_window_moves_on(self, limiter: RateLimiter) -> None:
        # Real time on purpose: this is the limiter's own behaviour, with a 1-second window.
        assert (await limiter.hit("chat", "ip:10.0.0.3", "1/second")).allowed
        assert not (await limiter.hit("chat", "ip:10.0.0.3", "1/second")).allowed
        await asyncio.sleep(1.1)
        assert (await limiter.hit("chat", "ip:10.0.0.3", "1/second")).allowed

    async def test_clear_forgets_the_hits(self, limiter: RateLimiter) -> None:
        await limiter.hit("login", "email:a@example.org", "1/minute")
        await limiter.clear("login", "email:a@example.org", "1/minute")
        assert (await limiter.hit("login", "email:a@example.org", "1/minute")).allowed

    async def test_peek_says_without_counting(self, limiter: RateLimiter) -> None:
        peeks = [await limiter.peek("admin_key", "ip:10.0.0.9", "2/minute") for _ in range(3)]
        await limiter.hit("admin_key", "ip:10.0.0.9", "2/minute")
        await limiter.hit("admin_key", "ip:10.0.0.9", "2/minute")
        spent = await limiter.peek("admin_key", "ip:10.0.0.9", "2/minute")

        assert all(p.allowed for p in peeks)  # peeking three times spent nothing
        assert not spent.allowed
        assert spent.retry_after in range(55, 61)

    def test_the_in_process_count_needs_no_worker_thread(self) -> None:
        # Worker threads hash passwords and encode queries; when every one is busy, counting a
        # hit must still answer at once (limits' async memory storage swept expired entries
        # with a thread hop per key while holding that key's lock, so a second hit waited for
        # a free thread). On a loop of its own, whose only worker thread is kept busy.
        async def two_hits_and_a_peek() -> list[RateDecision]:
            limiter = RateLimiter.in_memory()
            loop = asyncio.get_running_loop()
            loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
            release = threading.Event()
            busy = loop.run_in_executor(None, release.wait, 30)
            try:
                async with asyncio.timeout(5):
                    first = await limiter.hit("chat", "ip:10.0.0.5", "3/minute")
                    await asyncio.sleep(0.05)  # whatever the first hit set going gets to run
                    second = await limiter.hit("chat", "ip:10.0.0.5", "3/minute")
                    peeked = await limiter.peek("chat", "ip:10.0.0.5", "3/minute")
            finally:
                release.set()
                await busy
            return [first, second, peeked]

        first, second, peeked = asyncio.run(two_hits_and_a_peek())

        assert [first.remaining, second.remaining] == [2, 1]
        assert peeked.allowed

    async def test_replicas_share_the_count_through_redis(self, redis_url: str) -> None:
        first, second = create_redis(redis_url), create_redis(redis_url)
        try:
            one = RateLimiter.on_redis(first, RedisStatus())
            two = RateLimiter.on_redis(second, RedisStatus())
            assert (await one.hit("chat", "ip:10.0.0.4", "2/minute")).allowed
            assert (await two.hit("chat", "ip:10.0.0.4", "2/minute")).allowed
            assert not (await one.hit("chat", "ip:10.0.0.4", "2/minute")).allowed
            keys = [key.decode() async for key in first.scan_iter()]
        finally:
            await first.aclose()
            await second.aclose()
        # Prefixed, and no address in clear.
        assert keys
        assert all(key.startswith("bookchat:limits:") for key in keys)
        assert not any("10.0.0.4" in key for key in keys)


class TestEnforce:
    async def test_refuses_when_any_identity_is_over(self) -> None:
        limiter = RateLimiter.in_memory()
        await enforce(limiter, "login", ["ip:10.0.0.5", "email:a@example.org"], "1/minute")

        # Another address, same account: the e-mail's quota is spent.
        with pytest.raises(RateLimited) as refused:
            await enforce(limiter, "login", ["ip:10.0.0.6", "email:a@example.org"], "1/minute")

        assert refused.value.status_code == 429
        assert refused.value.code == "rate_limited"
        seconds = int(refused.value.headers["Retry-After"])
        assert 1 <= seconds <= 60
        assert f"try again in {seconds} seconds" in refused.value.message


class TestFailOpen:
    async def test_unreachable_redis_allows_and_is_recorded(self) -> None:
        client = create_redis(CLOSED_PORT_URL)
        status = RedisStatus()
        limiter = RateLimiter.on_redis(client, status)
        try:
            started = time.perf_counter()
            decisions = [await limiter.hit("chat", "ip:10.0.0.7", "1/minute") for _ in range(5)]
            elapsed = time.perf_counter() - started
        finally:
            await client.aclose()

        assert all(d.allowed and d.remaining is None for d in decisions)
        assert elapsed < 1.0  # an outage costs milliseconds, not a timeout per request
        assert status.last_failure is not None
        assert status.last_failure.error == "ConnectionError"
        assert status.last_failure.event == "ratelimit.storage_unavailable"
        assert status.is_open()

    async def test_peek_fails_open_too(self) -> None:
        client = create_redis(CLOSED_PORT_URL)
        status = RedisStatus()
        limiter = RateLimiter.on_redis(client, status)
        try:
            decisions = [
                await limiter.peek("admin_key", "ip:10.0.0.7", "1/minute") for _ in range(2)
            ]
        finally:
            await client.aclose()
        assert all(d.allowed for d in decisions)
        assert status.last_failure is not None
        assert status.is_open()

    async def test_warns_at_most_once_per_interval(self) -> None:
        client = create_redis(CLOSED_PORT_URL)
        # No breaker, so every hit reaches Redis and fails.
        limiter = RateLimiter.on_redis(client, RedisStatus(cooldown=0))
        try:
            with structlog.testing.capture_logs() as logs:
                for _ in range(3):
                    await limiter.hit("chat", "ip:10.0.0.8", "1/minute")
        finally:
            await client.aclose()

        warnings = [log for log in logs if log["event"] == "ratelimit.storage_unavailable"]
        assert len(warnings) == 1
        assert warnings[0]["log_level"] == "warning"
        assert warnings[0]["error_type"] == "ConnectionError"


def scope_from(peer: str, *forwarded: str) -> dict[str, Any]:
    return {
        "type": "http",
        "client": (peer, 50000),
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded],
    }


class TestClientIp:
    def test_untrusted_peer_is_the_client_whatever_it_forwards(self) -> None:
        assert client_ip(scope_from("203.0.113.9", "1.2.3.4"), []) == "203.0.113.9"
        assert client_ip(scope_from("203.0.113.9", "1.2.3.4"), ["10.0.0.0/8"]) == "203.0.113.9"

    def test_trusted_proxy_hands_over_the_right_most_untrusted_address(self) -> None:
        trusted = ["10.0.0.0/8", "192.0.2.7"]
        # The client wrote "6.6.6.6" itself; the first proxy appended the address it saw.
        scope = scope_from("10.1.2.3", "6.6.6.6, 198.51.100.4, 192.0.2.7")
        assert client_ip(scope, trusted) == "198.51.100.4"

    def test_several_forwarded_headers_read_as_one_list(self) -> None:
        scope = scope_from("10.1.2.3", "6.6.6.6", "198.51.100.4")
        assert client_ip(scope, ["10.0.0.0/8"]) == "198.51.100.4"

    def test_trusted_proxy_without_forwarded_header_is_the_client(self) -> None:
        assert client_ip(scope_from("10.1.2.3"), ["10.0.0.0/8"]) == "10.1.2.3"

    def test_garbage_stops_at_the_last_vouched_address(self) -> None:
        scope = scope_from("10.1.2.3", "1.2.3.4, not-an-ip, 10.9.9.9")
        assert client_ip(scope, ["10.0.0.0/8"]) == "10.9.9.9"

    def test_ipv4_mapped_ipv6_peer_is_plain_ipv4(self) -> None:
        assert client_ip(scope_from("::ffff:10.1.2.3", "1.2.3.4"), ["10.0.0.0/8"]) == "1.2.3.4"

    def test_ipv6_clients_are_counted_per_64(self) -> None:
        assert ip_identity("2001:db8:1:2:aaaa::1") == ip_identity("2001:db8:1:2:bbbb::2")
        assert ip_identity("2001:db8:1:2::1") == "ip:2001:db8:1:2::/64"
        assert ip_identity("198.51.100.4") == "ip:198.51.100.4"

    def test_a_bad_trusted_proxy_is_a_clear_error(self) -> None:
        with pytest.raises(ValueError, match=r"TRUSTED_PROXIES: 'proxy\.local'"):
            parse_trusted_proxies(("10.0.0.1", "proxy.local"))


CHAT = {"message": "What is a publisher?"}


class TestChatEndpoints:
    @pytest.mark.parametrize("storage", ["memory", "redis"])
    async def test_429_after_the_quota_with_retry_after(
        self, storage: str, sqlite_url: str, app_factory: AppFactory, request: pytest.FixtureRequest
    ) -> None:
        redis_url = request.getfixturevalue("redis_url") if storage == "redis" else None
        settings = make_settings(sqlite_url, rate_limit_chat="2/minute", redis_url=redis_url)
        async with app_factory(settings) as client:
            allowed = [await client.post("/api/v1/chat", json=CHAT) for _ in range(2)]
            refused = await client.post("/api/v1/chat", json=CHAT, headers={"X-Request-ID": "r-1"})
            stream = await client.post("/api/v1/chat/stream", json=CHAT)

        assert [r.status_code for r in allowed] == [200, 200]
        assert refused.status_code == 429
        body = refused.json()
        assert body["error"]["code"] == "rate_limited"
        assert body["request_id"] == "r-1"
        seconds = int(refused.headers["retry-after"])
        assert 1 <= seconds <= 60
        assert f"try again in {seconds} seconds" in body["error"]["message"]
        # The stream shares the chat quota.
        assert stream.status_code == 429

    async def test_trusted_proxy_forwarded_clients_are_counted_apart(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        # The in-process transport's peer is 127.0.0.1.
        settings = make_settings(
            sqlite_url, rate_limit_chat="1/minute", trusted_proxies="127.0.0.1"
        )
        async with app_factory(settings) as client:
            one = await client.post(
                "/api/v1/chat", json=CHAT, headers={"X-Forwarded-For": "1.1.1.1"}
            )
            two = await client.post(
                "/api/v1/chat", json=CHAT, headers={"X-Forwarded-For": "2.2.2.2"}
            )
            again = await client.post(
                "/api/v1/chat", json=CHAT, headers={"X-Forwarded-For": "1.1.1.1"}
            )
        assert (one.status_code, two.status_code, again.status_code) == (200, 200, 429)

    async def test_forwarded_header_is_ignored_from_untrusted_peers(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, rate_limit_chat="1/minute")
        async with app_factory(settings) as client:
            one = await client.post(
                "/api/v1/chat", json=CHAT, headers={"X-Forwarded-For": "1.1.1.1"}
            )
            two = await client.post(
                "/api/v1/chat", json=CHAT, headers={"X-Forwarded-For": "2.2.2.2"}
            )
        assert (one.status_code, two.status_code) == (200, 429)


async def fake_authentication(request: Request) -> SimpleNamespace | None:
    """Stands in for the accounts dependency that resolves the bearer token."""
    user = request.headers.get("X-Test-User")
    return SimpleNamespace(id=user) if user else None


def add_limited_route(app: FastAPI) -> None:
    limit = rate_limited(
        "test", lambda settings, _book: settings.rate_limit_chat, after=fake_authentication
    )

    async def limited() -> dict[str, str]:
        return {"status": "ok"}

    app.add_api_route("/limited", limited, methods=["POST"], dependencies=[Depends(limit)])


class TestIdentity:
    async def test_users_and_addresses_have_their_own_quota(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, rate_limit_chat="1/minute")
        alice, bob = {"X-Test-User": "alice"}, {"X-Test-User": "bob"}
        async with app_factory(settings, customize=add_limited_route) as client:
            codes = [
                (await client.post("/limited", headers=alice)).status_code,
                (await client.post("/limited", headers=alice)).status_code,
                (await client.post("/limited", headers=bob)).status_code,
                (await client.post("/limited")).status_code,  # anonymous: by address
                (await client.post("/limited")).status_code,
            ]
        assert codes == [200, 429, 200, 200, 429]


class TestRedisOutage:
    async def test_requests_are_served_and_health_says_unavailable(
        self, private_redis: PrivateRedis, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = make_settings(
            sqlite_url, rate_limit_chat="2/minute", redis_url=private_redis.url
        )
        async with app_factory(settings) as client:
            before = [(await client.post("/api/v1/chat", json=CHAT)).status_code for _ in range(3)]
            healthy = (await client.get("/api/v1/health")).json()

            private_redis.stop()
            started = time.perf_counter()
            during = [(await client.post("/api/v1/chat", json=CHAT)).status_code for _ in range(4)]
            elapsed = time.perf_counter() - started
            health = await client.get("/api/v1/health")
            redis_health = await client.get("/api/v1/health/redis")
            ready = await client.get("/api/v1/health/ready")

        assert before == [200, 200, 429]  # the limit lived in Redis
        assert healthy["components"]["redis"]["status"] == "ok"
        assert healthy["components"]["redis"]["profile"] == "redis"

        assert during == [200, 200, 200, 200]  # fail open
        assert elapsed < 5
        body = health.json()
        assert body["status"] == "degraded"
        component = body["components"]["redis"]
        assert component["status"] == "unavailable"
        assert component["profile"] == "redis"
        assert "ratelimit.storage_unavailable" in component["detail"]
        assert private_redis.url.rsplit("/", 1)[0] in component["detail"]
        assert redis_health.status_code == 503
        assert redis_health.json()["error"]["code"] == "dependency_unavailable"
        assert ready.status_code == 200  # Redis is optional: not part of readiness


class TestHealthProfile:
    async def test_memory_when_redis_is_not_configured(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            body = (await client.get("/api/v1/health")).json()
            redis_health = await client.get("/api/v1/health/redis")
        assert body["components"]["redis"]["status"] == "ok"
        assert body["components"]["redis"]["profile"] == "memory"
        assert redis_health.status_code == 200

    async def test_redis_url_password_is_not_shown(
        self, redis_server_url: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        # A password the test server does not need: Redis answers AUTH with an error, which is
        # enough to see the health detail without the secret.
        url = redis_server_url.replace("redis://", "redis://:s3cret-pass@")
        async with app_factory(make_settings(sqlite_url, redis_url=url)) as client:
            response = await client.get("/api/v1/health")
        assert "s3cret-pass" not in response.text
        assert response.json()["components"]["redis"]["profile"] == "redis"
