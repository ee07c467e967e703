"""Daily token budgets: how many model tokens a signed-in reader, or an anonymous client address,
may cause per UTC day (the input and output of every model call a request makes).

The window is the calendar day in UTC, the same for everyone: a refused reader is told when
the budget comes back (00:00 UTC, and `Retry-After` in seconds), and an operator can read one
day's spend per payer. `limits`' fixed window is not used because its window starts at each
key's first hit (no common reset time to tell readers) and reads the wall clock itself (a test
could not move to tomorrow); the counter is one `INCRBY` a call.

A call is admitted when what is left covers at least its input; it then reserves its input
plus its longest possible output in one atomic add, and its actual use replaces the
reservation when it ends. So concurrent calls of one payer cannot all pass the same check:
the budget is overdrawn by at most the output of the calls in flight.

Which payer a model call is charged to is the request's business: the route binds an `Account`
(`charge_to`) and the chat model wrapper (`providers/budgeted.py`) reads it, so every call a
request causes is charged, however deep in a service it happens. Calls with no account bound
(the CLI, evaluations, admins) are not counted.

When Redis fails, budgets fail OPEN like the rate limits (`core/ratelimit.py`): the call is
allowed, uncounted, and the failure goes to `RedisStatus`.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal, Protocol

import structlog
from redis.asyncio import Redis

from bookchat.core.config import Settings
from bookchat.core.errors import RateLimited
from bookchat.core.metrics import Metrics, metric_book
from bookchat.core.redis import REDIS_OUTAGE_ERRORS, RedisStatus

logger = structlog.get_logger(__name__)

KEY_PREFIX = "bookchat:budget"
STORAGE_UNAVAILABLE_EVENT = "budget.storage_unavailable"
DAY_SECONDS = 86_400
# A day's counters outlive the day by this much (a call that started before midnight settles
# on the day it was admitted).
KEY_GRACE_SECONDS = 3_600

ReaderKind = Literal["reader", "anonymous"]


@dataclass(frozen=True, slots=True)
class Payer:
    """Who a model call is charged to: `user:<id>` or `ip:<address>`, and their daily budget."""

    identity: str
    kind: ReaderKind
    daily: int


@dataclass(frozen=True, slots=True)
class Reservation:
    """Room held for one call while it runs; `tokens` is 0 when nothing could be counted."""

    payer: Payer
    call: str
    day: int
    tokens: int


class TokenCounter(Protocol):
    """Tokens spent per (payer key, day number); a day may be forgotten `ttl` seconds after a
    write to it."""

    async def add(self, key: str, day: int, tokens: int, ttl: int) -> int: ...

    async def spent(self, key: str, day: int) -> int: ...


class MemoryTokenCounter:
    """Counts in this process (one replica); forgets a day when the next one starts."""

    def __init__(self) -> None:
        self._day = -1
        self._spent: dict[str, int] = {}

    def _roll(self, day: int) -> bool:
        if day > self._day:
            self._day, self._spent = day, {}
        return day == self._day

    async def add(self, key: str, day: int, tokens: int, ttl: int) -> int:
        if not self._roll(day):
            return tokens  # a day already forgotten
        total = self._spent.get(key, 0) + tokens
        self._spent[key] = total
        return total

    async def spent(self, key: str, day: int) -> int:
        return self._spent.get(key, 0) if self._roll(day) else 0


class RedisTokenCounter:
    """Counts in Redis, shared by every replica; a day's key expires soon after the day."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    @staticmethod
    def _key(key: str, day: int) -> str:
        return f"{KEY_PREFIX}:{day}:{key}"

    async def add(self, key: str, day: int, tokens: int, ttl: int) -> int:
        name = self._key(key, day)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incrby(name, tokens)
            pipe.expire(name, ttl)
            total, _ = await pipe.execute()
        return int(total)

    async def spent(self, key: str, day: int) -> int:
        value = await self.redis.get(self._key(key, day))
        return int(value or 0)


def _opaque(identity: str) -> str:
    # Keys in Redis are visible to whoever runs it: no user ids or IPs in clear.
    return hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()


