"""POST /api/v1/personalize and its stream: the profile, the Markdown kept, the cache, failures."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from bookchat.chapters.pieces import plan
from bookchat.content.models import document_id_for
from tests.accounts.conftest import bearer, signup
from tests.chapters.fakes import (
    CHAPTER_PATH,
    KEPT,
    broken_first_then,
    dropping_reply,
    generated_rows,
    heading_adding_reply,
    ingest_chapter,
    shouting_reply,
    system_prompt,
)
from tests.chat.test_stream import parse_sse
from tests.conftest import AppFactory, make_settings, openai_settings
from tests.fakes.openai_server import FakeOpenAIServer

URL = "/api/v1/personalize"
CHAPTER_ID = str(document_id_for(CHAPTER_PATH))
PROFILE = {
    "software_level": "advanced",
    "hardware_level": "beginner",
    "background": "Backend developer; my laptop has no GPU.",
    "goals": "Build a robot arm demo",
}


async def reader(
    client: httpx.AsyncClient, email: str, profile: dict[str, Any] | None
) -> dict[str, str]:
    """Sign a reader up (with a saved profile, unless None) and return their auth header."""
    headers = bearer((await signup(client, email))["access_token"])
    if profile is not None:
        saved = await client.put("/api/v1/auth/me/profile", json=profile, headers=headers)
        assert saved.status_code == 200, saved.text
    return headers


async def ready(database_url: str, fake: FakeOpenAIServer, tmp_path: Path, **overrides: Any) -> Any:
    settings = make_settings(database_url, **{**openai_settings(fake), **overrides})
    await ingest_chapter(settings, tmp_path)
    return settings


class TestPersonalize:
    async def test_rewrites_the_prose_for_the_saved_profile_and_keeps_the_markdown(
        self,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        fake_openai.reply = shouting_reply
        settings = await ready(database_url, fake_openai, tmp_path)
        async with app_factory(settings) as client:
            headers = await reader(client, "ada@example.org", PROFILE)
            document = (await client.get(f"/api/v1/content/documents/{CHAPTER_ID}")).json()
            response = await client.post(URL, json={"document_id": CHAPTER_ID}, headers=headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["document_id"] == CHAPTER_ID
        assert body["cached"] is False
        assert body["model"] == "gpt-4o-mini"
        assert re.fullmatch(r"[0-9a-f]{32}", body["variant"])
        content = body["content"]
        for kept in KEPT:
            assert kept in content, kept
        # Everything else was rewritten (upper-cased by the fake model), in the chapter's order.
        assert "# SIMULATION ON A GPU {#gpu-sim}" in content
        assert "[INSTALL GUIDE](https://docs.omniverse" in content
        assert ":::warning DRIVER VERSION" in content
        assert content.index("## INSTALLING") < content.index("## RUNNING A SCENE")
        assert content.upper() == document["content"].upper()
        # The instructions follow the profile.
        prompt = system_prompt(fake_openai.chat_requests()[0])
        assert "Software experience: advanced" in prompt
        assert "Hardware experience: beginner. Explain every hardware term" in prompt
        assert "cloud alternative" in prompt
        assert "Backend developer; my laptop has no GPU." in prompt
        assert "⟦P12⟧" in prompt  # the placeholder rules
        assert fake_openai.chat_requests()[0]["temperature"] == 0.3

    async def test_the_next_reader_with_the_same_profile_gets_the_cache(
        self,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        fake_openai.reply = shouting_reply
        settings = await ready(database_url, fake_openai, tmp_path)
        async with app_factory(settings) as client:
            ada = await reader(client, "ada@example.org", PROFILE)
            # Same profile up to case and spacing: the same variant.
            bob = await reader(
                client,
                "bob@example.org",
                {**PROFILE, "background": "  backend developer;  my laptop has NO GPU. "},
            )
            first = await client.post(URL, json={"source_path": CHAPTER_PATH}, headers=ada)
            calls = len(fake_openai.chat_requests())
            second = await client.post(URL, json={"document_id": CHAPTER_ID}, headers=bob)
            assert len(fake_openai.chat_requests()) == calls  # no model call
            other = await client.post(
                URL,
                json={"document_id": CHAPTER_ID, "profile": {"software_level": "beginner"}},
                headers=bob,
            )

        assert first.status_code == second.status_code == other.status_code == 200
        assert second.json()["cached"] is True
        assert second.json()["content"] == first.json()["content"]
        assert second.json()["variant"] == first.json()["variant"]
        assert second.json()["generated_at"] == first.json()["generated_at"]
        assert other.json()["cached"] is False
        assert other.json()["variant"] != first.json()["variant"]
        assert len(fake_openai.chat_requests()) > calls
        assert await generated_rows(database_url) == 2

    async def test_a_broken_answer_is_retried_once_then_reported(
        self,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(database_url, fake_openai, tmp_path)
        body = {"document_id": CHAPTER_ID, "profile": PROFILE}
        async with app_factory(settings) as client:
            headers = await reader(client, "ada@example.org", None)
            fake_openai.reply = dropping_reply
            broken = await client.post(URL, json=body, headers=headers)
            attempts = len(fake_openai.chat_requests())
            fake_openai.reply = heading_adding_reply
            added = await client.post(URL, json=body, headers=headers)
            fake_openai.reset()
            fake_openai.reply = broken_first_then(shouting_reply)
            recovered = await client.post(URL, json=body, headers=headers)

        assert broken.status_code == 502
        assert broken.json()["error"]["code"] == "llm_error"
        assert "structure" in broken.json()["error"]["message"]
        assert attempts == 2  # one piece (the chapter fits GENERATION_SECTION_TOKENS), one retry
        assert added.status_code == 502
        assert "headings" in added.json()["error"]["message"]
        assert recovered.status_code == 200
        assert recovered.json()["cached"] is False
        assert len(fake_openai.chat_requests()) == 2
        retry_prompt = system_prompt(fake_openai.chat_requests()[1])
        assert "rejected because: ⟦P" in retry_prompt
        assert await generated_rows(database_url) == 1  # only the good one was cached

    async def test_long_chapters_go_section_by_section_in_order(
        self,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        fake_openai.reply = shouting_reply
        settings = await ready(
            sqlite_url,
            fake_openai,
            tmp_path,
            generation_section_tokens=100,
            generation_concurrency=2,
        )
        async with app_factory(settings) as client:
            headers = await reader(client, "ada@example.org", PROFILE)
            document = (await client.get(f"/api/v1/content/documents/{CHAPTER_ID}")).json()
            response = await client.post(URL, json={"document_id": CHAPTER_ID}, headers=headers)

        assert response.status_code == 200
        # Cut on headings, and a long section between blocks: 4 pieces of at most 100 tokens.
        pieces = plan(document["content"], 100)
        assert len(pieces) == 4
        sent = [request["messages"][-1]["content"] for request in fake_openai.chat_requests()]
        assert sorted(sent) == sorted(piece.protected.text for piece in pieces)
        # Put back in the chapter's order, whatever order the answers came in.
        assert response.json()["content"].upper() == document["content"].upper()
        for kept in KEPT[:7]:
            assert kept in response.json()["content"]


class TestWhoseProfile:
    async def test_anonymous_callers(
        self,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        fake_openai.reply = shouting_reply
        closed = await ready(sqlite_url, fake_openai, tmp_path)
        async with app_factory(closed) as client:
            refused = await client.post(URL, json={"document_id": CHAPTER_ID, "profile": PROFILE})
        open_ = closed.model_copy(update={"allow_anonymous_personalization": True})
        async with app_factory(open_) as client:
            allowed = await client.post(URL, json={"document_id": CHAPTER_ID, "profile": PROFILE})
            missing = await client.post(URL, json={"document_id": CHAPTER_ID})

        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        assert allowed.status_code == 200
        assert missing.status_code == 401
        assert "send a `profile`" in missing.json()["error"]["message"]

    async def test_a_reader_without_a_profile_is_told_how_to_fill_it(
        self,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(database_url, fake_openai, tmp_path)
        async with app_factory(settings) as client:
            none = await reader(client, "ada@example.org", None)
            empty = await reader(client, "bob@example.org", {"preferred_language": "ur"})
            without = await client.post(URL, json={"document_id": CHAPTER_ID}, headers=none)
            blank = await client.post(URL, json={"document_id": CHAPTER_ID}, headers=empty)
            explicit_empty = await client.post(
                URL, json={"document_id": CHAPTER_ID, "profile": {}}, headers=none
            )

        for response in (without, blank):
            assert response.status_code == 400
            assert "PUT /api/v1/auth/me/profile" in response.json()["error"]["message"]
        assert explicit_empty.status_code == 400
        assert "nothing to personalize" in explicit_empty.json()["error"]["message"]
        assert fake_openai.chat_requests() == []

    @pytest.mark.parametrize(
        ("body", "fragment"),
        [
            ({"document_id": CHAPTER_ID, "profile": {"software_level": "guru"}}, "software_level"),
            ({"document_id": CHAPTER_ID, "profile": {"shoe_size": 42}}, "profile.shoe_size"),
            ({"document_id": CHAPTER_ID, "profile": {"background": "x" * 2001}}, "background"),
            ({"document_id": CHAPTER_ID, "profile": {"preferred_language": "?"}}, "language"),
            ({"document_id": CHAPTER_ID, "source_path": CHAPTER_PATH}, "exactly one of"),
            ({"content": "   "}, "content"),
            ({}, "exactly one of"),
        ],
    )
    async def test_invalid_requests(
        self,
        body: dict[str, Any],
        fragment: str,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
    ) -> None:
        settings = make_settings(sqlite_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            headers = await reader(client, "ada@example.org", PROFILE)
            response = await client.post(URL, json=body, headers=headers)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "validation_error"
        assert fragment in response.json()["error"]["message"]

    async def test_content_is_limited_to_200_000_characters(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            headers = await reader(client, "ada@example.org", PROFILE)
            response = await client.post(URL, json={"content": "é" * 200_001}, headers=headers)
        assert response.status_code == 400
        assert "200000 characters" in response.json()["error"]["message"]
        assert fake_openai.chat_requests() == []


class TestFailures:
    async def test_unknown_documents(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = make_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            headers = await reader(client, "ada@example.org", PROFILE)
            by_id = await client.post(URL, json={"document_id": CHAPTER_ID}, headers=headers)
            by_path = await client.post(URL, json={"source_path": "nope.md"}, headers=headers)
        assert by_id.status_code == by_path.status_code == 404
        assert by_id.json()["error"]["code"] == "not_found"
        assert "nope.md" in by_path.json()["error"]["message"]

    async def test_offline_server_says_what_enables_it(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            headers = await reader(client, "ada@example.org", PROFILE)
            response = await client.post(URL, json={"document_id": CHAPTER_ID}, headers=headers)
            stream = await client.post(f"{URL}/stream", json={"document_id": CHAPTER_ID})
        for answer in (response, stream):
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "llm_unavailable"
            assert "OPENAI_API_KEY" in answer.json()["error"]["message"]

    async def test_generation_rate_limit_counts_per_reader(
        self,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        fake_openai.reply = shouting_reply
        settings = await ready(sqlite_url, fake_openai, tmp_path, rate_limit_generation="2/minute")
        body = {"document_id": CHAPTER_ID}
        async with app_factory(settings) as client:
            ada = await reader(client, "ada@example.org", PROFILE)
            bob = await reader(client, "bob@example.org", PROFILE)
            answers = [await client.post(URL, json=body, headers=ada) for _ in range(3)]
            translated = await client.post("/api/v1/translate", json=body, headers=ada)
            other = await client.post(URL, json=body, headers=bob)
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[2].headers["retry-after"]
        assert translated.status_code == 429  # one budget for both kinds of generation
        assert other.status_code == 200


class TestStream:
    async def test_events_in_order_then_the_cache(
        self,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        fake_openai.reply = shouting_reply
        settings = await ready(database_url, fake_openai, tmp_path, generation_section_tokens=100)
        async with app_factory(settings) as client:
            headers = await reader(client, "ada@example.org", PROFILE)
            body = {"document_id": CHAPTER_ID}
            response = await client.post(f"{URL}/stream", json=body, headers=headers)
            again = await client.post(f"{URL}/stream", json=body, headers=headers)
            plain = await client.post(URL, json=body, headers=headers)

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        events, _ = parse_sse(response.text)
        names = [name for name, _ in events]
        assert names == ["start", "token", "token", "token", "token", "done"]
        start, done = events[0][1], events[-1][1]
        assert start == {
            "document_id": CHAPTER_ID,
            "variant": done["variant"],
            "cached": False,
            "model": "gpt-4o-mini",
            "sections": 4,
        }
        streamed = "".join(data["text"] for name, data in events if name == "token")
        assert streamed == done["content"]
        assert done["cached"] is False
        for kept in KEPT[:7]:
            assert kept in streamed

        cached_events, _ = parse_sse(again.text)
        assert cached_events[0][1]["cached"] is True
        assert cached_events[-1][0] == "done"
        assert cached_events[-1][1]["cached"] is True
        assert "".join(d["text"] for n, d in cached_events if n == "token") == done["content"]
        assert plain.json()["content"] == done["content"]
        assert plain.json()["cached"] is True

    async def test_a_broken_answer_ends_in_an_error_event(
        self,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        fake_openai.reply = dropping_reply
        settings = await ready(sqlite_url, fake_openai, tmp_path)
        async with app_factory(settings) as client:
            headers = await reader(client, "ada@example.org", PROFILE)
            response = await client.post(
                f"{URL}/stream", json={"document_id": CHAPTER_ID}, headers=headers
            )
            missing = await client.post(
                f"{URL}/stream", json={"source_path": "nope.md"}, headers=headers
            )
        events, _ = parse_sse(response.text)
        assert [name for name, _ in events] == ["start", "error"]
        assert events[-1][1]["code"] == "llm_error"
        assert missing.status_code == 404  # checked before the stream opens
        assert await generated_rows(sqlite_url) == 0
