"""What holds for both variants (POST /api/v1/personalize and /api/v1/translate, and their
streams): the cache, the checked rewrite, the stream's events, the guards and the failures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from bookchat.chapters.pieces import plan
from tests.chapters.conftest import (
    ADMIN,
    CHAPTER_ID,
    PROFILE,
    RESPACED_PROFILE,
    VariantCase,
    reader,
    ready,
)
from tests.chapters.fakes import (
    CHAPTER,
    CHAPTER_PATH,
    KEPT,
    broken_first_then,
    dropping_reply,
    generated_rows,
    heading_adding_reply,
    shouting_reply,
    system_prompt,
)
from tests.chat.test_stream import parse_sse
from tests.conftest import AppFactory, make_settings, openai_settings
from tests.fakes.openai_server import FakeOpenAIServer

CHANGED = {"content": CHAPTER.replace("8 GB", "12 GB")}


class TestCache:
    async def test_the_next_reader_gets_the_cache_until_the_chapter_changes(
        self,
        variant: VariantCase,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(database_url, fake_openai, tmp_path)
        async with app_factory(settings) as client:
            ada = await variant.caller(client, "ada@example.org")
            bob = await variant.caller(client, "bob@example.org", RESPACED_PROFILE)
            first = await client.post(
                variant.url, json={"source_path": CHAPTER_PATH, **variant.body}, headers=ada
            )
            calls = len(fake_openai.chat_requests())
            second = await client.post(
                variant.url, json={"document_id": CHAPTER_ID, **variant.same}, headers=bob
            )
            assert len(fake_openai.chat_requests()) == calls  # no model call
            other = await client.post(
                variant.url, json={"document_id": CHAPTER_ID, **variant.other}, headers=bob
            )
            assert len(fake_openai.chat_requests()) > calls
            assert await generated_rows(database_url) == 2

            changed = await client.put(f"/api/v1/content/{CHAPTER_ID}", json=CHANGED, headers=ADMIN)
            assert changed.status_code == 200
            calls = len(fake_openai.chat_requests())
            after = await client.post(
                variant.url, json={"document_id": CHAPTER_ID, **variant.body}, headers=ada
            )
            assert len(fake_openai.chat_requests()) > calls

        assert first.status_code == second.status_code == other.status_code == 200
        assert second.json()["cached"] is True
        assert second.json()["content"] == first.json()["content"]
        assert second.json()["variant"] == first.json()["variant"]
        assert second.json()["generated_at"] == first.json()["generated_at"]
        assert other.json()["cached"] is False
        assert other.json()["variant"] != first.json()["variant"]
        assert other.json().items() >= variant.other_extra.items()
        assert after.json()["cached"] is False
        assert "12" in after.json()["content"]
        # The variants of the old text are gone: only the new one is left.
        assert await generated_rows(database_url) == 1

    async def test_two_readers_at_once_store_one_variant(
        self,
        variant: VariantCase,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(database_url, fake_openai, tmp_path)
        fake_openai.ttft = 0.3
        async with app_factory(settings) as client:
            headers = await variant.caller(client, "ada@example.org")
            answers = await asyncio.gather(
                *(
                    client.post(variant.url, json={"document_id": CHAPTER_ID}, headers=headers)
                    for _ in range(2)
                )
            )
        assert [a.status_code for a in answers] == [200, 200]
        assert answers[0].json()["content"] == answers[1].json()["content"]
        assert await generated_rows(database_url) == 1

    async def test_a_chapter_changed_during_the_rewrite_is_not_cached(
        self,
        variant: VariantCase,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(database_url, fake_openai, tmp_path)
        fake_openai.ttft = 0.5

        async def change(client: httpx.AsyncClient) -> httpx.Response:
            await asyncio.sleep(0.1)
            return await client.put(f"/api/v1/content/{CHAPTER_ID}", json=CHANGED, headers=ADMIN)

        async with app_factory(settings) as client:
            headers = await variant.caller(client, "ada@example.org")
            rewritten, changed = await asyncio.gather(
                client.post(variant.url, json={"document_id": CHAPTER_ID}, headers=headers),
                change(client),
            )
        assert changed.status_code == 200
        assert rewritten.status_code == 200
        assert "12" not in rewritten.json()["content"]  # the text it was asked for
        assert await generated_rows(database_url) == 0  # but already stale: not cached

    async def test_deleting_a_document_deletes_its_variants(
        self,
        variant: VariantCase,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(database_url, fake_openai, tmp_path)
        async with app_factory(settings) as client:
            headers = await variant.caller(client, "ada@example.org")
            for asked in (variant.body, variant.other):
                response = await client.post(
                    variant.url, json={"document_id": CHAPTER_ID, **asked}, headers=headers
                )
                assert response.status_code == 200
            assert await generated_rows(database_url) == 2
            deleted = await client.delete(f"/api/v1/content/{CHAPTER_ID}", headers=ADMIN)
            gone = await client.post(variant.url, json={"document_id": CHAPTER_ID}, headers=headers)

        assert deleted.status_code == 204
        assert await generated_rows(database_url) == 0
        assert gone.status_code == 404


class TestRewrite:
    async def test_a_broken_answer_is_retried_once_then_reported(
        self,
        variant: VariantCase,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(database_url, fake_openai, tmp_path)
        body = {"document_id": CHAPTER_ID, **variant.body}
        async with app_factory(settings) as client:
            headers = await variant.caller(client, "ada@example.org")
            fake_openai.reply = dropping_reply
            broken = await client.post(variant.url, json=body, headers=headers)
            attempts = len(fake_openai.chat_requests())
            fake_openai.reply = heading_adding_reply
            added = await client.post(variant.url, json=body, headers=headers)
            fake_openai.reset()
            fake_openai.reply = broken_first_then(shouting_reply)
            recovered = await client.post(variant.url, json=body, headers=headers)

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
            generation_section_tokens=100,
            generation_concurrency=2,
        )
        async with app_factory(settings) as client:
            headers = await variant.caller(client, "ada@example.org")
            document = (await client.get(f"/api/v1/content/documents/{CHAPTER_ID}")).json()
            response = await client.post(
                variant.url, json={"document_id": CHAPTER_ID}, headers=headers
            )

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


class TestRequests:
    @pytest.mark.parametrize(
        ("body", "fragment"),
        [
            ({"document_id": CHAPTER_ID, "source_path": CHAPTER_PATH}, "exactly one of"),
            ({"content": "   "}, "content"),
            ({}, "exactly one of"),
        ],
    )
    async def test_exactly_one_chapter(
        self,
        body: dict[str, Any],
        fragment: str,
        variant: VariantCase,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
    ) -> None:
        settings = make_settings(sqlite_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            headers = await variant.caller(client, "ada@example.org")
            response = await client.post(variant.url, json=body, headers=headers)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "validation_error"
        assert fragment in response.json()["error"]["message"]
        assert len(response.json()["error"]["details"]) == 1  # the body is validated once

    async def test_content_is_limited_to_200_000_characters(
        self,
        variant: VariantCase,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
    ) -> None:
        settings = make_settings(sqlite_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            headers = await variant.caller(client, "ada@example.org")
            response = await client.post(
                variant.url, json={"content": "é" * 200_001}, headers=headers
            )
        assert response.status_code == 400
        assert "200000 characters" in response.json()["error"]["message"]
        assert fake_openai.chat_requests() == []

    async def test_unknown_documents(
        self,
        variant: VariantCase,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
    ) -> None:
        settings = make_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            headers = await variant.caller(client, "ada@example.org")
            answers = [
                await client.post(url, json=body, headers=headers)
                for url in (variant.url, f"{variant.url}/stream")
                for body in ({"document_id": CHAPTER_ID}, {"source_path": "nope.md"})
            ]
        by_id, by_path, stream_by_id, stream_by_path = answers
        # Checked before the stream opens: a plain 404, not an event.
        assert [a.status_code for a in answers] == [404, 404, 404, 404]
        assert by_id.json()["error"]["code"] == "not_found"
        assert "nope.md" in by_path.json()["error"]["message"]
        assert "nope.md" in stream_by_path.json()["error"]["message"]
        assert stream_by_id.json()["error"]["code"] == "not_found"


class TestGuards:
    async def test_offline_server_says_what_enables_it(
        self, variant: VariantCase, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            headers = await variant.caller(client, "ada@example.org")
            body = {"document_id": CHAPTER_ID}
            response = await client.post(variant.url, json=body, headers=headers)
            stream = await client.post(f"{variant.url}/stream", json=body)
        for answer in (response, stream):
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "llm_unavailable"
            assert "OPENAI_API_KEY" in answer.json()["error"]["message"]
            assert "OPENAI_BASE_URL with LLM_PROVIDER=openai" in answer.json()["error"]["message"]

    async def test_generation_rate_limit_counts_per_reader(
        self,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(sqlite_url, fake_openai, tmp_path, rate_limit_generation="2/minute")
        body = {"document_id": CHAPTER_ID}
        url = "/api/v1/personalize"
        async with app_factory(settings) as client:
            ada = await reader(client, "ada@example.org", PROFILE)
            bob = await reader(client, "bob@example.org", PROFILE)
            answers = [await client.post(url, json=body, headers=ada) for _ in range(3)]
            translated = await client.post("/api/v1/translate", json=body, headers=ada)
            other = await client.post(url, json=body, headers=bob)
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[2].headers["retry-after"]
        assert translated.status_code == 429  # one budget for both kinds of generation
        assert other.status_code == 200


class TestStream:
    async def test_events_in_order_then_the_cache(
        self,
        variant: VariantCase,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(database_url, fake_openai, tmp_path, generation_section_tokens=100)
        async with app_factory(settings) as client:
            headers = await variant.caller(client, "ada@example.org")
            body = {"document_id": CHAPTER_ID}
            response = await client.post(f"{variant.url}/stream", json=body, headers=headers)
            again = await client.post(f"{variant.url}/stream", json=body, headers=headers)
            plain = await client.post(variant.url, json=body, headers=headers)

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
            **variant.extra,
        }
        streamed = "".join(data["text"] for name, data in events if name == "token")
        assert streamed == done["content"]
        assert done["cached"] is False
        assert done.items() >= variant.extra.items()
        for kept in KEPT[:7]:
            assert kept in streamed

        cached_events, _ = parse_sse(again.text)
        assert cached_events[0][1]["cached"] is True
        assert cached_events[-1][0] == "done"
        assert cached_events[-1][1]["cached"] is True
        assert "".join(d["text"] for n, d in cached_events if n == "token") == done["content"]
        assert plain.json()["content"] == done["content"]
        assert plain.json()["cached"] is True
        assert plain.json() == {**done, "cached": True}

    async def test_a_chapter_that_fits_is_one_token_then_done(
        self,
        variant: VariantCase,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(database_url, fake_openai, tmp_path)
        async with app_factory(settings) as client:
            headers = await variant.caller(client, "ada@example.org")
            body = {"document_id": CHAPTER_ID}
            response = await client.post(f"{variant.url}/stream", json=body, headers=headers)
            plain = await client.post(variant.url, json=body, headers=headers)

        events, _ = parse_sse(response.text)
        assert [name for name, _ in events] == ["start", "token", "done"]
        start, done = events[0][1], events[-1][1]
        assert start.items() >= variant.extra.items()
        assert start["cached"] is False
        assert events[1][1]["text"] == done["content"]
        assert done.items() >= variant.extra.items()
        assert plain.json() == {**done, "cached": True}

    async def test_a_broken_answer_ends_in_an_error_event(
        self,
        variant: VariantCase,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(sqlite_url, fake_openai, tmp_path)
        fake_openai.reply = dropping_reply
        async with app_factory(settings) as client:
            headers = await variant.caller(client, "ada@example.org")
            response = await client.post(
                f"{variant.url}/stream", json={"document_id": CHAPTER_ID}, headers=headers
            )
            missing = await client.post(
                f"{variant.url}/stream", json={"source_path": "nope.md"}, headers=headers
            )
        events, _ = parse_sse(response.text)
        assert [name for name, _ in events] == ["start", "error"]
        assert events[-1][1]["code"] == "llm_error"
        assert missing.status_code == 404  # checked before the stream opens
        assert await generated_rows(sqlite_url) == 0
