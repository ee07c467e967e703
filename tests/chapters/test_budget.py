"""The daily token budget on personalized and translated chapters, and ad-hoc `content` kept
for signed-in readers: a spent budget or an anonymous `content` never reaches the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chapters.conftest import CHAPTER_ID, PROFILE, VariantCase, reader, ready
from tests.chapters.fakes import CHAPTER, shouting_reply
from tests.chat.test_budget import BUDGET, assert_budget_refusal, spending_reply, usage_of
from tests.conftest import AppFactory, make_settings, openai_settings
from tests.factories import post_chat
from tests.fakes.openai_server import FakeOpenAIServer
from tests.metrics.test_router import total

DOCUMENT = {"document_id": CHAPTER_ID}
CHAPTER_MARKER = "⟦"  # in the rules of every chapter rewrite


def chapter_or_spending_reply(request: dict[str, Any]) -> str:
    """Chapters are shouted back; chat answers spend a whole budget."""
    if CHAPTER_MARKER in request["messages"][0]["content"]:
        return shouting_reply(request)
    return spending_reply(request)


async def post_both(
    client: httpx.AsyncClient, variant: VariantCase, body: dict[str, Any], headers: dict[str, str]
) -> list[httpx.Response]:
    """The chapter in one piece, then streamed."""
    return [
        await client.post(url, json={**body, **variant.body}, headers=headers)
        for url in (variant.url, f"{variant.url}/stream")
    ]


class TestBudget:
    async def test_a_spent_budget_refuses_chapters_before_any_model_call(
        self,
        variant: VariantCase,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(
            sqlite_url,
            fake_openai,
            tmp_path,
            token_budget_reader_daily=BUDGET,
            token_budget_anonymous_daily=BUDGET,
        )
        fake_openai.reply = chapter_or_spending_reply
        async with app_factory(settings) as client:
            ada = await reader(client, "ada@example.org", PROFILE)
            bob = await reader(client, "bob@example.org", PROFILE)
            spent = await post_chat(client, headers=ada)  # one budget for chat and chapters
            calls = len(fake_openai.chat_requests())
            refused = await post_both(client, variant, DOCUMENT, ada)
            assert len(fake_openai.chat_requests()) == calls
            other = await client.post(variant.url, json=DOCUMENT, headers=bob)

        assert spent.status_code == 200
        for response in refused:
            assert_budget_refusal(response)
        assert other.status_code == 200

    async def test_a_chapter_bigger_than_what_is_left_is_refused_before_any_model_call(
        self,
        variant: VariantCase,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(
            sqlite_url,
            fake_openai,
            tmp_path,
            token_budget_reader_daily=50,
            token_budget_anonymous_daily=50,
        )
        async with app_factory(settings) as client:
            headers = await variant.caller(client, "ada@example.org")
            refused = await post_both(client, variant, DOCUMENT, headers)

        for response in refused:
            assert_budget_refusal(response)
        assert fake_openai.chat_requests() == []

    async def test_every_rewrite_is_charged_what_the_model_reports(
        self,
        variant: VariantCase,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(sqlite_url, fake_openai, tmp_path, generation_section_tokens=100)
        async with app_factory(settings) as client:
            headers = await variant.caller(client, "ada@example.org")
            response = await client.post(variant.url, json=DOCUMENT, headers=headers)
            cached = await client.post(variant.url, json=DOCUMENT, headers=headers)
            metrics = (await client.get("/metrics")).text

        assert response.status_code == cached.status_code == 200
        requests = fake_openai.chat_requests()
        assert len(requests) > 1  # section by section
        kind = "reader" if headers else "anonymous"
        charged = total(metrics, "bookchat_budget_tokens_total", call=variant.name, reader=kind)
        # The cached answer costs nothing.
        assert charged == sum(usage_of(r, shouting_reply(r)) for r in requests)


class TestAdHocContent:
    @pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
    async def test_anonymous_content_needs_a_sign_in_by_default(
        self,
        stream: bool,
        variant: VariantCase,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        # Anonymous personalizing is allowed here, so what is refused is the content alone.
        settings = await ready(
            sqlite_url, fake_openai, tmp_path, allow_anonymous_personalization=True
        )
        body = {"content": CHAPTER, "profile": PROFILE} if variant.name == "personalize" else {}
        body.setdefault("content", CHAPTER)
        url = f"{variant.url}/stream" if stream else variant.url
        async with app_factory(settings) as client:
            response = await client.post(url, json=body)
            by_document = await client.post(url, json={**body, "content": None, **DOCUMENT})
            headers = await reader(client, "ada@example.org", PROFILE)
            signed_in = await client.post(url, json=body, headers=headers)

        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert "Sign in to send your own text" in response.json()["error"]["message"]
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert by_document.status_code == 200
        assert signed_in.status_code == 200

    async def test_a_setting_lets_anonymous_readers_send_content(
        self,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
    ) -> None:
        fake_openai.reply = shouting_reply
        settings = make_settings(
            sqlite_url, **openai_settings(fake_openai), allow_anonymous_chapter_content=True
        )
        async with app_factory(settings) as client:
            response = await client.post("/api/v1/translate", json={"content": CHAPTER})
        assert response.status_code == 200
        assert response.json()["document_id"] is None
