"""The lexical index each process scores questions with: the scores Qdrant's BM25 gives, the
filters, and how it follows the collection as the book changes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bookchat.books.names import DEFAULT_BOOK
from bookchat.core.cache import INDEX_VERSION, MemoryCache
from bookchat.providers.sparse import Bm25Encoder, SparseVector
from bookchat.retrieval.index import SPARSE, IndexedChunk, IndexSignature, LexicalRow, QdrantIndex
from bookchat.retrieval.lexical import BookLexicon, LexicalIndex
from bookchat.retrieval.qdrant_sdk import models

PASSAGES = [
    ("ros", "A publisher sends messages on a topic; every subscriber of the topic receives them."),
    ("ros", "A service answers one request with one response; the client waits for it."),
    ("ros", "QoS profiles trade reliability for latency: best effort drops, reliable resends."),
    ("ros", "The publisher and the subscriber agree on QoS before a topic carries a message."),
    ("sim", "Gazebo simulates physics: gravity, friction and contacts between links."),
    ("sim", "A simulated camera publishes images on a topic, like a real one."),
    ("sim", "Physics timesteps trade accuracy for speed; small steps are stable."),
    ("vla", "A language model turns a spoken command into a plan of robot actions."),
]
QUESTIONS = [
    "How does a publisher reach every subscriber of a topic?",
    "What does QoS trade?",
    "How are physics and gravity simulated?",
    "What turns a command into robot actions?",
    "topic",
    "How do I bake bread?",
]


def chunk(number: int, module: str, text: str, vector: SparseVector) -> IndexedChunk:
    return IndexedChunk(
        chunk_id=uuid.UUID(int=number + 1),
        document_id=uuid.UUID(int=1000 + number // 2),
        source_path=f"{module}/{number}.md",
        title=module,
        heading_path=[module],
        page_url=f"https://example.org/{module}/{number}",
        module=module,
        text=text,
        sparse=vector,
    )


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[QdrantIndex]:
    opened = QdrantIndex.open(
        collection="book",
        signature=IndexSignature(embedder=None, dimension=None),
        path=str(tmp_path / "qdrant"),
    )
    await opened.ensure_collection()
    vectors = await Bm25Encoder().encode_documents([text for _, text in PASSAGES])
    await opened.upsert(
        [
            chunk(number, module, text, vector)
            for number, ((module, text), vector) in enumerate(zip(PASSAGES, vectors, strict=True))
        ]
    )
    yield opened
    await opened.close()


class TestScores:
    @pytest.mark.parametrize("question", QUESTIONS)
    async def test_the_ranking_and_scores_are_qdrants_own(
        self, index: QdrantIndex, question: str
    ) -> None:
        """What Qdrant's sparse search with `Modifier.IDF` answers, on the same collection."""
        query = await Bm25Encoder().encode_query(question)
        book = LexicalIndex.build(await index.lexical_rows(DEFAULT_BOOK))
        ours = book.search(query, 5)
        response = await asyncio.to_thread(
            index._client.query_points,
            index.collection,
            query=models.SparseVector(indices=query.indices, values=query.values),
            using=SPARSE,
            limit=5,
        )
        theirs = [(uuid.UUID(str(p.id)), p.score) for p in response.points]

        assert [chunk_id for chunk_id, _ in ours] == [chunk_id for chunk_id, _ in theirs]
        assert [score for _, score in ours] == pytest.approx([s for _, s in theirs], rel=1e-5)

    async def test_a_question_sharing_no_word_finds_nothing(self, index: QdrantIndex) -> None:
        book = LexicalIndex.build(await index.lexical_rows(DEFAULT_BOOK))
        bread = await Bm25Encoder().encode_query("How do I bake bread?")
        assert book.search(bread, 5) == []
        assert LexicalIndex().search(bread, 5) == []

    async def test_filters_keep_one_module_or_one_document(self, index: QdrantIndex) -> None:
        book = LexicalIndex.build(await index.lexical_rows(DEFAULT_BOOK))
        topic = await Bm25Encoder().encode_query("topic")
        every = {chunk_id.int - 1 for chunk_id, _ in book.search(topic, 10)}
        in_sim = {chunk_id.int - 1 for chunk_id, _ in book.search(topic, 10, module="sim")}
        in_document = book.search(topic, 10, document_id=str(uuid.UUID(int=1000)))

        assert every == {0, 3, 5}
        assert in_sim == {5}
        assert [chunk_id.int - 1 for chunk_id, _ in in_document] == [0]
        assert book.search(topic, 10, module="nowhere") == []

    async def test_the_limit_keeps_the_best(self, index: QdrantIndex) -> None:
        book = LexicalIndex.build(await index.lexical_rows(DEFAULT_BOOK))
        query = await Bm25Encoder().encode_query("publisher subscriber topic QoS physics")
        everything = book.search(query, 100)
        assert book.search(query, 2) == everything[:2]
        assert book.search(query, 0) == []


