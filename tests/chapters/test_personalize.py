"""POST /api/v1/personalize: whose profile, the instructions it gives, the Markdown kept.

What holds for translating too is in test_router.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.chapters.conftest import CHAPTER_ID, PROFILE, reader, ready
from tests.chapters.fakes import KEPT, shouting_reply, system_prompt
from tests.conftest import AppFactory, make_settings, openai_settings
from tests.fakes.openai_server import FakeOpenAIServer

URL = "/api/v1/personalize"


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
        ],
    )
    async def test_invalid_profiles(
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
