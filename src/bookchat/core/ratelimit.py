"""Rate limits on the `limits` library: in process by default, shared through Redis when set.

Strategy: the moving window. It counts the hits of the last full period at every instant, so a
client never gets twice its quota by straddling a window boundary the way the fixed window
allows (5/minute on login must mean 5 guesses a minute, not 10 in two seconds), refused hits do
not count (a client that keeps knocking is not locked out longer), and the time until the oldest
hit leaves the window is an exact `Retry-After`. It stores one entry per allowed hit, which is
cheap for the small quotas used here.

When the storage (Redis) fails, limits fail OPEN: the request is allowed, a warning is logged at
most every 30 s, and the failure is recorded in `RedisStatus` for the health endpoint. Refusing
every reader because the limiter's storage is down would turn a Redis outage into a full outage.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import limits.storage
import limits.strategies
import structlog
from fastapi import Request
from limits import RateLimitItem, WindowStats, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import Redis
from starlette.types import Scope

from bookchat.core.config import Settings
from bookchat.core.errors import RateLimited
from bookchat.core.metrics import Metrics, metric_book
from bookchat.core.redis import REDIS_OUTAGE_ERRORS, RedisStatus

logger = structlog.get_logger(__name__)

KEY_PREFIX = "bookchat:limits"
STORAGE_UNAVAILABLE_EVENT = "ratelimit.storage_unavailable"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# What "the storage is unavailable" looks like: limits' wrapped errors, and redis-py's own from
# the calls limits does not wrap (the moving window's Lua scripts).
_STORAGE_ERRORS: tuple[type[Exception], ...] = (StorageError, *REDIS_OUTAGE_ERRORS)


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The verdict on one hit. `remaining` is None when the storage could not say (fail open)."""

    allowed: bool
    retry_after: int = 0  # seconds; at least 1 when refused
    remaining: int | None = None


@lru_cache(maxsize=64)
def parse_rate(rate: str) -> tuple[RateLimitItem, ...]:
    """`20/minute;100/hour` as `limits` items (parsed once per distinct string)."""
    return tuple(parse_many(rate))


def _opaque(identity: str) -> str:
    # Keys in Redis are visible to whoever runs it: no e-mail addresses or IPs in clear.
    return hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()


class Window(Protocol):
    """The moving window's operations, as `limits.aio.strategies.MovingWindowRateLimiter`
    has them."""

    async def hit(self, item: RateLimitItem, *identifiers: str) -> bool: ...

    async def test(self, item: RateLimitItem, *identifiers: str) -> bool: ...

    async def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats: ...

    async def clear(self, item: RateLimitItem, *identifiers: str) -> None: ...


class InProcessWindow:
    """The moving window on `limits`' thread-safe in-memory storage, called inline (it does no
    I/O). Its async twin sweeps expired entries after nearly every hit with one worker-thread
    hop per key, holding that key's lock meanwhile: with a few hundred clients known that is a
    fifth of a core at 20 hits/s, and with every worker thread busy (password hashing, query
    encoding) a second hit of the same client waited for a free thread."""

    def __init__(self) -> None:
        self._window = limits.strategies.MovingWindowRateLimiter(limits.storage.MemoryStorage())

    async def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        return self._window.hit(item, *identifiers)

    async def test(self, item: RateLimitItem, *identifiers: str) -> bool:
        return self._window.test(item, *identifiers)

    async def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        return self._window.get_window_stats(item, *identifiers)

    async def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        self._window.clear(item, *identifiers)