class TestFollowingTheBook:
    async def test_a_new_index_version_is_read_before_the_next_question(
        self, index: QdrantIndex
    ) -> None:
        cache = MemoryCache()
        lexicon = BookLexicon(index, cache, reload_after=0.0)
        before = await lexicon.get(DEFAULT_BOOK)
        await index.delete_points([uuid.UUID(int=1)])
        unchanged = await lexicon.get(DEFAULT_BOOK)
        await cache.bump(INDEX_VERSION)
        after = await lexicon.get(DEFAULT_BOOK)

        assert unchanged is before
        assert (before.chunks, after.chunks) == (len(PASSAGES), len(PASSAGES) - 1)
        assert uuid.UUID(int=1) not in after.ids

    async def test_an_old_index_is_read_again_in_the_background(self, index: QdrantIndex) -> None:
        """Without a version to watch (no cache, or Redis down), a change is seen too."""
        lexicon = BookLexicon(index, cache=None, reload_after=0.0)
        before = await lexicon.get(DEFAULT_BOOK)
        await index.delete_points([uuid.UUID(int=1)])
        served = await lexicon.get(DEFAULT_BOOK)  # answered at once, from the index in hand
        for _ in range(100):
            await asyncio.sleep(0.05)
            after = await lexicon.get(DEFAULT_BOOK)
            if after.chunks < len(PASSAGES):
                break
        await lexicon.aclose()

        assert served is before
        assert after.chunks == len(PASSAGES) - 1

    async def test_a_failed_reload_keeps_the_index_in_service(self, index: QdrantIndex) -> None:
        lexicon = BookLexicon(index, cache=None, reload_after=0.0)
        before = await lexicon.get(DEFAULT_BOOK)
        # Every read of the collection now fails.
        await asyncio.to_thread(index._client.delete_collection, index.collection)
        with capture_logs() as logs:
            served = await lexicon.get(DEFAULT_BOOK)
            await asyncio.sleep(0.2)
            again = await lexicon.get(DEFAULT_BOOK)
        await lexicon.aclose()

        assert served is before
        assert again is before
        assert "retrieval.lexicon_reload_failed" in [entry["event"] for entry in logs]

    async def test_a_chunk_deleted_since_the_index_was_read_is_not_returned(
        self, index: QdrantIndex
    ) -> None:
        book = LexicalIndex.build(await index.lexical_rows(DEFAULT_BOOK))
        topic = await Bm25Encoder().encode_query("topic")
        found = book.search(topic, 10)
        await index.delete_points([found[0][0]])

        hits = await index.search(book=DEFAULT_BOOK, dense=None, lexical=found, limit=10)

        assert [hit.chunk_id for hit in hits] == [chunk_id for chunk_id, _ in found[1:]]
        assert hits[0].text == PASSAGES[hits[0].chunk_id.int - 1][1]


def test_rows_build_postings_per_term() -> None:
    rows = [
        LexicalRow(uuid.UUID(int=1), "d", None, SparseVector(indices=[1, 2], values=[0.5, 1.0])),
        LexicalRow(uuid.UUID(int=2), "d", None, SparseVector(indices=[2], values=[2.0])),
    ]
    book = LexicalIndex.build(rows)
    assert (book.chunks, book.frequency(1), book.frequency(2), book.frequency(3)) == (2, 1, 2, 0)
    assert book.known(2)
    assert not book.known(3)


