"""The daily token budget on the chat: a reader who spends it is refused (429, Retry-After) before
anything reaches the model, in one piece and streamed; others are not; every call is charged."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bookchat.chat.models import Message
from tests.chat.test_stream import parse_sse
from tests.conftest import REWRITE_MARKER, AppFactory, openai_settings
from tests.factories import QUESTION, bearer, book_settings, count, post_chat, sign_up
from tests.fakes.openai_server import FakeOpenAIServer, split_tokens
from tests.metrics.test_router import total

BUDGET = 3_000
KEY = "admin-test-key"
# One completion token per word at the fake: one answer spends a whole budget.
SPENDING_ANSWER = "word " * BUDGET
REWRITTEN = "publisher subscriber topic"
FOLLOW_UP = "and who receives them?"


def spending_reply(request: dict[str, Any]) -> str:
    """Rewrites get an in-book query; answers are long enough to spend a budget."""
    if REWRITE_MARKER in request["messages"][0]["content"]:
        return REWRITTEN
    return SPENDING_ANSWER


def usage_of(request: dict[str, Any], reply: str) -> int:
    """The tokens the fake reports for a request it answered with `reply`."""
    prompt = sum(len(str(m["content"]).split()) for m in request["messages"])
    return prompt + len(split_tokens(reply))


async def budget_app_settings(database_url: str, fake: FakeOpenAIServer, **overrides: Any) -> Any:
    fake.reply = spending_reply
    options: dict[str, Any] = {
        **openai_settings(fake),
        "token_budget_reader_daily": BUDGET,
        "token_budget_anonymous_daily": BUDGET,
        "admin_api_key": KEY,
        **overrides,
    }
    return await book_settings(database_url, **options)


def assert_budget_refusal(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == "rate_limited"
    assert "00:00 UTC" in body["error"]["message"]
    assert body["request_id"]
    assert 1 <= int(response.headers["Retry-After"]) <= 86_400


async def stream_chat(
    client: httpx.AsyncClient, message: str = QUESTION, **kwargs: Any
) -> httpx.Response:
    return await client.post("/api/v1/chat/stream", json={"message": message}, **kwargs)


class TestSpentBudget:
    @pytest.mark.parametrize("storage", ["memory", "redis"])
    async def test_a_reader_who_spends_it_is_refused_and_others_are_not(
        self,
        storage: str,
        request: pytest.FixtureRequest,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
    ) -> None:
        redis_url = request.getfixturevalue("redis_url") if storage == "redis" else None
        settings = await budget_app_settings(sqlite_url, fake_openai, redis_url=redis_url)
        async with app_factory(settings) as client:
            ada = bearer((await sign_up(client, "ada@example.org"))["access_token"])
            bob = bearer((await sign_up(client, "bob@example.org"))["access_token"])
            first = await post_chat(client, headers=ada)
            calls, messages = len(fake_openai.chat_requests()), await count(sqlite_url, Message)

            refused = await post_chat(client, "What is a topic?", headers=ada)
            refused_stream = await stream_chat(client, headers=ada)
            refused_follow_up = await post_chat(
                client, FOLLOW_UP, headers=ada, session_id=first.json()["session_id"]
            )
            assert len(fake_openai.chat_requests()) == calls  # nothing reached the model
            assert await count(sqlite_url, Message) == messages  # nor was anything stored

            other = await post_chat(client, "What is a topic?", headers=bob)

        assert first.status_code == 200
        assert first.json()["usage"]["total_tokens"] >= BUDGET
        for response in (refused, refused_stream, refused_follow_up):
            assert_budget_refusal(response)
        assert other.status_code == 200

    async def test_anonymous_readers_are_counted_per_address_and_admins_not_at_all(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await budget_app_settings(sqlite_url, fake_openai)
        async with app_factory(settings) as client:
            spent = await post_chat(client)
            refused = await stream_chat(client)
            reader = bearer((await sign_up(client, "ada@example.org"))["access_token"])
            signed_in = await post_chat(client, "What is a topic?", headers=reader)
            admin = await stream_chat(client, "What is a topic?", headers={"X-Admin-Key": KEY})
            wrong_key = await post_chat(client, headers={"X-Admin-Key": "not-the-key"})

        assert spent.status_code == 200
        assert_budget_refusal(refused)
        assert signed_in.status_code == 200
        assert admin.status_code == 200
        assert parse_sse(admin.text)[0][-1][0] == "done"
        assert_budget_refusal(wrong_key)

    async def test_a_question_bigger_than_what_is_left_is_refused_before_the_stream(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        # Less than any prompt of the book's passages: nothing may be sent to the model.
        settings = await budget_app_settings(
            sqlite_url, fake_openai, token_budget_anonymous_daily=50
        )
        async with app_factory(settings) as client:
            answer = await post_chat(client)
            stream = await stream_chat(client)
            not_covered = await post_chat(client, "What is the capital of France?")

        assert_budget_refusal(answer)
        assert_budget_refusal(stream)
        assert fake_openai.chat_requests() == []
        # An answer that needs no model costs nothing, so it is not refused.
        assert not_covered.status_code == 200
        assert not_covered.json()["mode"] == "no_context"


class TestCharges:
    async def test_answers_and_rewrites_are_charged_what_the_model_reports(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        fake_openai.reply = "Publishers send messages on a topic [1]."
        settings = await book_settings(
            sqlite_url, **openai_settings(fake_openai), token_budget_reader_daily=1_000_000
        )
        async with app_factory(settings) as client:
            ada = bearer((await sign_up(client, "ada@example.org"))["access_token"])
            first = await post_chat(client, headers=ada)
            fake_openai.reply = spending_reply
            streamed = await client.post(
                "/api/v1/chat/stream",
                json={"message": FOLLOW_UP, "session_id": first.json()["session_id"]},
                headers=ada,
            )
            metrics = (await client.get("/metrics")).text

        rewrite = fake_openai.chat_requests()[1]
        assert REWRITE_MARKER in rewrite["messages"][0]["content"]
        done = parse_sse(streamed.text)[0][-1][1]
        answers = first.json()["usage"]["total_tokens"] + done["usage"]["total_tokens"]
        charged = {
            call: total(metrics, "bookchat_budget_tokens_total", call=call, reader="reader")
            for call in ("chat", "rewrite")
        }
        assert charged == {"chat": answers, "rewrite": usage_of(rewrite, REWRITTEN)}
        assert total(metrics, "bookchat_budget_tokens_total", reader="anonymous") == 0

    async def test_refusals_are_counted(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await budget_app_settings(sqlite_url, fake_openai)
        async with app_factory(settings) as client:
            await post_chat(client)
            await post_chat(client)
            await stream_chat(client)
            metrics = (await client.get("/metrics")).text

        refusals = "bookchat_budget_refusals_total"
        assert total(metrics, refusals, call="chat", reader="anonymous") == 2
        assert total(metrics, "bookchat_rate_limited_total", limit="token_budget") == 2

    async def test_the_offline_answerer_costs_nothing(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url, token_budget_anonymous_daily=1)
        async with app_factory(settings) as client:
            answers = [await post_chat(client) for _ in range(3)]
            metrics = (await client.get("/metrics")).text

        assert [a.status_code for a in answers] == [200, 200, 200]
        assert total(metrics, "bookchat_budget_tokens_total") == 0
