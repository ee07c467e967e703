"""POST /api/v1/translate: languages, their direction, the Markdown kept, ad-hoc content.

What holds for personalizing too is in test_router.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from bookchat.chapters.languages import direction, language_name
from tests.chapters.conftest import CHAPTER_ID, ready
from tests.chapters.fakes import (
    CHAPTER,
    CHAPTER_PATH,
    KEPT,
    generated_rows,
    sent_text,
    system_prompt,
    urdu_reply,
)
from tests.conftest import AppFactory, make_settings, openai_settings
from tests.fakes.openai_server import FakeOpenAIServer

URL = "/api/v1/translate"


class TestTranslate:
    async def test_urdu_by_default_right_to_left_with_code_and_urls_untouched(
        self,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
        tmp_path: Path,
    ) -> None:
        settings = await ready(database_url, fake_openai, tmp_path)
        fake_openai.reply = urdu_reply
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
        # Translation needs no account; ad-hoc content does, unless the operator allows it.
        settings = make_settings(
            sqlite_url, **openai_settings(fake_openai), allow_anonymous_chapter_content=True
        )
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
        # Translation needs no account; ad-hoc content does, unless the operator allows it.
        settings = make_settings(
            sqlite_url, **openai_settings(fake_openai), allow_anonymous_chapter_content=True
        )
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
        # Translation needs no account; ad-hoc content does, unless the operator allows it.
        settings = make_settings(
            sqlite_url, **openai_settings(fake_openai), allow_anonymous_chapter_content=True
        )
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
