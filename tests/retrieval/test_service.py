"""The retriever the chat flow calls: numbered sources, filters, the reader's-page boost."""

from __future__ import annotations

import uuid

from bookchat.container import open_container
from bookchat.content.loader import load_folder
from bookchat.retrieval.index import Hit
from bookchat.retrieval.service import boost_page
from tests.conftest import MINI_BOOK, make_settings, openai_settings
from tests.fakes.openai_server import FakeOpenAIServer


def hit(page_url: str, score: float) -> Hit:
    return Hit(
        chunk_id=uuid.uuid4(),
        document_id=uuid.uuid4(),
        source_path="x.md",
        title="T",
        heading_path=["T"],
        page_url=page_url,
        module=None,
        text="t",
        score=score,
    )


class TestPageBoost:
    def test_chunks_of_the_readers_page_move_up(self) -> None:
        hits = [hit("https://b.org/book/a#x", 1.0), hit("https://b.org/book/b#y", 0.9)]
        ranked = boost_page(hits, "https://b.org/book/b")
        assert [h.page_url for h in ranked] == ["https://b.org/book/b#y", "https://b.org/book/a#x"]
        assert ranked[0].score == 0.9 * 1.25

    def test_a_path_or_a_trailing_slash_matches_too(self) -> None:
        hits = [hit("https://b.org/book/a", 1.0), hit("https://b.org/book/b", 0.9)]
        assert boost_page(hits, "/book/b/")[0].page_url == "https://b.org/book/b"

    def test_a_far_weaker_chunk_is_not_promoted(self) -> None:
        hits = [hit("https://b.org/a", 1.0), hit("https://b.org/b", 0.5)]
        assert boost_page(hits, "https://b.org/b")[0].page_url == "https://b.org/a"


class TestRetrieve:
    async def test_sources_are_numbered_and_carry_their_links(self, sqlite_url: str) -> None:
        async with open_container(make_settings(sqlite_url)) as container:
            await container.ingestor.ingest(load_folder(MINI_BOOK, "https://example.org/book"))
            sources = await container.retriever.retrieve("zero moment point balance", limit=3)
            nothing = await container.retriever.retrieve("the and of")

        assert [s.index for s in sources] == list(range(1, len(sources) + 1))
        assert sources[0].page_url == "https://example.org/book/motion/walking#balance"
        assert sources[0].section == "Balance"
        assert sources[0].title == "Walking"
        assert nothing == []

    async def test_page_context_prefers_the_readers_page(self, sqlite_url: str) -> None:
        async with open_container(make_settings(sqlite_url)) as container:
            await container.ingestor.ingest(load_folder(MINI_BOOK, "https://example.org/book"))
            # Two pages match about equally well (one word each).
            plain = await container.retriever.retrieve("phase pulse", limit=5)
            on_page = await container.retriever.retrieve(
                "phase pulse", limit=5, page_context="https://example.org/book/basics/camera-guide"
            )
        assert plain[0].source_path == "02-motion/walking.md"
        assert on_page[0].source_path == "01-basics/02-cameras.md"
        assert on_page[1].source_path == "02-motion/walking.md"


async def test_the_floor_comes_from_the_settings(sqlite_url: str) -> None:
    """RETRIEVAL_MIN_TERM_COVERAGE=1 needs every term of the question in one passage."""
    strict = make_settings(sqlite_url, retrieval_min_term_coverage=1.0)
    async with open_container(strict) as container:
        await container.ingestor.ingest(load_folder(MINI_BOOK, "https://example.org/book"))
        partial = await container.retriever.retrieve("zero moment point banana", limit=3)
        whole = await container.retriever.retrieve("zero moment point", limit=3)
    assert partial == []
    assert whole


async def test_a_repeated_query_is_embedded_once(
    sqlite_url: str, fake_openai: FakeOpenAIServer
) -> None:
    settings = make_settings(
        sqlite_url, embeddings_provider="openai", **openai_settings(fake_openai)
    )
    async with open_container(settings) as container:
        await container.ingestor.ingest(load_folder(MINI_BOOK, "https://example.org/book"))
        before = len(fake_openai.embedding_requests())
        first = await container.retriever.retrieve("zero moment point balance", limit=3)
        second = await container.retriever.retrieve("zero moment point balance", limit=3)
        other = await container.retriever.retrieve("depth camera", limit=3)
        after = len(fake_openai.embedding_requests())
    assert after - before == 2  # the repeated query came from the cache
    assert [s.page_url for s in first] == [s.page_url for s in second]
    assert other


class TestHowManyPassages:
    """Asking for fewer passages never changes which comes first."""

    async def test_the_first_passage_does_not_depend_on_the_limit(self, sqlite_url: str) -> None:
        # With the default embedder, fusion put "Gait cycle" first and the reranker, shown
        # only the limit's worth of candidates, could not see "Balance" below it at limit 1.
        question = "How does a two-legged machine avoid falling down?"
        settings = make_settings(sqlite_url, embeddings_provider="auto")
        async with open_container(settings) as container:
            await container.ingestor.ingest(load_folder(MINI_BOOK, "https://example.org/book"))
            firsts = [
                (await container.retriever.search(question, limit=limit))[0].page_url
                for limit in (1, 2, 5)
            ]
        assert firsts == ["https://example.org/book/motion/walking#balance"] * 3
