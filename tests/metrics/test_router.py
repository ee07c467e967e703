"""`GET /metrics`: Prometheus metrics that move with what the service does."""

from __future__ import annotations

import uuid

from prometheus_client.parser import text_string_to_metric_families

from bookchat.container import open_container
from bookchat.content.loader import load_folder
from bookchat.core.metrics import Metrics
from tests.books.test_router import KEY as ADMIN_KEY
from tests.books.test_router import add_book, ingest_publishers
from tests.conftest import MINI_BOOK, AppFactory, ingest_book, make_settings, openai_settings
from tests.fakes.openai_server import FakeOpenAIServer

QUESTION = {"message": "How does a publisher send messages on a topic?"}
BOOK_CHAT = "/api/v1/books/{book}/chat"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist yet."""
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def total(text: str, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples(text).items() if n == name and wanted <= lbls)


class TestMetricsEndpoint:
    async def test_a_request_moves_its_counter(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            before = (await client.get("/metrics")).text
            await client.get("/api/v1/health/live")
            await client.get("/api/v1/health/live")
            response = await client.get("/metrics")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=")
        # A health check is about no book: its `book` label is empty.
        labels = {"book": "", "method": "GET", "route": "/api/v1/health/live", "status": "200"}
        moved = value(response.text, "bookchat_http_requests_total", **labels) - value(
            before, "bookchat_http_requests_total", **labels
        )
        assert moved == 2
        assert (
            value(
                response.text,
                "bookchat_http_request_duration_seconds_count",
                book="",
                method="GET",
                route="/api/v1/health/live",
            )
            == 2
        )
        # Process facts come along for a single process.
        assert value(response.text, "process_resident_memory_bytes") > 0

    async def test_routes_are_labelled_by_template_not_by_path(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            for _ in range(3):
                await client.get(f"/api/v1/chat/history/{uuid.uuid4()}")
            await client.get(f"/api/chat/history/{uuid.uuid4()}")  # the same route, aliased
            await client.get("/health")  # the seed's route at the root
            await client.get("/no/such/page")
            text = (await client.get("/metrics")).text

        assert (
            value(
                text,
                "bookchat_http_requests_total",
                book="default",
                method="GET",
                route="/api/v1/chat/history/{session_id}",
                status="404",
            )
            == 3
        )
        labels = {"book": "default", "method": "GET", "status": "404"}
        assert (
            value(
                text,
                "bookchat_http_requests_total",
                route="/api/chat/history/{session_id}",
                **labels,
            )
            == 1
        )
        assert (
            value(
                text,
                "bookchat_http_requests_total",
                book="",
                method="GET",
                route="/health",
                status="200",
            )
            == 1
        )
        assert (
            value(
                text,
                "bookchat_http_requests_total",
                book="",
                method="GET",
                route="unmatched",
                status="404",
            )
            == 1
        )
        assert "/no/such/page" not in text

    async def test_a_typed_path_parameter_is_labelled_by_its_name(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url, admin_api_key="k")) as client:
            await client.delete(f"/api/v1/content/{uuid.uuid4()}", headers={"X-Admin-Key": "k"})
            text = (await client.get("/metrics")).text

        labels = {"book": "default", "method": "DELETE", "status": "404"}
        route = "/api/v1/content/{document_id}"
        assert value(text, "bookchat_http_requests_total", route=route, **labels) == 1

    async def test_turned_off(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url, metrics_enabled=False)) as client:
            await client.get("/api/v1/health/live")
            response = await client.get("/metrics")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        assert "METRICS_ENABLED" in response.json()["error"]["message"]

    async def test_token_protects_them(self, sqlite_url: str, app_factory: AppFactory) -> None:
        settings = make_settings(sqlite_url, metrics_token="scrape-me-please")
        async with app_factory(settings) as client:
            missing = await client.get("/metrics")
            wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
            right = await client.get(
                "/metrics", headers={"Authorization": "Bearer scrape-me-please"}
            )
        assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
        assert missing.json()["error"]["code"] == "unauthorized"
        assert missing.headers["www-authenticate"] == "Bearer"
        assert "bookchat_http_requests_total" in right.text


class TestWhatIsCounted:
    async def test_model_calls_tokens_retrieval_and_answer_cache(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = make_settings(
            sqlite_url, embeddings_provider="none", **openai_settings(fake_openai)
        )
        await ingest_book(settings)
        async with app_factory(settings) as client:
            assert (await client.post("/api/v1/chat", json=QUESTION)).status_code == 200
            # The same first question again: served from the answer cache, no model call.
            assert (await client.post("/api/v1/chat", json=QUESTION)).status_code == 200
            async with client.stream(
                "POST",
                "/api/v1/chat/stream",
                json={"message": "How do depth cameras measure distance?"},
            ) as stream:
                body = await stream.aread()
            assert b"event: done" in body
            text = (await client.get("/metrics")).text

        model = {"book": "default", "provider": "openai", "model": "gpt-4o-mini"}
        assert value(text, "bookchat_llm_calls_total", outcome="ok", **model) == 2
        assert value(text, "bookchat_llm_call_duration_seconds_count", **model) == 2
        assert value(text, "bookchat_llm_first_token_seconds_count", **model) == 1
        assert value(text, "bookchat_llm_tokens_total", kind="completion", **model) > 0
        assert value(text, "bookchat_llm_tokens_total", kind="prompt", **model) > 0
        lookups = "bookchat_cache_lookups_total"
        assert value(text, lookups, book="default", cache="answer", result="hit") == 1
        assert value(text, lookups, book="default", cache="answer", result="miss") == 2
        retrieval = "bookchat_retrieval_duration_seconds_count"
        assert value(text, retrieval, book="default", retrieval="bm25") >= 2
        assert len(fake_openai.chat_requests()) == 2

    async def test_model_failures_by_code(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, **openai_settings(fake_openai))
        await ingest_book(settings)
        async with app_factory(settings) as client:
            fake_openai.fail_next(500)
            response = await client.post("/api/v1/chat", json=QUESTION)
            text = (await client.get("/metrics")).text
        assert response.status_code == 503
        assert (
            total(text, "bookchat_llm_calls_total", outcome="llm_unavailable", provider="openai")
            == 1
        )
        assert total(text, "bookchat_llm_calls_total", outcome="ok") == 0

    async def test_rate_limit_refusals(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url, rate_limit_chat="1/minute")) as client:
            first = await client.post("/api/v1/chat", json=QUESTION)
            second = await client.post("/api/v1/chat", json=QUESTION)
            text = (await client.get("/metrics")).text
        assert (first.status_code, second.status_code) == (200, 429)
        assert value(text, "bookchat_rate_limited_total", book="default", limit="chat") == 1
        assert (
            value(
                text,
                "bookchat_http_requests_total",
                book="default",
                method="POST",
                route="/api/v1/chat",
                status="429",
            )
            == 1
        )

    async def test_ingestion_outcomes(self, sqlite_url: str) -> None:
        settings = make_settings(sqlite_url)
        metrics = Metrics()
        documents = load_folder(MINI_BOOK, settings.book_base_url)
        async with open_container(settings, metrics=metrics) as container:
            await container.ingestor.ingest(documents)
            await container.ingestor.ingest(documents)
        text = metrics.render().decode()
        assert value(
            text, "bookchat_ingested_documents_total", book="default", outcome="added"
        ) == len(documents)
        assert value(
            text, "bookchat_ingested_documents_total", book="default", outcome="unchanged"
        ) == len(documents)
        assert value(text, "bookchat_ingested_chunks_total", book="default") > len(documents)


class TestPerBook:
    async def test_every_metric_of_a_request_carries_its_book(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, admin_api_key=ADMIN_KEY)
        await ingest_book(settings)
        async with app_factory(settings) as client:
            await add_book(client)
            await ingest_publishers(client, "robots")
            robots = await client.post("/api/v1/books/robots/chat", json=QUESTION)
            default = await client.post("/api/v1/chat", json=QUESTION)
            unknown = await client.post("/api/v1/books/no-such-book/chat", json=QUESTION)
            text = (await client.get("/metrics")).text

        assert (robots.status_code, default.status_code, unknown.status_code) == (200, 200, 404)
        chat = {"method": "POST", "status": "200"}
        assert (
            value(text, "bookchat_http_requests_total", book="robots", route=BOOK_CHAT, **chat) == 1
        )
        assert (
            value(
                text, "bookchat_http_requests_total", book="default", route="/api/v1/chat", **chat
            )
            == 1
        )
        for book in ("robots", "default"):
            assert total(text, "bookchat_llm_calls_total", book=book, outcome="ok") == 1
            assert total(text, "bookchat_llm_call_duration_seconds_count", book=book) == 1
            assert total(text, "bookchat_retrieval_duration_seconds_count", book=book) >= 1
            assert total(text, "bookchat_cache_lookups_total", book=book, cache="answer") == 1
            assert total(text, "bookchat_answers_total", book=book) == 1
        # The robots book was ingested by this server (the default one before it started).
        assert value(text, "bookchat_ingested_chunks_total", book="robots") > 0
        # A slug no book has is a 404 without a series of its own (guesses would be unbounded).
        assert "no-such-book" not in text
        assert (
            value(
                text,
                "bookchat_http_requests_total",
                book="",
                route=BOOK_CHAT,
                method="POST",
                status="404",
            )
            == 1
        )
