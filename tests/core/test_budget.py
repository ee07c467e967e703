"""Daily token budgets: the counter on memory and on the real Redis, reservations, the reset at
midnight UTC, and failing open when Redis goes away."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from bookchat.core.budget import Payer, TokenBudget
from bookchat.core.errors import RateLimited
from bookchat.core.metrics import Metrics
from bookchat.core.redis import RedisStatus, create_redis

CLOSED_PORT_URL = "redis://127.0.0.1:1/0"
# 22:00 UTC: two hours before the budgets reset.
TEN_PM = datetime(2026, 3, 14, 22, 0, tzinfo=UTC).timestamp()


class Clock:
    """A wall clock the test moves."""

    def __init__(self, now: float = TEN_PM) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def spend(budget: TokenBudget, payer: Payer, tokens: int) -> None:
    """Charge `payer` for a call that used `tokens`."""
    await budget.settle(
        await budget.reserve(payer, "chat", input_tokens=0, output_tokens=0), tokens
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "redis"])
async def budget(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[TokenBudget]:
    """A budget of 1,000 tokens a day for readers and 100 for anonymous addresses, counted in
    the process, then on the test Redis."""
    if request.param == "memory":
        yield TokenBudget.in_memory(reader_daily=1_000, anonymous_daily=100, clock=clock)
        return
    client = create_redis(request.getfixturevalue("redis_url"))
    yield TokenBudget.on_redis(
        client, RedisStatus(), reader_daily=1_000, anonymous_daily=100, clock=clock
    )
    await client.aclose()


class TestBudget:
    async def test_a_spent_budget_refuses_until_midnight_utc(self, budget: TokenBudget) -> None:
        payer = budget.payer("user:ada")
        assert payer is not None
        reservation = await budget.reserve(payer, "chat", input_tokens=300, output_tokens=200)
        await budget.settle(reservation, 900)
        await budget.ensure_left(payer, "chat", 100)  # 100 left

        with pytest.raises(RateLimited) as refused:
            await budget.ensure_left(payer, "chat", 101)
        assert refused.value.status_code == 429
        assert refused.value.headers["Retry-After"] == str(2 * 3600)
        assert "00:00 UTC" in refused.value.message

    async def test_a_call_is_admitted_when_the_rest_covers_its_input(
        self, budget: TokenBudget
    ) -> None:
        payer = budget.payer("user:ada")
        assert payer is not None
        await spend(budget, payer, 800)

        # 200 left: an input of 150 is admitted whatever it may write; 250 is not.
        admitted = await budget.reserve(payer, "chat", input_tokens=150, output_tokens=800)
        with pytest.raises(RateLimited):
            await budget.reserve(payer, "chat", input_tokens=250, output_tokens=0)
        # The reservation holds the room while the call runs; the actual use replaces it.
        with pytest.raises(RateLimited):
            await budget.reserve(payer, "chat", input_tokens=1, output_tokens=0)
        await budget.settle(admitted, 50)
        await budget.ensure_left(payer, "chat", 150)

    async def test_readers_and_addresses_have_their_own_budgets(self, budget: TokenBudget) -> None:
        ada, bob, anonymous = (budget.payer(i) for i in ("user:ada", "user:bob", "ip:10.0.0.1"))
        assert ada is not None
        assert bob is not None
        assert anonymous is not None
        assert (ada.kind, ada.daily, anonymous.kind, anonymous.daily) == (
            "reader",
            1_000,
            "anonymous",
            100,
        )
        await spend(budget, ada, 1_000)

        with pytest.raises(RateLimited):
            await budget.ensure_left(ada, "chat")
        await budget.ensure_left(bob, "chat", 1_000)
        await budget.ensure_left(anonymous, "chat", 100)

    async def test_the_budget_resets_at_midnight_utc(
        self, budget: TokenBudget, clock: Clock
    ) -> None:
        payer = budget.payer("ip:10.0.0.1")
        assert payer is not None
        await spend(budget, payer, 100)
        clock.now += 2 * 3600 - 1
        with pytest.raises(RateLimited) as refused:
            await budget.ensure_left(payer, "chat")
        assert refused.value.headers["Retry-After"] == "1"

        clock.now += 1
        await budget.ensure_left(payer, "chat", 100)

    async def test_zero_is_unlimited(self) -> None:
        budget = TokenBudget.in_memory(reader_daily=0, anonymous_daily=10)
        assert budget.payer("user:ada") is None
        assert budget.payer("ip:10.0.0.1") is not None

    async def test_replicas_share_the_budget_through_redis(self, redis_url: str) -> None:
        first, second = create_redis(redis_url), create_redis(redis_url)
        try:
            one = TokenBudget.on_redis(first, RedisStatus(), reader_daily=1_000, anonymous_daily=0)
            two = TokenBudget.on_redis(second, RedisStatus(), reader_daily=1_000, anonymous_daily=0)
            payer = one.payer("user:ada")
            assert payer is not None
            await spend(one, payer, 999)
            await two.ensure_left(payer, "chat", 1)
            with pytest.raises(RateLimited):
                await two.ensure_left(payer, "chat", 2)
        finally:
            await first.aclose()
            await second.aclose()

    async def test_unreachable_redis_allows_and_is_recorded(self) -> None:
        client = create_redis(CLOSED_PORT_URL)
        status = RedisStatus()
        budget = TokenBudget.on_redis(client, status, reader_daily=10, anonymous_daily=10)
        payer = budget.payer("user:ada")
        assert payer is not None
        try:
            reservation = await budget.reserve(payer, "chat", input_tokens=50, output_tokens=50)
            await budget.settle(reservation, 100)
            await budget.ensure_left(payer, "chat", 50)
        finally:
            await client.aclose()
        assert status.last_failure is not None
        assert status.last_failure.event == "budget.storage_unavailable"


class TestBudgetMetrics:
    async def test_charges_and_refusals_are_counted(self) -> None:
        metrics = Metrics()
        budget = TokenBudget.in_memory(reader_daily=100, anonymous_daily=100, metrics=metrics)
        payer = budget.payer("ip:10.0.0.1")
        assert payer is not None
        await budget.settle(
            await budget.reserve(payer, "rewrite", input_tokens=10, output_tokens=64), 70
        )
        with pytest.raises(RateLimited):
            await budget.reserve(payer, "translate", input_tokens=40, output_tokens=0)

        text = metrics.render().decode()
        # Outside a request about a book: no book.
        tokens = 'bookchat_budget_tokens_total{book="",call="rewrite",reader="anonymous"} 70.0'
        refusals = 'bookchat_budget_refusals_total{book="",call="translate",reader="anonymous"}'
        assert tokens in text
        assert f"{refusals} 1.0" in text
        assert 'bookchat_rate_limited_total{book="",limit="token_budget"} 1.0' in text
