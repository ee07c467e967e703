"""The embeddings endpoint fails: questions and searches are answered from BM25 alone (the
relevance gate still applies), content writes answer 503 `dependency_unavailable`, and a
document whose replacement failed stays searchable as it was."""

from __future__ import annotations

import re
from typing import Any, Literal

import httpx
import pytest
from structlog.testing import capture_logs

from bookchat.chat.models import Message, MessageStatus
from bookchat.core.config import Settings
from tests.chat.test_stream import parse_sse
from tests.conftest import AppFactory, ingest_book, make_settings, openai_settings
from tests.factories import count
from tests.fakes.openai_server import EmbeddingsOutage, FakeOpenAIServer

KEY = "admin-test-key"
ADMIN = {"X-Admin-Key": KEY}
VENDOR_TEXT = "secret vendor detail sk-live-123"
RUNNING = "---\ntitle: Walking\n---\n\n# Walking\n\n## Running\n\nBoth feet leave the ground.\n"
BALANCE = "how does a biped keep balance"
OFF_TOPIC = "What is the capital of France?"
OUTAGES: list[EmbeddingsOutage] = ["503", "429", "500", "hang", "bad"]
FALLBACK_LOG = "retrieval.dense_fallback"

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


def dense_settings(url: str, fake: FakeOpenAIServer, **overrides: Any) -> Settings:
    """The real SDK against the fake for both the model and the embeddings, with short waits."""
    return make_settings(
        url,
        admin_api_key=KEY,
        **{
            **openai_settings(fake),
            "embeddings_provider": "openai",
            "llm_timeout_seconds": 0.5,
            **overrides,
        },
    )


async def fallbacks(client: httpx.AsyncClient) -> float:
    """The Prometheus count of queries answered from BM25 alone, over every reason."""
    text = (await client.get("/metrics")).text
    pattern = r"^bookchat_retrieval_dense_fallbacks_total\{[^}]*\} (\S+)$"
    return sum(float(value) for value in re.findall(pattern, text, re.MULTILINE))


