"""The Qdrant server fails after startup: every route that needs it answers 503
`dependency_unavailable` in the error shape, with a request id and no vendor text."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import httpx
import pytest

from bookchat.core.config import Settings
from tests.conftest import AppFactory, ingest_book, make_settings
from tests.fakes.qdrant_server import VENDOR_SECRET, FakeQdrantServer

KEY = "admin-test-key"
ADMIN = {"X-Admin-Key": KEY}
QUESTION = {"message": "How does a publisher send messages?"}
RUNNING = "---\ntitle: Walking\n---\n\n# Walking\n\n## Running\n\nBoth feet leave the ground.\n"

Outage = Literal["disconnect", "error", "kill"]


@pytest.fixture
def qdrant() -> Iterator[FakeQdrantServer]:
    with FakeQdrantServer() as server:
        yield server


async def book_on(qdrant: FakeQdrantServer, sqlite_url: str) -> Settings:
    """Settings whose Qdrant server is the fake, holding the mini book."""
    settings = make_settings(sqlite_url, qdrant_url=qdrant.url, admin_api_key=KEY)
    await ingest_book(settings)
    return settings


def fail(qdrant: FakeQdrantServer, outage: Outage) -> None:
    if outage == "kill":
        qdrant.kill()
    else:
        qdrant.fail(outage)


def assert_outage(response: httpx.Response, qdrant: FakeQdrantServer) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"]["code"] == "dependency_unavailable"
    assert body["request_id"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    # Neither the vendor's text nor where the server lives reaches the client.
    assert VENDOR_SECRET not in response.text
    assert qdrant.url.removeprefix("http://") not in response.text
    assert "Unexpected Response" not in response.text


class TestReads:
    @pytest.mark.parametrize("outage", ["disconnect", "error", "kill"])
    async def test_chat_and_search_answer_503(
        self, outage: Outage, qdrant: FakeQdrantServer, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = await book_on(qdrant, sqlite_url)
        async with app_factory(settings) as client:
            before = await client.get("/api/v1/content/search", params={"q": "publisher"})
            fail(qdrant, outage)
            search = await client.get("/api/v1/content/search", params={"q": "publisher"})
            chat = await client.post("/api/v1/chat", json=QUESTION)
            stream = await client.post("/api/v1/chat/stream", json=QUESTION)
            seed_chat = await client.post(
                "/chat", json=QUESTION, headers={"X-Request-ID": "reader-42"}
            )

        assert before.status_code == 200
        assert before.json()["results"]
        for response in (search, chat, stream, seed_chat):
            assert_outage(response, qdrant)
        assert seed_chat.json()["request_id"] == "reader-42"
        if outage != "kill":
            # BM25 is scored in process; the passages' text is read from Qdrant.
            assert "POST /collections/bookchat/points" in qdrant.point_calls


class TestWrites:
    async def test_replace_and_delete_answer_503_and_keep_the_document(
        self, qdrant: FakeQdrantServer, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = await book_on(qdrant, sqlite_url)
        async with app_factory(settings) as client:
            motion = (await client.get("/api/v1/content/documents?module=Motion")).json()
            walking_id = motion["items"][0]["id"]
            qdrant.fail("disconnect")
            replaced = await client.put(
                f"/api/v1/content/{walking_id}", headers=ADMIN, json={"content": RUNNING}
            )
            deleted = await client.delete(f"/api/v1/content/{walking_id}", headers=ADMIN)
            kept = await client.get(f"/api/v1/content/documents/{walking_id}")

        assert_outage(replaced, qdrant)
        assert_outage(deleted, qdrant)
        assert kept.status_code == 200
        assert "zero moment point" in kept.json()["content"]
        assert "Running" not in kept.json()["content"]
