"""Personalized and translated chapters written by Claude (`LLM_PROVIDER=anthropic`), through
the real `anthropic` SDK against the fake Messages API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bookchat.core.config import Settings
from tests.chapters.conftest import CHAPTER_ID, KEY, PROFILE, reader
from tests.chapters.fakes import (
    CHAPTER_PATH,
    KEPT,
    book_with_chapter,
    shouting_reply,
    urdu_reply,
)
from tests.chat.test_stream import parse_sse
from tests.conftest import AppFactory, anthropic_settings
from tests.factories import book_settings
from tests.fakes.anthropic_server import FakeAnthropicServer, openai_shaped, system_of


async def claude_ready(
    database_url: str, fake: FakeAnthropicServer, tmp_path: Path, **overrides: Any
) -> Settings:
    """The book with the GPU chapter, and Claude as the model."""
    options = {**anthropic_settings(fake), "admin_api_key": KEY, **overrides}
    return await book_settings(database_url, book_with_chapter(tmp_path), **options)


class TestClaudeChapters:
    async def test_personalizes_for_the_saved_profile_and_keeps_the_markdown(
        self,
        database_url: str,
        fake_anthropic: FakeAnthropicServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        fake_anthropic.reply = lambda request: shouting_reply(openai_shaped(request))
        settings = await claude_ready(database_url, fake_anthropic, tmp_path)
        async with app_factory(settings) as client:
            headers = await reader(client, "ada@example.org", PROFILE)
            url = "/api/v1/personalize"
            first = await client.post(url, json={"document_id": CHAPTER_ID}, headers=headers)
            again = await client.post(url, json={"document_id": CHAPTER_ID}, headers=headers)

        assert first.status_code == 200, first.text
        body = first.json()
        assert body["model"] == "claude-haiku-4-5"
        for kept in KEPT:
            assert kept in body["content"], kept
        assert "# SIMULATION ON A GPU {#gpu-sim}" in body["content"]
        requests = fake_anthropic.messages_requests()
        assert "Hardware experience: beginner" in system_of(requests[0])
        # Chapter pieces are plain text: nothing is sent as a search result.
        assert all(fake_anthropic.search_results(i) == [] for i in range(len(requests)))
        # The second ask is served from the stored variant: no new model call.
        assert again.json()["cached"] is True
        assert again.json()["content"] == body["content"]
        assert len(fake_anthropic.messages_requests()) == len(requests)

    async def test_translates_to_urdu(
        self,
        database_url: str,
        fake_anthropic: FakeAnthropicServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        fake_anthropic.reply = lambda request: urdu_reply(openai_shaped(request))
        settings = await claude_ready(database_url, fake_anthropic, tmp_path)
        async with app_factory(settings) as client:
            response = await client.post("/api/v1/translate", json={"source_path": CHAPTER_PATH})

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["language"], body["direction"], body["model"]) == (
            "ur",
            "rtl",
            "claude-haiku-4-5",
        )
        for kept in KEPT:
            assert kept in body["content"], kept
        assert "# لفظ لفظ لفظ لفظ {#gpu-sim}" in body["content"]
        assert "into Urdu (language tag ur)" in system_of(fake_anthropic.messages_requests()[0])

    async def test_a_streamed_translation_sends_its_sections_as_they_come(
        self,
        sqlite_url: str,
        fake_anthropic: FakeAnthropicServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        fake_anthropic.reply = lambda request: urdu_reply(openai_shaped(request))
        settings = await claude_ready(
            sqlite_url, fake_anthropic, tmp_path, generation_section_tokens=100
        )
        async with app_factory(settings) as client:
            response = await client.post(
                "/api/v1/translate/stream", json={"source_path": CHAPTER_PATH}
            )

        events, _ = parse_sse(response.text)
        assert [name for name, _ in events] == ["start", "token", "token", "token", "token", "done"]
        assert events[0][1]["model"] == "claude-haiku-4-5"
        streamed = "".join(data["text"] for name, data in events if name == "token")
        assert streamed == events[-1][1]["content"]
        assert "# لفظ لفظ لفظ لفظ {#gpu-sim}" in streamed

    async def test_a_failing_model_is_the_documented_error(
        self,
        sqlite_url: str,
        fake_anthropic: FakeAnthropicServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        fake_anthropic.fail_next(529, times=20, message="Overloaded sk-ant-secret")
        settings = await claude_ready(sqlite_url, fake_anthropic, tmp_path)
        async with app_factory(settings) as client:
            response = await client.post("/api/v1/translate", json={"source_path": CHAPTER_PATH})

        assert response.status_code == 503
        assert response.json()["error"]["code"] == "llm_unavailable"
        assert "sk-ant-secret" not in response.text
