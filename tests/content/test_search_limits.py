"""Search's fair share: a rate limit per client, a cap on query terms, bounded concurrency."""

from __future__ import annotations

import asyncio

from tests.conftest import AppFactory, openai_settings
from tests.factories import bearer, book_settings, sign_up
from tests.fakes.openai_server import FakeOpenAIServer

SEARCH = "/api/v1/content/search"


class TestSearchRateLimit:
    async def test_a_client_over_the_search_rate_gets_429_with_retry_after(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url, rate_limit_search="2/minute")
        async with app_factory(settings) as client:
            answers = [await client.get(SEARCH, params={"q": "legs swing"}) for _ in range(3)]
            token = (await sign_up(client, "reader@example.org"))["access_token"]
            signed_in = await client.get(SEARCH, params={"q": "legs swing"}, headers=bearer(token))
        assert [a.status_code for a in answers] == [200, 200, 429]
        refused = answers[2]
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
        # A signed-in reader is counted on their own, not with their address.
        assert signed_in.status_code == 200


class TestSearchTerms:
    async def test_a_query_with_too_many_terms_is_refused_saying_the_limit(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url, max_search_terms=32)
        many = " ".join(f"w{i}" for i in range(300))
        # Stop words and repeats are not terms: this is 32 terms.
        enough = " ".join(f"the term{i} of term{i}" for i in range(32))
        async with app_factory(settings) as client:
            refused = await client.get(SEARCH, params={"q": many})
            accepted = await client.get(SEARCH, params={"q": enough})
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == "validation_error"
        assert error["message"] == (
            "q has 300 search terms; at most 32 are allowed (stop words and repeats do not count)"
        )
        assert error["details"][0]["loc"] == ["query", "q"]
        assert accepted.status_code == 200


class TestSearchConcurrency:
    async def test_a_search_that_cannot_get_a_turn_gets_503_with_retry_after(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(
            sqlite_url,
            **openai_settings(fake_openai),
            embeddings_provider="openai",
            search_concurrency=1,
            search_wait_seconds=0.2,
        )
        async with app_factory(settings) as client:
            # The first search holds the only place while its query embedding hangs.
            fake_openai.hang_next(1.5)
            before = len(fake_openai.embedding_requests())  # the ingestion's
            first = asyncio.create_task(client.get(SEARCH, params={"q": "legs swing"}))
            for _ in range(200):
                if len(fake_openai.embedding_requests()) > before:
                    break
                await asyncio.sleep(0.01)
            second = await client.get(SEARCH, params={"q": "time of flight"})
            await first
            third = await client.get(SEARCH, params={"q": "time of flight"})
        assert second.status_code == 503
        assert second.json()["error"]["code"] == "dependency_unavailable"
        assert second.headers["Retry-After"] == "1"
        assert third.status_code == 200

    async def test_one_clients_burst_leaves_places_to_the_others(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(
            sqlite_url,
            **openai_settings(fake_openai),
            embeddings_provider="openai",
            search_concurrency=2,
            search_wait_seconds=0.3,
        )
        async with app_factory(settings) as client:
            token = (await sign_up(client, "reader@example.org"))["access_token"]
            # One address sends two searches at once, and both would hang on their embedding.
            fake_openai.hang_next(1.0, times=2)
            before = len(fake_openai.embedding_requests())
            burst = [
                asyncio.create_task(client.get(SEARCH, params={"q": query}))
                for query in ("legs swing", "time of flight")
            ]
            for _ in range(200):
                if len(fake_openai.embedding_requests()) > before:
                    break
                await asyncio.sleep(0.01)
            # Another reader's search still finds a place, while the address's second search
            # waits behind its first.
            other = await client.get(SEARCH, params={"q": "balance"}, headers=bearer(token))
            first, second = await asyncio.gather(*burst)
        assert other.status_code == 200
        assert sorted([first.status_code, second.status_code]) == [200, 503]
