"""`QdrantIndex` against a Qdrant server that fails: every call raises `IndexUnreachable`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Literal

import pytest

from bookchat.books.names import DEFAULT_BOOK
from bookchat.core.errors import AppError, DependencyUnavailable
from bookchat.providers.sparse import SparseVector
from bookchat.retrieval.index import IndexedChunk, IndexSignature, IndexUnreachable, QdrantIndex
from tests.fakes.qdrant_server import VENDOR_SECRET, FakeQdrantServer

DOCUMENT = uuid.UUID(int=1)
TERMS = SparseVector(indices=[1, 2], values=[1.0, 1.0])
CHUNK = IndexedChunk(
    chunk_id=uuid.UUID(int=2),
    document_id=DOCUMENT,
    source_path="a.md",
    title="A",
    heading_path=["A"],
    page_url="https://example.org/a",
    module=None,
    text="publishers and subscribers",
    sparse=TERMS,
)

Call = Callable[[QdrantIndex], Awaitable[Any]]
CALLS: dict[str, Call] = {
    "count": lambda index: index.count(),
    "upsert": lambda index: index.upsert([CHUNK]),
    "delete_points": lambda index: index.delete_points([CHUNK.chunk_id]),
    "delete_document": lambda index: index.delete_document(DOCUMENT, keep=[CHUNK.chunk_id]),
    "point_ids": lambda index: index.point_ids(),
    "search": lambda index: index.search(
        book=DEFAULT_BOOK, dense=None, lexical=[(CHUNK.chunk_id, 1.0)], limit=5
    ),
}


@pytest.fixture
def qdrant() -> Iterator[FakeQdrantServer]:
    with FakeQdrantServer() as server:
        yield server


@pytest.fixture
async def index(qdrant: FakeQdrantServer) -> AsyncIterator[QdrantIndex]:
    opened = QdrantIndex.open(
        collection="book", signature=IndexSignature(embedder=None, dimension=None), url=qdrant.url
    )
    await opened.ensure_collection()
    await opened.upsert([CHUNK])
    yield opened
    await opened.close()


class TestOutage:
    async def test_works_before_the_outage(self, index: QdrantIndex) -> None:
        assert await index.count() == 1
        hits = await index.search(
            book=DEFAULT_BOOK, dense=None, lexical=[(CHUNK.chunk_id, 1.0)], limit=5
        )
        assert [hit.chunk_id for hit in hits] == [CHUNK.chunk_id]

    # The fake fails point calls on `fail`; collection calls (recreate) only when killed.
    @pytest.mark.parametrize(
        ("call", "outage"),
        [
            *(
                (call, outage)
                for call in sorted(CALLS)
                for outage in ("disconnect", "error", "kill")
            ),
            ("recreate", "kill"),
        ],
    )
    async def test_every_call_raises_index_unreachable(
        self,
        call: str,
        outage: Literal["disconnect", "error", "kill"],
        qdrant: FakeQdrantServer,
        index: QdrantIndex,
    ) -> None:
        if outage == "kill":
            qdrant.kill()
        else:
            qdrant.fail(outage)
        with pytest.raises(IndexUnreachable) as raised:
            await (index.recreate() if call == "recreate" else CALLS[call](index))
        error = raised.value
        assert isinstance(error, DependencyUnavailable)
        assert (error.code, error.status_code) == ("dependency_unavailable", 503)
        # The client-facing message names neither the server nor what it said.
        assert error.message == IndexUnreachable.default_message
        assert VENDOR_SECRET not in error.message
        assert qdrant.url not in error.message

    async def test_at_startup_the_operator_gets_the_reason(self, qdrant: FakeQdrantServer) -> None:
        qdrant.kill()
        index = QdrantIndex.open(
            collection="book",
            signature=IndexSignature(embedder=None, dimension=None),
            url=qdrant.url,
        )
        with pytest.raises(IndexUnreachable) as raised:
            await index.ensure_collection()
        await index.close()
        assert qdrant.url in raised.value.message
        assert "Connection refused" in raised.value.message
        assert "QDRANT_URL" in raised.value.message
        assert isinstance(raised.value, AppError)