class RateLimiter:
    """Counts hits per (scope, identity) against a rate such as `20/minute`."""

    def __init__(
        self,
        window: Window,
        *,
        profile: str,
        status: RedisStatus | None = None,
        trusted_proxies: Sequence[str] = (),
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.profile = profile
        self.status = status
        self.trusted_proxies = parse_trusted_proxies(tuple(trusted_proxies))
        self._strategy = window

    @classmethod
    def in_memory(cls, *, trusted_proxies: Sequence[str] = ()) -> RateLimiter:
        """Limits counted in this process (one replica)."""
        return cls(InProcessWindow(), profile="memory", trusted_proxies=trusted_proxies)

    @classmethod
    def on_redis(
        cls, redis: Redis, status: RedisStatus, *, trusted_proxies: Sequence[str] = ()
    ) -> RateLimiter:
        """Limits shared by every replica, stored in Redis through `redis`'s connection pool
        (so its timeouts, password and database apply)."""
        storage = RedisStorage(
            # With a connection pool the URI only selects the redis-py bridge.
            "async+redis://",
            implementation="redispy",
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]
            key_prefix=KEY_PREFIX,
            wrap_exceptions=True,
        )
        return cls(
            MovingWindowRateLimiter(storage),
            profile="redis",
            status=status,
            trusted_proxies=trusted_proxies,
        )

    async def hit(self, scope: str, identity: str, rate: str) -> RateDecision:
        """Count one hit of `identity` in `scope`; refused when any part of `rate` is used up."""
        if self.status is not None and self.status.is_open():
            return RateDecision(allowed=True)
        try:
            decision = await self._hit(scope, _opaque(identity), parse_rate(rate))
        except _STORAGE_ERRORS as exc:
            if self.status is None:
                raise  # the in-process storage does not have outages: this is a bug
            self._storage_failed(exc, scope)
            return RateDecision(allowed=True)
        if self.status is not None:
            self.status.record_success()
        return decision

    async def _hit(self, scope: str, key: str, items: Iterable[RateLimitItem]) -> RateDecision:
        remaining: int | None = None
        for item in items:
            allowed = await self._strategy.hit(item, scope, key)
            stats = await self._strategy.get_window_stats(item, scope, key)
            if not allowed:
                wait = math.ceil(stats.reset_time - time.time())
                return RateDecision(allowed=False, retry_after=max(1, wait), remaining=0)
            left = max(0, stats.remaining)
            remaining = left if remaining is None else min(remaining, left)
        return RateDecision(allowed=True, remaining=remaining)

    async def peek(self, scope: str, identity: str, rate: str) -> RateDecision:
        """Whether one more hit of `identity` in `scope` would be allowed, without counting it.

        For limits on failures: check before the attempt, count only when it fails.
        """
        if self.status is not None and self.status.is_open():
            return RateDecision(allowed=True)
        key = _opaque(identity)
        try:
            for item in parse_rate(rate):
                if not await self._strategy.test(item, scope, key):
                    stats = await self._strategy.get_window_stats(item, scope, key)
                    wait = math.ceil(stats.reset_time - time.time())
                    return RateDecision(allowed=False, retry_after=max(1, wait), remaining=0)
        except _STORAGE_ERRORS as exc:
            if self.status is None:
                raise
            self._storage_failed(exc, scope)
            return RateDecision(allowed=True)
        if self.status is not None:
            self.status.record_success()
        return RateDecision(allowed=True)

    async def clear(self, scope: str, identity: str, rate: str) -> None:
        """Forget the hits of `identity` in `scope` (for example after a successful sign-in)."""
        for item in parse_rate(rate):
            try:
                await self._strategy.clear(item, scope, _opaque(identity))
            except _STORAGE_ERRORS as exc:
                if self.status is None:
                    raise
                self._storage_failed(exc, scope)
                return

    def _storage_failed(self, exc: Exception, scope: str) -> None:
        assert self.status is not None
        cause = exc.storage_error if isinstance(exc, StorageError) else exc
        self.status.record_failure(STORAGE_UNAVAILABLE_EVENT, cause, scope=scope)


def build_limiter(
    settings: Settings, redis: Redis | None, status: RedisStatus, metrics: Metrics | None = None
) -> RateLimiter:
    """The Redis-backed limiter when Redis is configured, else the in-process one."""
    if redis is None:
        limiter = RateLimiter.in_memory(trusted_proxies=settings.trusted_proxies)
    else:
        limiter = RateLimiter.on_redis(redis, status, trusted_proxies=settings.trusted_proxies)
    limiter.metrics = metrics
    return limiter


