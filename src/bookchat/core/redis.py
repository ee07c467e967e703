"""The shared Redis client, and what the service remembers about Redis failing.

Redis is optional (rate limits and caches fall back to the process) and never essential to a
request: every user fails open. So the client gives up fast (short timeouts, one retry, no
backoff) and `RedisStatus` trips a short circuit breaker after a failure, so that during an outage
a request pays nothing at all instead of a connect timeout each time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

logger = structlog.get_logger(__name__)

CONNECT_TIMEOUT_SECONDS = 1.0
OPERATION_TIMEOUT_SECONDS = 1.0
# Idle connections are pinged before reuse after this long, so one a server or a load balancer
# dropped in the meantime is replaced instead of failing the next command.
HEALTH_CHECK_INTERVAL_SECONDS = 30
# After a failure, Redis is left alone for this long (callers fail open at once).
BREAKER_COOLDOWN_SECONDS = 2.0
# One warning per event per this many seconds; the others are counted in `suppressed`.
LOG_EVERY_SECONDS = 30.0

# What a Redis outage looks like from redis-py (its own errors, socket errors, timeouts).
REDIS_OUTAGE_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError, TimeoutError)


def create_redis(url: str) -> Redis:
    """A client for `url` (`redis://`, `rediss://`, `unix://`; password and db in the URL).

    Nothing connects here: the first command does. redis-py's default retries ten times with
    backoff, which turns an outage into seconds per call; one immediate retry covers a
    connection the server closed, and the timeouts bound a black-holed host.
    """
    return Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=OPERATION_TIMEOUT_SECONDS,
        health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
        retry=Retry(NoBackoff(), retries=1),
    )


def describe_redis_url(url: str) -> str:
    """`redis://host:6379/0`: the URL without its user name and password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    database = parts.path.lstrip("/") or "0"
    return f"{parts.scheme}://{host}:{port}/{database}"


@dataclass(frozen=True, slots=True)
class RedisFailure:
    at: datetime
    error: str
    event: str


class RedisStatus:
    """The last Redis failure (for health) and a circuit breaker shared by Redis's users."""

    def __init__(
        self,
        *,
        cooldown: float = BREAKER_COOLDOWN_SECONDS,
        log_every: float = LOG_EVERY_SECONDS,
    ) -> None:
        self.cooldown = cooldown
        self.log_every = log_every
        self.last_failure: RedisFailure | None = None
        self._open_until = 0.0
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def is_open(self) -> bool:
        """True while Redis is being left alone after a failure: fail open without trying."""
        return time.monotonic() < self._open_until

    def record_success(self) -> None:
        self._open_until = 0.0

    def record_failure(self, event: str, exc: BaseException, **fields: object) -> None:
        """Remember the failure, open the breaker, and log `event` (at most every `log_every`)."""
        now = time.monotonic()
        self.last_failure = RedisFailure(
            at=datetime.now(UTC), error=type(exc).__name__, event=event
        )
        self._open_until = now + self.cooldown
        last = self._last_logged.get(event)
        if last is not None and now - last < self.log_every:
            self._suppressed[event] = self._suppressed.get(event, 0) + 1
            return
        self._last_logged[event] = now
        logger.warning(
            event,
            error_type=type(exc).__name__,
            suppressed=self._suppressed.pop(event, 0),
            **fields,
        )

    def describe_last_failure(self) -> str | None:
        """`ConnectionError at 2026-01-01T10:00:00Z (ratelimit.storage_unavailable)`, if any."""
        failure = self.last_failure
        if failure is None:
            return None
        at = failure.at.isoformat(timespec="seconds").replace("+00:00", "Z")
        return f"{failure.error} at {at} ({failure.event})"