class TestReplaceDuringAnOutage:
    @pytest.mark.parametrize("fault", ["503", "429", "hang"])
    async def test_answers_503_and_the_old_version_stays_searchable(
        self, fault: Fault, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = dense_settings(sqlite_url, fake_openai, llm_provider="extractive")
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

    async def test_a_replacement_during_a_lasting_outage_answers_503(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = dense_settings(sqlite_url, fake_openai, llm_provider="extractive")
        await ingest_book(settings)
        async with app_factory(settings) as client:
            motion = (await client.get("/api/v1/content/documents?module=Motion")).json()
            walking_id = motion["items"][0]["id"]
            fake_openai.break_embeddings("503")
            replaced = await client.put(
                f"/api/v1/content/{walking_id}", headers=ADMIN, json={"content": RUNNING}
            )
            kept = (await client.get(f"/api/v1/content/documents/{walking_id}")).json()
        # A book indexed without its vectors would silently search worse: writes fail loudly.
        assert_outage(replaced)
        assert "zero moment point" in kept["content"]


class TestSearchDuringAnOutage:
    @pytest.mark.parametrize("outage", OUTAGES)
    async def test_answers_from_bm25(
        self,
        outage: EmbeddingsOutage,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
    ) -> None:
        settings = dense_settings(sqlite_url, fake_openai)
        await ingest_book(settings)
        async with app_factory(settings) as client:
            fake_openai.break_embeddings(outage, hang_seconds=5.0)
            search = await client.get("/api/v1/content/search", params={"q": BALANCE})
            counted = await fallbacks(client)
        assert search.status_code == 200, search.text
        assert search.json()["results"][0]["section"] == "Balance"
        assert counted == 1

    async def test_a_query_bm25_cannot_search_answers_503(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = dense_settings(sqlite_url, fake_openai)
        await ingest_book(settings)
        async with app_factory(settings) as client:
            fake_openai.break_embeddings("500")
            # Only stop words: no BM25 terms, so without vectors nothing can be searched.
            search = await client.get("/api/v1/content/search", params={"q": "what is the"})
        assert_outage(search)

    async def test_one_warning_per_failure_burst(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        # Every query tries the service, so the end of the burst is seen at once.
        settings = dense_settings(sqlite_url, fake_openai, embeddings_retry_after_seconds=0)
        await ingest_book(settings)
        async with app_factory(settings) as client:
            with capture_logs() as logs:
                fake_openai.break_embeddings("503")
                for query in ("keep balance", "publisher messages", "camera images"):
                    search = await client.get("/api/v1/content/search", params={"q": query})
                    assert search.status_code == 200, search.text
                fake_openai.heal_embeddings()
                healthy = await client.get("/api/v1/content/search", params={"q": "walking gait"})
                fake_openai.break_embeddings("429")
                again = await client.get("/api/v1/content/search", params={"q": "topics nodes"})
            counted = await fallbacks(client)
        assert healthy.status_code == again.status_code == 200
        warnings = [log for log in logs if log["event"] == FALLBACK_LOG]
        assert [log["log_level"] for log in warnings] == ["warning", "warning"]
        assert [log["reason"] for log in warnings] == ["server_error", "rate_limited"]
        assert not [log for log in logs if log["log_level"] == "warning" and log not in warnings]
        assert counted == 4

    async def test_a_hanging_service_costs_one_bounded_wait_then_is_left_alone(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = dense_settings(
            sqlite_url,
            fake_openai,
            # The SDK would wait longer than the question's own bound.
            llm_timeout_seconds=30.0,
            embeddings_query_timeout_seconds=0.3,
        )
        await ingest_book(settings)
        async with app_factory(settings) as client:
            fake_openai.break_embeddings("hang", hang_seconds=30.0)
            ingested = len(fake_openai.embedding_requests())
            first = await client.get("/api/v1/content/search", params={"q": BALANCE})
            second = await client.get("/api/v1/content/search", params={"q": "feet and gait"})
            counted = await fallbacks(client)
        assert first.status_code == second.status_code == 200
        assert first.json()["results"][0]["section"] == "Balance"
        # The second query went straight to BM25: the service was resting.
        assert len(fake_openai.embedding_requests()) == ingested + 1
        assert counted == 2


class TestChatDuringAnOutage:
    @pytest.mark.parametrize("outage", OUTAGES)
    async def test_answers_from_bm25_and_stores_the_turn(
        self,
        outage: EmbeddingsOutage,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
    ) -> None:
        settings = dense_settings(sqlite_url, fake_openai)
        await ingest_book(settings)
        async with app_factory(settings) as client:
            fake_openai.break_embeddings(outage, hang_seconds=5.0)
            answer = await client.post("/api/v1/chat", json={"message": BALANCE})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["mode"] == "rag"
        assert body["citations"][0]["section"] == "Balance"
        assert await count(sqlite_url, Message, status=MessageStatus.COMPLETE) == 2

    async def test_the_relevance_gate_still_refuses_what_the_book_lacks(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = dense_settings(sqlite_url, fake_openai)
        await ingest_book(settings)
        async with app_factory(settings) as client:
            fake_openai.break_embeddings("503")
            answer = await client.post("/api/v1/chat", json={"message": OFF_TOPIC})
        assert answer.status_code == 200, answer.text
        assert answer.json()["mode"] == "no_context"
        assert answer.json()["citations"] == []
        assert not fake_openai.chat_requests()

    async def test_the_stream_answers_as_usual(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = dense_settings(sqlite_url, fake_openai)
        await ingest_book(settings)
        async with app_factory(settings) as client:
            fake_openai.break_embeddings("hang", hang_seconds=5.0)
            stream = await client.post("/api/v1/chat/stream", json={"message": BALANCE})
        events, _ = parse_sse(stream.text)
        names = [name for name, _ in events]
        assert names[:2] == ["start", "sources"]
        assert names[-1] == "done"
        assert "error" not in names
        assert events[1][1]["citations"][0]["section"] == "Balance"
        assert await count(sqlite_url, Message, status=MessageStatus.COMPLETE) == 2