def refusal(decision: RateDecision) -> RateLimited:
    """The 429 for a refused decision, with `Retry-After` and a message saying when."""
    seconds = decision.retry_after
    unit = "second" if seconds == 1 else "seconds"
    return RateLimited(
        f"Too many requests; try again in {seconds} {unit}.",
        headers={"Retry-After": str(seconds)},
    )


async def enforce(limiter: RateLimiter, scope: str, identities: Sequence[str], rate: str) -> None:
    """Count one hit for each identity (say `ip:1.2.3.4` and `email:a@b.c`); raise `RateLimited`
    at the first that is over `rate`. For service code, which has no FastAPI dependency."""
    for identity in identities:
        decision = await limiter.hit(scope, identity, rate)
        if not decision.allowed:
            raise _refused(limiter, scope, identity, decision)


async def enforce_failures(limiter: RateLimiter, scope: str, identity: str, rate: str) -> None:
    """Raise `RateLimited` when `identity`'s failures in `scope` have used up `rate`; count a
    failure with `count_failure`. Successes cost nothing, and once the quota is spent every
    attempt is refused, the right one too (else guessing would simply go on)."""
    decision = await limiter.peek(scope, identity, rate)
    if not decision.allowed:
        raise _refused(limiter, scope, identity, decision)


async def count_failure(limiter: RateLimiter, scope: str, identity: str, rate: str) -> None:
    """Count one failed attempt of `identity` in `scope` (see `enforce_failures`)."""
    await limiter.hit(scope, identity, rate)


def _refused(
    limiter: RateLimiter, scope: str, identity: str, decision: RateDecision
) -> RateLimited:
    logger.info(
        "ratelimit.refused",
        scope=scope,
        kind=identity.partition(":")[0],
        retry_after=decision.retry_after,
    )
    if limiter.metrics is not None:
        limiter.metrics.rate_limited.labels(metric_book(), scope).inc()
    return refusal(decision)


# --- who is calling ---------------------------------------------------------------------------


@lru_cache(maxsize=16)
def parse_trusted_proxies(values: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """TRUSTED_PROXIES entries (`10.0.0.1`, `10.0.0.0/8`, `::1`) as networks."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"TRUSTED_PROXIES: {value!r} is not an IP address or network (CIDR)"
            ) from None
    return tuple(networks)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: Sequence[IPNetwork]
) -> bool:
    return any(address in network for network in trusted)


def client_ip(request: Request | Scope, trusted_proxies: Iterable[str | IPNetwork]) -> str:
    """The caller's address: the TCP peer, unless the peer is a trusted proxy; then the
    right-most address of `X-Forwarded-For` that is not a trusted proxy (the left part of that
    header is whatever the client chose to send, so it is never believed)."""
    scope = request.scope if isinstance(request, Request) else request
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    trusted = tuple(
        entry if not isinstance(entry, str) else parse_trusted_proxies((entry,))[0]
        for entry in trusted_proxies
    )
    peer_ip = _ip(peer)
    if peer_ip is None or not trusted or not _is_trusted(peer_ip, trusted):
        return str(peer_ip) if peer_ip is not None else peer
    hops = [
        hop.strip()
        for name, value in scope.get("headers", [])
        if name == b"x-forwarded-for"
        for hop in value.decode("latin-1").split(",")
    ]
    nearest = peer_ip
    for hop in reversed(hops):
        address = _ip(hop)
        if address is None:
            break  # garbage: stop at the last address a trusted proxy vouched for
        if not _is_trusted(address, trusted):
            return str(address)
        nearest = address
    return str(nearest)


def ip_identity(address: str) -> str:
    """`ip:1.2.3.4`, or `ip:2001:db8:1:2::/64`: one IPv6 host usually owns a whole /64."""
    parsed = _ip(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return f"ip:{ipaddress.ip_network(f'{parsed}/64', strict=False)}"
    return f"ip:{address}"


def request_identity(request: Request, limiter: RateLimiter, caller: Any = None) -> str:
    """`user:<id>` for a signed-in caller (anything with an `id`), else `ip:<client ip>`."""
    user_id = getattr(caller, "id", None)
    if user_id is not None:
        return f"user:{user_id}"
    return ip_identity(client_ip(request, limiter.trusted_proxies))
