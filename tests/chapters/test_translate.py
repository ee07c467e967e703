"""POST /api/v1/translate and its stream: languages, direction, the Markdown kept, the cache."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from bookchat.chapters.languages import direction, language_name
from bookchat.content.models import document_id_for
from tests.chapters.fakes import (
    CHAPTER,
    CHAPTER_PATH,
    KEPT,
    generated_rows,
    ingest_chapter,
    sent_text,
    system_prompt,
    urdu_reply,
)
from tests.chat.test_stream import parse_sse
from tests.conftest import AppFactory, make_settings, openai_settings
from tests.fakes.openai_server import FakeOpenAIServer

URL = "/api/v1/translate"
CHAPTER_ID = str(document_id_for(CHAPTER_PATH))
KEY = "admin-test-key"
ADMIN = {"X-Admin-Key": KEY}


async def ready(database_url: str, fake: FakeOpenAIServer, tmp_path: Path, **overrides: Any) -> Any:
    fake.reply = urdu_reply
    settings = make_settings(
        database_url, **{**openai_settings(fake), "admin_api_key": KEY, **overrides}
    )
    await ingest_chapter(settings, tmp_path)
    return settings


class TestTranslate:
    async def test_urdu_by_default_right_to_left_with_code_and_urls_untouched(
        self,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(database_url, fake_openai, tmp_path)
        async with app_factory(settings) as client:
            response = await client.post(URL, json={"source_path": CHAPTER_PATH})

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["language"], body["direction"], body["variant"]) == ("ur", "rtl", "ur")
        assert body["document_id"] == CHAPTER_ID
        assert body["cached"] is False
        content = body["content"]
        for kept in KEPT:
            assert kept in content, kept
        assert "# لفظ لفظ لفظ لفظ {#gpu-sim}" in content
        assert ":::warning لفظ لفظ" in content
        assert "[لفظ لفظ](https://docs.omniverse" in content
        assert "Isaac" not in content.replace("isaac", "")  # prose translated, code kept
        prompt = system_prompt(fake_openai.chat_requests()[0])
        assert "into Urdu (language tag ur)" in prompt
        assert "bidirectional control characters" in prompt

    @pytest.mark.parametrize(
        ("asked", "language", "expected_direction", "name"),
        [
            ("PT-br", "pt-BR", "ltr", "Brazilian Portuguese"),
            ("ar", "ar", "rtl", "Arabic"),
            ("ur-latn", "ur-Latn", "ltr", "Roman Urdu"),
            ("pa-arab", "pa-Arab", "rtl", "Punjabi"),
            ("tlh", "tlh", "ltr", "BCP 47 tag tlh"),
        ],
    )
    async def test_any_language_tag_normalized(
        self,
        asked: str,
        language: str,
        expected_direction: str,
        name: str,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
    ) -> None:
        fake_openai.reply = urdu_reply
        settings = make_settings(sqlite_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            response = await client.post(
                URL, json={"content": "# Nodes\n\nA node is a process.", "target_language": asked}
            )
        assert response.status_code == 200
        body = response.json()
        assert (body["language"], body["variant"], body["direction"]) == (
            language,
            language,
            expected_direction,
        )
        assert name in system_prompt(fake_openai.chat_requests()[0])

    @pytest.mark.parametrize("tag", ["english!", "u", "ur_PK", "x" * 17, ""])
    async def test_invalid_language_tags(
        self, tag: str, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            response = await client.post(URL, json={"content": "# x", "target_language": tag})
        assert response.status_code == 400
        assert "target_language" in response.json()["error"]["message"]

    async def test_ad_hoc_content_keeps_frontmatter_and_tags_and_is_not_cached(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        fake_openai.reply = urdu_reply
        content = (
            CHAPTER
            + '\n<Tabs groupId="os">\n<TabItem value="linux" label="Linux">\n\n'
            + "Install it <b>now</b>. <!-- not for translators -->\n\n</TabItem>\n</Tabs>\n"
            + "\r\nimport Admonition from '@theme/Admonition';\n"
        )
        settings = make_settings(sqlite_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            first = await client.post(URL, json={"content": content})
            second = await client.post(URL, json={"content": content})

        assert first.status_code == second.status_code == 200
        translated = first.json()["content"]
        assert translated.startswith(
            "---\ntitle: Simulation on a GPU\nsidebar_position: 2\n---\n\n# لفظ"
        )
        for kept in [
            *KEPT,
            '<Tabs groupId="os">',
            '<TabItem value="linux" label="Linux">',
            "<b>",
            "</b>",
            "<!-- not for translators -->",
            "\nimport Admonition from '@theme/Admonition';\n",
        ]:
            assert kept in translated, kept
        assert "title: Simulation on a GPU" not in sent_text(fake_openai.chat_requests()[0])
        assert first.json()["document_id"] is None
        assert second.json()["cached"] is False
        assert len(fake_openai.chat_requests()) == 2
        assert await generated_rows(sqlite_url) == 0


class TestCache:
    async def test_second_reader_gets_the_cache_until_the_chapter_changes(
        self,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(database_url, fake_openai, tmp_path)
        body = {"document_id": CHAPTER_ID, "target_language": "ur"}
        async with app_factory(settings) as client:
            first = await client.post(URL, json=body)
            calls = len(fake_openai.chat_requests())
            second = await client.post(URL, json={"source_path": CHAPTER_PATH})
            assert len(fake_openai.chat_requests()) == calls
            arabic = await client.post(URL, json={**body, "target_language": "ar"})
            assert await generated_rows(database_url) == 2

            changed = await client.put(
                f"/api/v1/content/{CHAPTER_ID}",
                json={"content": CHAPTER.replace("8 GB", "12 GB")},
                headers=ADMIN,
            )
            assert changed.status_code == 200
            calls = len(fake_openai.chat_requests())
            after = await client.post(URL, json=body)
            assert len(fake_openai.chat_requests()) > calls

        assert second.json()["cached"] is True
        assert second.json()["content"] == first.json()["content"]
        assert arabic.json()["cached"] is False
        assert arabic.json()["direction"] == "rtl"
        assert after.json()["cached"] is False
        assert "12" in after.json()["content"]
        # The variants of the old text are gone: only the new Urdu one is left.
        assert await generated_rows(database_url) == 1

    async def test_two_readers_at_once_store_one_variant(
        self,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(database_url, fake_openai, tmp_path)
        fake_openai.ttft = 0.3
        async with app_factory(settings) as client:
            answers = await asyncio.gather(
                *(client.post(URL, json={"document_id": CHAPTER_ID}) for _ in range(2))
            )
        assert [a.status_code for a in answers] == [200, 200]
        assert answers[0].json()["content"] == answers[1].json()["content"]
        assert await generated_rows(database_url) == 1

    async def test_a_chapter_changed_during_the_translation_is_not_cached(
        self,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(database_url, fake_openai, tmp_path)
        fake_openai.ttft = 0.5

        async def change(client: httpx.AsyncClient) -> httpx.Response:
            await asyncio.sleep(0.1)
            return await client.put(
                f"/api/v1/content/{CHAPTER_ID}",
                json={"content": CHAPTER.replace("8 GB", "12 GB")},
                headers=ADMIN,
            )

        async with app_factory(settings) as client:
            translated, changed = await asyncio.gather(
                client.post(URL, json={"document_id": CHAPTER_ID}), change(client)
            )
        assert changed.status_code == 200
        assert translated.status_code == 200
        assert "12" not in translated.json()["content"]  # the text it was asked for
        assert await generated_rows(database_url) == 0  # but already stale: not cached

    async def test_deleting_a_document_deletes_its_variants(
        self,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(database_url, fake_openai, tmp_path)
        async with app_factory(settings) as client:
            for language in ("ur", "fa"):
                response = await client.post(
                    URL, json={"document_id": CHAPTER_ID, "target_language": language}
                )
                assert response.status_code == 200
            assert await generated_rows(database_url) == 2
            deleted = await client.delete(f"/api/v1/content/{CHAPTER_ID}", headers=ADMIN)
            gone = await client.post(URL, json={"document_id": CHAPTER_ID})

        assert deleted.status_code == 204
        assert await generated_rows(database_url) == 0
        assert gone.status_code == 404


class TestStream:
    async def test_start_says_the_direction_and_done_is_the_answer(
        self,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(database_url, fake_openai, tmp_path)
        async with app_factory(settings) as client:
            response = await client.post(f"{URL}/stream", json={"document_id": CHAPTER_ID})
            plain = await client.post(URL, json={"document_id": CHAPTER_ID})

        events, _ = parse_sse(response.text)
        assert [name for name, _ in events] == ["start", "token", "done"]
        start, done = events[0][1], events[-1][1]
        assert start["language"] == "ur"
        assert start["direction"] == "rtl"
        assert start["cached"] is False
        assert events[1][1]["text"] == done["content"]
        assert done["direction"] == "rtl"
        assert plain.json() == {**done, "cached": True}

    async def test_offline_and_unknown(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            offline = await client.post(f"{URL}/stream", json={"document_id": CHAPTER_ID})
        settings = make_settings(sqlite_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            unknown = await client.post(f"{URL}/stream", json={"document_id": CHAPTER_ID})
        assert offline.status_code == 503
        assert "OPENAI_BASE_URL with LLM_PROVIDER=openai" in offline.json()["error"]["message"]
        assert unknown.status_code == 404


def test_language_names_and_directions() -> None:
    assert language_name("ur") == "Urdu"
    assert language_name("ur-PK") == "Urdu (ur-PK)"
    assert [direction(tag) for tag in ("ur", "he", "ckb", "ur-PK", "en", "az-Arab")] == [
        "rtl",
        "rtl",
        "rtl",
        "rtl",
        "ltr",
        "rtl",
    ]
