"""The Qdrant collection that indexes the book's chunks: their payloads, dense vectors and BM25
vectors. Qdrant searches the dense vectors; the BM25 vectors are read by every process into its
lexical index (`lexical.py`), whose candidates `QdrantIndex.search` fuses with Qdrant's.

One code path for both profiles: embedded Qdrant (a folder, one process) and a Qdrant server or
Qdrant Cloud (`QDRANT_URL`). The client is synchronous and every call runs in a worker thread,
so embedded Qdrant's in-process search never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

import httpx
import structlog

from bookchat.books.names import DEFAULT_BOOK
from bookchat.core.errors import ConfigurationError, DependencyUnavailable
from bookchat.providers.sparse import SparseVector
from bookchat.retrieval.qdrant_sdk import ApiException, QdrantClient, models, open_client

logger = structlog.get_logger(__name__)

DENSE = "dense"
SPARSE = "bm25"
# The payload field naming a point's book: every search and every read is filtered by it.
BOOK = "book"
# Collection metadata saying every point names its book (a collection from before books gets
# it once its points are adopted by the default book).
BOOKS_METADATA = "books"
UPSERT_BATCH = 128
# Reciprocal rank fusion constant. Small k trusts each branch's top picks; tuned on the
# textbook-a question set (k=60: hit@5 0.926, k=2: 0.959 with MiniLM; see README).
RRF_K = 2

T = TypeVar("T")

# What a Qdrant server that is down, slow or failing raises through the REST client:
# `UnexpectedResponse` (an error status) and `ResponseHandlingException` (a transport error or an
# unreadable answer) are both `ApiException`s; the rest are raw transport errors.
QDRANT_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (ApiException, httpx.HTTPError, OSError)


class IndexLocked(ConfigurationError):
    """The embedded store is open in another process."""


class IndexMismatch(ConfigurationError):
    """The collection was built with another embedder than the one configured."""


class IndexUnreachable(DependencyUnavailable):
    """Qdrant failed or did not answer: fatal at startup, a 503 during a request."""

    default_message = "The search index is unavailable right now; try again shortly."


@dataclass(frozen=True, slots=True)
class IndexedChunk:
    """One chunk as the index stores it."""

    chunk_id: uuid.UUID
    document_id: uuid.UUID
    source_path: str
    title: str
    heading_path: Sequence[str]
    page_url: str
    module: str | None
    text: str
    sparse: SparseVector
    dense: Sequence[float] | None = None
    book: str = DEFAULT_BOOK


@dataclass(frozen=True, slots=True)
class LexicalRow:
    """One chunk as the lexical index reads it from the collection (`lexical.py`)."""

    chunk_id: uuid.UUID
    document_id: str
    module: str | None
    vector: SparseVector
    dense: Sequence[float] | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    source_path: str
    title: str
    heading_path: list[str]
    page_url: str
    module: str | None
    text: str
    score: float
    # Filled only when the search asked for vectors (to judge relevance with raw similarities).
    dense: list[float] | None = None

    @property
    def section(self) -> str | None:
        """The heading under which the chunk sits (None when it is the page's title)."""
        return self.heading_path[-1] if len(self.heading_path) > 1 else None


@dataclass(frozen=True, slots=True)
class IndexSignature:
    """What the vectors in a collection were made with; a mismatch needs a reindex."""

    embedder: str | None
    dimension: int | None

    def as_metadata(self) -> dict[str, Any]:
        return {
            "embedder": self.embedder or "none",
            "dimension": self.dimension or 0,
            "sparse": SPARSE,
            BOOKS_METADATA: 1,
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any] | None) -> IndexSignature | None:
        if not metadata or "embedder" not in metadata:
            return None
        embedder = metadata.get("embedder")
        return cls(
            embedder=None if embedder == "none" else str(embedder),
            dimension=int(metadata.get("dimension") or 0) or None,
        )

    def describe(self) -> str:
        return f"{self.embedder} ({self.dimension} dimensions)" if self.embedder else "BM25 only"


