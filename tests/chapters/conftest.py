"""Readers, a book with the GPU chapter, and the two variants (personalize, translate) for the
tests that hold for both."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bookchat.content.models import document_id_for
from bookchat.core.config import Settings
from tests.chapters.fakes import CHAPTER_PATH, book_with_chapter, shouting_reply
from tests.conftest import openai_settings
from tests.factories import bearer, book_settings, sign_up
from tests.fakes.openai_server import FakeOpenAIServer

CHAPTER_ID = str(document_id_for(CHAPTER_PATH))
PROFILE = {
    "software_level": "advanced",
    "hardware_level": "beginner",
    "background": "Backend developer; my laptop has no GPU.",
    "goals": "Build a robot arm demo",
}
# The same profile up to case and spacing: the same personalized variant.
RESPACED_PROFILE = {**PROFILE, "background": "  backend developer;  my laptop has NO GPU. "}
KEY = "admin-test-key"
ADMIN = {"X-Admin-Key": KEY}


async def reader(
    client: httpx.AsyncClient, email: str, profile: dict[str, Any] | None
) -> dict[str, str]:
    """Sign a reader up (with a saved profile, unless None) and return their auth header."""
    headers = bearer((await sign_up(client, email))["access_token"])
    if profile is not None:
        saved = await client.put("/api/v1/auth/me/profile", json=profile, headers=headers)
        assert saved.status_code == 200, saved.text
    return headers


async def ready(
    database_url: str, fake: FakeOpenAIServer, tmp_path: Path, **overrides: Any
) -> Settings:
    """Settings for the fake model (which shouts the prose back) and the book with the GPU
    chapter ingested; `ADMIN` may change or delete documents."""
    fake.reply = shouting_reply
    options = {**openai_settings(fake), "admin_api_key": KEY, **overrides}
    return await book_settings(database_url, book_with_chapter(tmp_path), **options)


async def _anyone(client: httpx.AsyncClient, email: str, profile: dict[str, Any]) -> dict[str, str]:
    return {}  # translations need no account


@dataclass(frozen=True)
class VariantCase:
    """How a test asks for one variant of the chapter, another way for the same variant, and
    another variant."""

    name: str
    url: str
    # The headers of a caller who may ask (for personalizing: a reader with this saved profile).
    sign_in: Callable[[httpx.AsyncClient, str, dict[str, Any]], Awaitable[dict[str, str]]]
    body: dict[str, Any]  # besides the chapter: the variant, as the first caller asks for it
    same: dict[str, Any]  # the same variant asked another way (with a RESPACED_PROFILE caller)
    other: dict[str, Any]  # another variant of the chapter
    extra: dict[str, str] = field(default_factory=dict)  # the answer's fields beyond the common
    other_extra: dict[str, str] = field(default_factory=dict)

    async def caller(
        self, client: httpx.AsyncClient, email: str, profile: dict[str, Any] = PROFILE
    ) -> dict[str, str]:
        return await self.sign_in(client, email, profile)


VARIANTS = {
    "personalize": VariantCase(
        name="personalize",
        url="/api/v1/personalize",
        sign_in=reader,
        body={},  # the reader's saved profile
        same={},  # the other reader's saved RESPACED_PROFILE
        other={"profile": {"software_level": "beginner"}},
    ),
    "translate": VariantCase(
        name="translate",
        url="/api/v1/translate",
        sign_in=_anyone,
        body={"target_language": "ur"},
        same={},  # Urdu is the default
        other={"target_language": "ar"},
        extra={"language": "ur", "direction": "rtl"},
        other_extra={"language": "ar", "direction": "rtl"},
    ),
}


@pytest.fixture(params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> VariantCase:
    """Each variant in turn."""
    return VARIANTS[request.param]