class TokenBudget:
    """The daily budgets of readers and anonymous addresses, and what their calls spent."""

    def __init__(
        self,
        counter: TokenCounter,
        *,
        reader_daily: int,
        anonymous_daily: int,
        status: RedisStatus | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.counter = counter
        self.daily: dict[ReaderKind, int] = {"reader": reader_daily, "anonymous": anonymous_daily}
        self.status = status
        self.metrics = metrics
        self.clock = clock

    @classmethod
    def in_memory(
        cls,
        *,
        reader_daily: int,
        anonymous_daily: int,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> TokenBudget:
        """Budgets counted in this process."""
        return cls(
            MemoryTokenCounter(),
            reader_daily=reader_daily,
            anonymous_daily=anonymous_daily,
            metrics=metrics,
            clock=clock,
        )

    @classmethod
    def on_redis(
        cls,
        redis: Redis,
        status: RedisStatus,
        *,
        reader_daily: int,
        anonymous_daily: int,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> TokenBudget:
        """Budgets shared by every replica through Redis."""
        return cls(
            RedisTokenCounter(redis),
            reader_daily=reader_daily,
            anonymous_daily=anonymous_daily,
            status=status,
            metrics=metrics,
            clock=clock,
        )

    def payer(self, identity: str) -> Payer | None:
        """The payer for `user:<id>` or `ip:<address>`; None when that kind is unlimited."""
        kind: ReaderKind = "reader" if identity.startswith("user:") else "anonymous"
        daily = self.daily[kind]
        return Payer(identity=identity, kind=kind, daily=daily) if daily > 0 else None

    async def ensure_left(self, payer: Payer, call: str, tokens: int = 1) -> None:
        """Raise `RateLimited` unless at least `tokens` are left today (no charge)."""
        day = self._today()
        spent = await self._spent(payer, day)
        if spent is not None and payer.daily - spent < tokens:
            raise self._refusal(payer, call, day)

    async def reserve(
        self, payer: Payer, call: str, *, input_tokens: int, output_tokens: int
    ) -> Reservation:
        """Admit a call whose input what is left covers, holding room for its whole output
        too; `RateLimited` otherwise (nothing held)."""
        day = self._today()
        tokens = input_tokens + output_tokens
        total = await self._add(payer, day, tokens)
        if total is None:
            return Reservation(payer=payer, call=call, day=day, tokens=0)
        if payer.daily - (total - tokens) < input_tokens:
            await self._add(payer, day, -tokens)
            raise self._refusal(payer, call, day)
        return Reservation(payer=payer, call=call, day=day, tokens=tokens)

    async def settle(self, reservation: Reservation, used: int) -> None:
        """Replace the room a call held by what it used."""
        if used != reservation.tokens:
            await self._add(reservation.payer, reservation.day, used - reservation.tokens)
        if self.metrics is not None and used > 0:
            payer = reservation.payer
            self.metrics.budget_tokens.labels(metric_book(), reservation.call, payer.kind).inc(used)

    def _today(self) -> int:
        return int(self.clock() // DAY_SECONDS)

    async def _add(self, payer: Payer, day: int, tokens: int) -> int | None:
        if self.status is not None and self.status.is_open():
            return None
        try:
            # Relative to our clock, not Redis's: the day ends when this process says it does.
            ttl = math.ceil((day + 1) * DAY_SECONDS + KEY_GRACE_SECONDS - self.clock())
            total = await self.counter.add(_opaque(payer.identity), day, tokens, max(1, ttl))
        except REDIS_OUTAGE_ERRORS as exc:
            if self.status is None:
                raise  # the in-process counter does not have outages: this is a bug
            self.status.record_failure(STORAGE_UNAVAILABLE_EVENT, exc)
            return None
        if self.status is not None:
            self.status.record_success()
        return total

    async def _spent(self, payer: Payer, day: int) -> int | None:
        if self.status is not None and self.status.is_open():
            return None
        try:
            return await self.counter.spent(_opaque(payer.identity), day)
        except REDIS_OUTAGE_ERRORS as exc:
            if self.status is None:
                raise
            self.status.record_failure(STORAGE_UNAVAILABLE_EVENT, exc)
            return None

    def _refusal(self, payer: Payer, call: str, day: int) -> RateLimited:
        resets = (day + 1) * DAY_SECONDS
        seconds = max(1, math.ceil(resets - self.clock()))
        logger.info("budget.refused", call=call, reader=payer.kind, retry_after=seconds)
        if self.metrics is not None:
            self.metrics.budget_refusals.labels(metric_book(), call, payer.kind).inc()
            self.metrics.rate_limited.labels(metric_book(), "token_budget").inc()
        whose = "your account" if payer.kind == "reader" else "readers who are not signed in"
        hours, minutes = divmod(math.ceil(seconds / 60), 60)
        return RateLimited(
            f"Today's language-model budget for {whose} is used up; it resets at 00:00 UTC "
            f"(in {hours} h {minutes} min)."
            + ("" if payer.kind == "reader" else " Signing in gives you a budget of your own."),
            details=[
                {
                    "limit": "token_budget",
                    "resets_at": datetime.fromtimestamp(resets, UTC).isoformat(),
                }
            ],
            headers={"Retry-After": str(seconds)},
        )


def build_budget(
    settings: Settings,
    redis: Redis | None,
    status: RedisStatus,
    metrics: Metrics | None = None,
) -> TokenBudget:
    """The Redis-backed budgets when Redis is configured, else the in-process ones."""
    reader, anonymous = settings.token_budget_reader_daily, settings.token_budget_anonymous_daily
    if redis is None:
        return TokenBudget.in_memory(
            reader_daily=reader, anonymous_daily=anonymous, metrics=metrics
        )
    return TokenBudget.on_redis(
        redis, status, reader_daily=reader, anonymous_daily=anonymous, metrics=metrics
    )


# --- who pays for the model calls of the request being served -----------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    """The budget and payer a request's model calls are charged to, and the kind of call
    (`chat`, `rewrite`, `personalize`, `translate`) for the metrics."""

    budget: TokenBudget
    payer: Payer
    call: str


# Set by the route's budget dependency for the request's task; the tasks and streams the
# request starts inherit it. Default None: nobody is charged (CLI, evaluations, admins).
_account: ContextVar[Account | None] = ContextVar("bookchat_budget_account", default=None)


def charge_to(account: Account | None) -> None:
    """Charge the model calls of the current request to `account` (None: to nobody)."""
    _account.set(account)


def current_account() -> Account | None:
    """The account the current request's model calls are charged to, if any."""
    return _account.get()


@contextmanager
def charged_as(call: str) -> Iterator[None]:
    """Label the model calls made inside as `call` (a follow-up rewrite inside a chat)."""
    account = _account.get()
    if account is None:
        yield
        return
    token = _account.set(replace(account, call=call))
    try:
        yield
    finally:
        _account.reset(token)