class QdrantIndex:
    """The book's vector index in one Qdrant collection."""

    def __init__(
        self,
        client: QdrantClient,
        *,
        collection: str,
        signature: IndexSignature,
        mode: Literal["embedded", "server"],
        location: str,
    ) -> None:
        self._client = client
        self.collection = collection
        self.signature = signature
        self.mode = mode
        self.location = location
        # Embedded Qdrant is not thread-safe: one worker serialises its calls. A server takes
        # concurrent requests.
        self._executor = ThreadPoolExecutor(
            max_workers=1 if mode == "embedded" else 8, thread_name_prefix="qdrant"
        )

    @classmethod
    def open(
        cls,
        *,
        collection: str,
        signature: IndexSignature,
        url: str | None = None,
        api_key: str | None = None,
        path: str = "./data/qdrant",
        timeout: float = 10.0,
    ) -> QdrantIndex:
        """Connect to `url`, or open the embedded store at `path` (raises `IndexLocked` when
        another process holds it)."""
        if url:
            client = open_client(url=url, api_key=api_key, timeout=int(timeout))
            return cls(
                client, collection=collection, signature=signature, mode="server", location=url
            )
        try:
            # The worker thread is not the thread that opened the store; calls are serialised.
            client = open_client(path=path, force_disable_check_same_thread=True)
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise IndexLocked(
                    f"The embedded Qdrant store at {path} is in use by another process "
                    "(probably `bookchat serve`). Stop that process, or send the work to the "
                    "running server instead: POST /api/v1/content/ingest with your X-Admin-Key. "
                    "For several processes, run a Qdrant server and set QDRANT_URL."
                ) from None
            raise
        return cls(
            client, collection=collection, signature=signature, mode="embedded", location=path
        )

    async def _run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Call the client in the worker thread; an outage becomes `IndexUnreachable`, whose
        message names neither the server nor what it said (those go to the log)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))
        except QDRANT_OUTAGE_ERRORS as exc:
            logger.warning(
                "qdrant.call_failed",
                call=getattr(fn, "__name__", "?"),
                mode=self.mode,
                error_type=type(exc).__name__,
                status=getattr(exc, "status_code", None),
                cause=type(getattr(exc, "source", None) or exc).__name__,
            )
            raise IndexUnreachable() from exc

    # --- the collection -----------------------------------------------------------------------

    async def ensure_collection(self) -> None:
        """Create the collection if missing; refuse one built with another embedder."""
        try:
            exists = await self._run(self._client.collection_exists, self.collection)
        except IndexUnreachable as exc:
            # At startup an unreachable server is a configuration problem: one clear line for
            # the operator, who may see the server's own words.
            cause = exc.__cause__
            raise IndexUnreachable(
                f"The Qdrant server at {self.location} could not be used ({type(cause).__name__}:"
                f" {cause}). Check QDRANT_URL and QDRANT_API_KEY, and that the server is up."
            ) from cause
        if not exists:
            await self._create()
            return
        info = await self._run(self._client.get_collection, self.collection)
        found = IndexSignature.from_metadata(info.config.metadata)
        if found != self.signature:
            built = found.describe() if found else "an unknown embedder"
            raise IndexMismatch(
                f"The index '{self.collection}' at {self.location} was built with {built}, but "
                f"the configured embeddings are {self.signature.describe()}. Run `bookchat "
                "reindex` to rebuild it from the database (or restore the previous "
                "EMBEDDINGS_PROVIDER / EMBEDDINGS_MODEL)."
            )
        if not (info.config.metadata or {}).get(BOOKS_METADATA):
            await self._adopt_unnamed_points()

    async def _adopt_unnamed_points(self) -> None:
        """A collection from before books: its points become the default book's (one payload
        update, no re-embedding) and the book field gets its tenant index."""
        await self._create_book_index()
        await self._run(
            self._client.set_payload,
            self.collection,
            payload={BOOK: DEFAULT_BOOK},
            points=models.FilterSelector(
                filter=models.Filter(
                    must=[models.IsEmptyCondition(is_empty=models.PayloadField(key=BOOK))]
                )
            ),
            wait=True,
        )
        await self._run(
            self._client.update_collection, self.collection, metadata={BOOKS_METADATA: 1}
        )
        logger.info("index.books_adopted", collection=self.collection, book=DEFAULT_BOOK)

    async def _create_book_index(self) -> None:
        with warnings.catch_warnings():
            # Embedded Qdrant says payload indexes have no effect there; a server uses them.
            warnings.simplefilter("ignore")
            # A tenant index: a server stores each book's points together, so a search filtered
            # to one book reads that book's points only.
            await self._run(
                self._client.create_payload_index,
                self.collection,
                BOOK,
                models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
            )

    async def recreate(self) -> None:
        """Drop and create the collection (for `bookchat reindex`)."""
        if await self._run(self._client.collection_exists, self.collection):
            await self._run(self._client.delete_collection, self.collection)
        await self._create()

    async def _create(self) -> None:
        vectors: dict[str, models.VectorParams] = {}
        if self.signature.embedder and self.signature.dimension:
            vectors[DENSE] = models.VectorParams(
                size=self.signature.dimension, distance=models.Distance.COSINE
            )
        await self._run(
            self._client.create_collection,
            self.collection,
            vectors_config=vectors,
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            metadata=self.signature.as_metadata(),
        )
        await self._create_book_index()
        for field in ("document_id", "module"):
            with warnings.catch_warnings():
                # Embedded Qdrant says payload indexes have no effect there; a server uses them.
                warnings.simplefilter("ignore")
                await self._run(
                    self._client.create_payload_index,
                    self.collection,
                    field,
                    models.PayloadSchemaType.KEYWORD,
                )

    async def stored_signature(self) -> IndexSignature | None:
        """What the collection was built with; None when there is no collection (or it does
        not say)."""
        if not await self._run(self._client.collection_exists, self.collection):
            return None
        info = await self._run(self._client.get_collection, self.collection)
        return IndexSignature.from_metadata(info.config.metadata)

    async def count(self) -> int:
        result = await self._run(self._client.count, self.collection, exact=True)
        return result.count

    # --- writing -----------------------------------------------------------------------------

    async def upsert(self, chunks: Sequence[IndexedChunk]) -> None:
        for start in range(0, len(chunks), UPSERT_BATCH):
            points = [self._point(chunk) for chunk in chunks[start : start + UPSERT_BATCH]]
            await self._run(self._client.upsert, self.collection, points=points, wait=True)

    def _point(self, chunk: IndexedChunk) -> models.PointStruct:
        vector: dict[str, Any] = {
            SPARSE: models.SparseVector(
                indices=list(chunk.sparse.indices), values=list(chunk.sparse.values)
            )
        }
        if self.signature.embedder:
            if chunk.dense is None:
                raise ValueError("this index needs a dense vector for every chunk")
            vector[DENSE] = list(chunk.dense)
        return models.PointStruct(
            id=str(chunk.chunk_id),
            vector=vector,
            payload={
                BOOK: chunk.book,
                "chunk_id": str(chunk.chunk_id),
                "document_id": str(chunk.document_id),
                "source_path": chunk.source_path,
                "title": chunk.title,
                "heading_path": list(chunk.heading_path),
                "page_url": chunk.page_url,
                "module": chunk.module,
                "text": chunk.text,
            },
        )

    async def delete_points(self, ids: Iterable[uuid.UUID]) -> None:
        selector = models.PointIdsList(points=[str(i) for i in ids])
        if selector.points:
            await self._run(self._client.delete, self.collection, points_selector=selector)

    async def delete_document(
        self, document_id: uuid.UUID, *, keep: Iterable[uuid.UUID] = ()
    ) -> None:
        """Delete a document's points, except those in `keep` (its current chunks)."""
        condition = models.Filter(
            must=[_match("document_id", str(document_id))],
            must_not=[models.HasIdCondition(has_id=[str(i) for i in keep])] if keep else None,
        )
        await self._run(
            self._client.delete,
            self.collection,
            points_selector=models.FilterSelector(filter=condition),
        )

    async def delete_book(self, book: str) -> None:
        """Delete every point of `book`."""
        await self._run(
            self._client.delete,
            self.collection,
            points_selector=models.FilterSelector(filter=models.Filter(must=[_match(BOOK, book)])),
        )

    async def _scroll(
        self,
        with_vectors: bool | list[str],
        with_payload: bool | list[str] = False,
        book: str | None = None,
    ) -> AsyncIterator[models.Record]:
        """Every point of the collection (of `book` when given), a page at a time."""
        offset: Any = None
        scroll_filter = models.Filter(must=[_match(BOOK, book)]) if book is not None else None
        while True:
            points, offset = await self._run(
                self._client.scroll,
                self.collection,
                scroll_filter=scroll_filter,
                limit=1024,
                offset=offset,
                with_payload=with_payload,
                with_vectors=with_vectors,
            )
            for point in points:
                yield point
            if offset is None:
                return

    async def point_ids(self) -> set[uuid.UUID]:
        """Every point id in the collection (for reconciling with the database)."""
        return {uuid.UUID(str(point.id)) async for point in self._scroll(with_vectors=False)}

    async def lexical_rows(self, book: str, *, with_dense: bool = False) -> list[LexicalRow]:
        """Every chunk of `book` with its BM25 vector (and its dense one `with_dense`, when the
        collection has them) and what a search can filter it by (for the index each process
        searches: `lexical.BookLexicon`)."""
        rows: list[LexicalRow] = []
        wanted = [SPARSE, DENSE] if with_dense and self.signature.embedder else [SPARSE]
        async for point in self._scroll(
            with_vectors=wanted, with_payload=["document_id", "module"], book=book
        ):
            vectors = point.vector if isinstance(point.vector, dict) else {}
            vector = vectors.get(SPARSE)
            if isinstance(vector, models.SparseVector):
                payload = point.payload or {}
                dense = vectors.get(DENSE)
                rows.append(
                    LexicalRow(
                        chunk_id=uuid.UUID(str(point.id)),
                        document_id=str(payload.get("document_id", "")),
                        module=payload.get("module"),
                        vector=SparseVector(indices=vector.indices, values=vector.values),
                        dense=cast("list[float]", dense) if isinstance(dense, list) else None,
                    )
                )
        return rows

    # --- reading -----------------------------------------------------------------------------

    async def search(
        self,
        *,
        book: str,
        dense: Sequence[float] | None,
        dense_ranked: Sequence[tuple[uuid.UUID, float]] | None = None,
        lexical: Sequence[tuple[uuid.UUID, float]] = (),
        limit: int,
        candidates: int = 20,
        module: str | None = None,
        document_id: uuid.UUID | None = None,
        with_vectors: bool = False,
    ) -> list[Hit]:
        """The best chunks for a query: the dense candidates Qdrant finds and the `lexical`
        ones (chunk ids and BM25 scores, best first, from `lexical.LexicalIndex`) fused by
        reciprocal rank, as Qdrant's own RRF fuses prefetches.

        With one list, its own order and scores. `with_vectors` also returns each hit's stored
        dense vector, so the caller can compute its raw similarity to the query (fused scores
        are ranks, not similarities). Only `book`'s chunks are searched.

        `dense_ranked`: the dense candidates, already found in process (`lexical.BookLexicon`
        keeps a book's vectors when they fit); Qdrant is then asked for payloads only."""
        conditions = [_match(BOOK, book)]
        if module:
            conditions.append(_match("module", module))
        if document_id:
            conditions.append(_match("document_id", str(document_id)))
        query_filter = models.Filter(must=conditions)
        # Only dense vectors are compared with the query (a chunk's terms come from its text).
        vectors: bool | list[str] = [DENSE] if with_vectors else False

        found: dict[uuid.UUID, models.ScoredPoint | models.Record] = {}
        ranked: list[tuple[uuid.UUID, float]] = []
        if dense_ranked is not None:
            ranked = list(dense_ranked)
        elif dense is not None and self.signature.embedder:
            response = await self._run(
                self._client.query_points,
                self.collection,
                query=list(dense),
                using=DENSE,
                query_filter=query_filter,
                limit=candidates if lexical else limit,
                with_payload=True,
                with_vectors=vectors,
            )
            ranked = [(uuid.UUID(str(point.id)), float(point.score)) for point in response.points]
            found = dict(zip((chunk_id for chunk_id, _ in ranked), response.points, strict=True))
        if lexical:
            ranked = reciprocal_rank_fusion(ranked, lexical) if ranked else list(lexical)
        ranked = ranked[:limit]
        missing = [str(chunk_id) for chunk_id, _ in ranked if chunk_id not in found]
        if missing:
            records = await self._run(
                self._client.retrieve,
                self.collection,
                ids=missing,
                with_payload=True,
                with_vectors=vectors,
            )
            found.update((uuid.UUID(str(record.id)), record) for record in records)
        # A chunk deleted since the lexical index was read is gone from the collection.
        return [_hit(found[chunk_id], score) for chunk_id, score in ranked if chunk_id in found]

    async def close(self) -> None:
        await self._run(self._client.close)
        self._executor.shutdown(wait=True)


