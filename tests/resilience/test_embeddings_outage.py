"""The embeddings endpoint fails: content writes and searches answer 503 `dependency_unavailable`,
and a document whose replacement failed stays searchable as it was."""

from __future__ import annotations

from typing import Literal

import httpx
import pytest

from tests.conftest import AppFactory, ingest_book, make_settings, openai_settings
from tests.fakes.openai_server import FakeOpenAIServer

KEY = "admin-test-key"
ADMIN = {"X-Admin-Key": KEY}
VENDOR_TEXT = "secret vendor detail sk-live-123"
RUNNING = "---\ntitle: Walking\n---\n\n# Walking\n\n## Running\n\nBoth feet leave the ground.\n"
BALANCE = "how does a biped keep balance"

Fault = Literal["503", "429", "hang"]


def inject(fake: FakeOpenAIServer, fault: Fault) -> None:
    if fault == "hang":
        fake.hang_next(5.0)
    else:
        fake.fail_next(int(fault), message=VENDOR_TEXT)


def assert_outage(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"]["code"] == "dependency_unavailable"
    assert "embeddings" in body["error"]["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert VENDOR_TEXT not in response.text
    assert "sk-live" not in response.text


class TestReplaceDuringAnOutage:
    @pytest.mark.parametrize("fault", ["503", "429", "hang"])
    async def test_answers_503_and_the_old_version_stays_searchable(
        self, fault: Fault, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = make_settings(
            sqlite_url,
            admin_api_key=KEY,
            **{
                **openai_settings(fake_openai),
                "llm_provider": "extractive",
                "embeddings_provider": "openai",
                "llm_timeout_seconds": 0.5,
            },
        )
        await ingest_book(settings)
        async with app_factory(settings) as client:
            motion = (await client.get("/api/v1/content/documents?module=Motion")).json()
            walking_id = motion["items"][0]["id"]
            inject(fake_openai, fault)
            replaced = await client.put(
                f"/api/v1/content/{walking_id}", headers=ADMIN, json={"content": RUNNING}
            )
            kept = (await client.get(f"/api/v1/content/documents/{walking_id}")).json()
            balance = await client.get("/api/v1/content/search", params={"q": BALANCE})
            running = await client.get("/api/v1/content/search", params={"q": "feet leave"})

        assert_outage(replaced)
        assert "zero moment point" in kept["content"]
        assert balance.status_code == 200
        top = balance.json()["results"][0]
        assert top["document_id"] == walking_id
        assert top["section"] == "Balance"
        assert all("Running" not in hit["heading_path"] for hit in running.json()["results"])


class TestSearchDuringAnOutage:
    async def test_answers_503(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = make_settings(
            sqlite_url,
            **{**openai_settings(fake_openai), "embeddings_provider": "openai"},
        )
        async with app_factory(settings) as client:
            fake_openai.fail_next(500, message=VENDOR_TEXT)
            search = await client.get("/api/v1/content/search", params={"q": BALANCE})
        assert_outage(search)