def vector_of(text: str, dimension: int = 16) -> list[float]:
    """A deterministic dense vector for a text (word buckets), so similar texts are near."""
    vector = [0.0] * dimension
    for word in text.lower().split():
        vector[sum(map(ord, word.strip(".,;:?"))) % dimension] += 1.0
    return vector


@pytest.fixture
async def dense_index(tmp_path: Path) -> AsyncIterator[QdrantIndex]:
    """Two books in one collection, with dense vectors: the passages in `default`, and the same
    passages, reworded nowhere, in `other` (a book filter is the only thing between them)."""
    opened = QdrantIndex.open(
        collection="book",
        signature=IndexSignature(embedder="words", dimension=16),
        path=str(tmp_path / "qdrant"),
    )
    await opened.ensure_collection()
    vectors = await Bm25Encoder().encode_documents([text for _, text in PASSAGES])
    for offset, book in ((0, DEFAULT_BOOK), (100, "other")):
        await opened.upsert(
            [
                replace(
                    chunk(offset + number, module, text, vector),
                    dense=vector_of(text),
                    book=book,
                )
                for number, ((module, text), vector) in enumerate(
                    zip(PASSAGES, vectors, strict=True)
                )
            ]
        )
    yield opened
    await opened.close()


class TestDenseInProcess:
    @pytest.mark.parametrize("question", QUESTIONS)
    async def test_the_ranking_and_similarities_are_qdrants_own(
        self, dense_index: QdrantIndex, question: str
    ) -> None:
        lexicon = BookLexicon(dense_index, dense_budget_bytes=2**20)
        book = await lexicon.get(DEFAULT_BOOK)
        query = vector_of(question)
        ours = book.dense_search(query, 5)
        assert ours is not None
        by_qdrant = await dense_index.search(book=DEFAULT_BOOK, dense=query, limit=5)

        assert [chunk_id for chunk_id, _ in ours] == [hit.chunk_id for hit in by_qdrant]
        assert [score for _, score in ours] == pytest.approx([hit.score for hit in by_qdrant])
        assert all(chunk_id.int <= 100 for chunk_id, _ in ours)  # the book's own chunks
        served = await dense_index.search(
            book=DEFAULT_BOOK, dense=query, dense_ranked=ours, limit=5
        )
        assert [(hit.chunk_id, hit.text) for hit in served] == [
            (hit.chunk_id, hit.text) for hit in by_qdrant
        ]

    async def test_filters_keep_one_module_or_one_document(self, dense_index: QdrantIndex) -> None:
        book = await BookLexicon(dense_index, dense_budget_bytes=2**20).get(DEFAULT_BOOK)
        query = vector_of("topic publisher camera")
        in_sim = book.dense_search(query, 10, module="sim")
        in_document = book.dense_search(query, 10, document_id=str(uuid.UUID(int=1000)))

        assert in_sim is not None
        assert {chunk_id.int - 1 for chunk_id, _ in in_sim} == {4, 5, 6}
        assert in_document is not None
        assert {chunk_id.int - 1 for chunk_id, _ in in_document} == {0, 1}

    async def test_books_beyond_the_budget_are_left_to_qdrant(
        self, dense_index: QdrantIndex
    ) -> None:
        one_book = len(PASSAGES) * 16 * 4  # float32 vectors of one book
        lexicon = BookLexicon(dense_index, dense_budget_bytes=one_book)
        first = await lexicon.get(DEFAULT_BOOK)
        second = await lexicon.get("other")
        nothing = await BookLexicon(dense_index, dense_budget_bytes=0).get(DEFAULT_BOOK)

        assert first.dense_search(vector_of("topic"), 3) is not None
        assert second.dense_search(vector_of("topic"), 3) is None  # no room left: Qdrant's
        assert nothing.dense_search(vector_of("topic"), 3) is None
        assert first.dense_bytes == one_book
        assert second.known(next(iter(first.postings)))  # its BM25 side is whole all the same