def _match(key: str, value: str) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def reciprocal_rank_fusion(
    *ranked: Sequence[tuple[uuid.UUID, float]], k: int = RRF_K
) -> list[tuple[uuid.UUID, float]]:
    """Lists of chunk ids as one, by reciprocal rank, with the scores Qdrant's RRF gives
    (1 / (k + position), positions from 0); ties keep the order chunks were first seen."""
    scores: dict[uuid.UUID, float] = {}
    for listing in ranked:
        for position, (chunk_id, _) in enumerate(listing):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (k + position)
    return sorted(scores.items(), key=lambda item: item[1], reverse=True)


def _hit(point: models.ScoredPoint | models.Record, score: float) -> Hit:
    payload = point.payload or {}
    vectors = point.vector if isinstance(point.vector, dict) else {}
    dense = vectors.get(DENSE)
    return Hit(
        chunk_id=uuid.UUID(str(point.id)),
        document_id=uuid.UUID(payload["document_id"]),
        source_path=payload["source_path"],
        title=payload["title"],
        heading_path=list(payload.get("heading_path") or []),
        page_url=payload["page_url"],
        module=payload.get("module"),
        text=payload["text"],
        score=score,
        # Named dense vectors come back as a flat list of numbers: taken as they are (a
        # float() per element cost 3% of a chat's CPU; the cosines read them with numpy).
        dense=cast("list[float]", dense) if isinstance(dense, list) else None,
    )
