"""Finding the passages of the book that answer a question: hybrid search over the index."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol
from urllib.parse import urlsplit

import structlog

from bookchat.books.names import DEFAULT_BOOK
from bookchat.core.cache import Cache
from bookchat.core.metrics import Metrics, metric_book
from bookchat.providers.base import Source
from bookchat.providers.embeddings import Embedder, EmbeddingsUnavailable
from bookchat.providers.embeddings.base import cosines
from bookchat.providers.sparse import SparseEncoder
from bookchat.providers.terms import content_terms
from bookchat.retrieval.index import RRF_K, Hit, QdrantIndex, reciprocal_rank_fusion
from bookchat.retrieval.lexical import BookLexicon, LexicalIndex
from bookchat.retrieval.relevance import Candidate, Query, RelevanceGate, coverage
from bookchat.retrieval.rerank import Reranker, heading_term_ids, passage_term_ids

logger = structlog.get_logger(__name__)

# How much a chunk of the page the reader is on is preferred over other pages' chunks.
PAGE_BOOST = 1.25


class Retriever(Protocol):
    """What the chat flow needs: the passages of `book` that answer a question, numbered from
    1, or none when the book does not cover it."""

    async def retrieve(
        self,
        query: str,
        *,
        book: str = DEFAULT_BOOK,
        limit: int = 5,
        page_context: str | None = None,
        message: str | None = None,
    ) -> list[Source]: ...

    async def covers(self, text: str, *, book: str = DEFAULT_BOOK) -> bool | None: ...

    async def nearest(self, query: str, *, book: str = DEFAULT_BOOK) -> Source | None: ...


# A refused question's nearest passage must hold this share of the question's weight: one
# common word shared with an off-topic question ("robot" in a robotics book) is not "near".
NEAREST_MIN_COVERAGE = 0.2


@dataclass(slots=True)
class DenseOutage:
    """Failures of the embeddings service seen by the searches, grouped in bursts: one warning
    when a burst starts (not one per query: an outage under load would flood the log) and one
    line when a query is embedded again. After a failure the service is left alone for
    `retry_after` seconds: a hanging service would otherwise cost every question its timeout."""

    retry_after: float = 5.0
    fallbacks: int = 0
    reason: str = ""
    _resting_until: float = 0.0

    def resting(self) -> bool:
        """True while questions go straight to BM25 without trying the service."""
        return time.monotonic() < self._resting_until

    def skipped(self) -> None:
        self.fallbacks += 1

    def failed(self, exc: EmbeddingsUnavailable) -> None:
        self._resting_until = time.monotonic() + self.retry_after
        self.reason = exc.reason
        if self.fallbacks == 0:
            logger.warning(
                "retrieval.dense_fallback",
                reason=exc.reason,
                status=exc.status,
                detail=exc.message,
                action="searching with BM25 alone until the embeddings service answers again",
            )
        self.fallbacks += 1

    def succeeded(self) -> None:
        self._resting_until = 0.0
        if self.fallbacks:
            logger.info("retrieval.dense_restored", fallbacks=self.fallbacks)
            self.fallbacks = 0


@dataclass(slots=True)
class HybridRetriever:
    """Dense (when an embedder is configured) and BM25 candidates fused by reciprocal rank,
    reranked, then held to the relevance gate.

    When the embeddings service fails (timeout, 429, 5xx, an unusable answer), a query is
    searched with BM25 alone: the gate then judges it on words, as without an embedder. Only a
    query that BM25 cannot search either (nothing but stop words) gets the error."""

    index: QdrantIndex
    sparse: SparseEncoder
    lexicon: BookLexicon
    embedder: Embedder | None = None
    reranker: Reranker | None = None
    gate: RelevanceGate = field(default_factory=RelevanceGate)
    # Fused candidates the reranker sees (and the gate judges) for each question.
    candidates: int = 20
    # Query vectors, shared by replicas through Redis when configured: a popular question is
    # embedded once.
    cache: Cache | None = None
    embedding_ttl_seconds: float = 24 * 3600
    metrics: Metrics | None = None
    outage: DenseOutage = field(default_factory=DenseOutage)
    # Bound on a question's embedding, retries included (None: the embedder's own timeout).
    embed_timeout: float | None = None

    @property
    def name(self) -> Literal["hybrid", "bm25"]:
        return "hybrid" if self.embedder is not None else "bm25"

    async def search(
        self,
        query: str,
        *,
        book: str = DEFAULT_BOOK,
        limit: int = 5,
        module: str | None = None,
        document_id: uuid.UUID | None = None,
        page_context: str | None = None,
        use_dense: bool = True,
        use_sparse: bool = True,
        relevant_only: bool = False,
    ) -> list[Hit]:
        """The best chunks of `book` for `query`, reranked; `page_context` lifts the chunks of
        that page.
        With `relevant_only`, nothing when the gate finds that the book does not cover the
        question, else the passages worth answering from."""
        started = time.perf_counter()
        question, ranked, mode = await self._candidates(
            query,
            book=book,
            limit=limit,
            module=module,
            document_id=document_id,
            use_dense=use_dense,
            use_sparse=use_sparse,
            with_vectors=relevant_only,
        )
        if relevant_only:
            covered = self.gate.covers(question, ranked)
            ranked = [c for c in ranked if self.gate.useful(c)] if covered else []
        hits = [replace(c.hit, score=c.score) for c in ranked]
        if page_context:
            hits = boost_page(hits, page_context)
        if self.metrics is not None:
            self.metrics.retrieval_duration.labels(book, mode).observe(
                time.perf_counter() - started
            )
        return hits[:limit]

    async def retrieve(
        self,
        query: str,
        *,
        book: str = DEFAULT_BOOK,
        limit: int = 5,
        page_context: str | None = None,
        message: str | None = None,
    ) -> list[Source]:
        """The passages that pass the gate, best first. For a follow-up, `query` is the
        standalone rewrite and `message` the reader's own words: both are searched, and the
        two lists fused."""
        hits = await self.search(
            query, book=book, limit=limit, page_context=page_context, relevant_only=True
        )
        if message is not None and message.strip() != query.strip():
            own = await self.search(
                message, book=book, limit=limit, page_context=page_context, relevant_only=True
            )
            hits = fuse(hits, own)
        return [hit_to_source(number, hit) for number, hit in enumerate(hits[:limit], start=1)]

    async def covers(self, text: str, *, book: str = DEFAULT_BOOK) -> bool | None:
        """Whether the book covers `text` on its own words: None when it has no words of its
        own to judge ("why?", "and then?"), else the gate's verdict."""
        if not content_terms(text):
            return None
        return bool(await self.search(text, book=book, limit=1, relevant_only=True))

    async def nearest(self, query: str, *, book: str = DEFAULT_BOOK) -> Source | None:
        """For a question the gate refused: the best-ranked passage that still holds
        `NEAREST_MIN_COVERAGE` of its weight (the section the book comes closest in), or None.
        Not for the reader: the insights group refused questions by it."""
        if not content_terms(query):
            return None
        _, ranked, _ = await self._candidates(
            query,
            book=book,
            limit=1,
            module=None,
            document_id=None,
            use_dense=True,
            use_sparse=True,
            with_vectors=True,
        )
        for candidate in ranked:
            if candidate.coverage >= NEAREST_MIN_COVERAGE:
                return hit_to_source(1, replace(candidate.hit, score=candidate.score))
        return None

    async def _candidates(
        self,
        query: str,
        *,
        book: str,
        limit: int,
        module: str | None,
        document_id: uuid.UUID | None,
        use_dense: bool,
        use_sparse: bool,
        with_vectors: bool,
    ) -> tuple[Query, list[Candidate], Literal["hybrid", "bm25"]]:
        """The question as the gate reads it, the fused candidates, reranked, and whether dense
        vectors took part."""
        sparse = await self.sparse.encode_query(query)
        dense = (
            await self._embed_or_fall_back(query, lexical=use_sparse and bool(sparse.indices))
            if use_dense
            else None
        )
        lexicon = await self.lexicon.get(book)
        pool = max(limit, self.candidates)
        in_document = str(document_id) if document_id else None
        lexical = (
            lexicon.search(sparse, pool, module=module, document_id=in_document)
            if use_sparse and sparse.indices
            else []
        )
        # The book's dense vectors, when this process holds them, are searched here.
        dense_ranked = (
            lexicon.dense_search(dense, pool, module=module, document_id=in_document)
            if dense is not None
            else None
        )
        hits = await self.index.search(
            book=book,
            dense=dense,
            dense_ranked=dense_ranked,
            lexical=lexical,
            limit=pool,
            candidates=pool,
            module=module,
            document_id=document_id,
            # The dense similarity of each candidate informs both the reranker and the gate.
            with_vectors=dense is not None and dense_ranked is None,
        )
        question = Query.of(query, content_terms(query), sparse.indices, lexicon)
        similarity = _similarities(dense, hits, lexicon) if dense is not None else {}
        candidates = []
        for rank, hit in enumerate(hits, start=1):
            terms = passage_term_ids(hit.text) | heading_term_ids(
                hit.title, tuple(hit.heading_path)
            )
            candidates.append(
                Candidate(
                    hit=hit,
                    rank=rank,
                    terms=terms,
                    coverage=coverage(question.weights, terms),
                    dense=similarity.get(hit.chunk_id),
                    score=1.0 / rank,
                )
            )
        if self.reranker is not None and candidates:
            depth = self.reranker.depth(limit, dense=dense is not None)
            head, tail = candidates[:depth], candidates[depth:]
            for candidate, score in zip(
                head, await self.reranker.score(question, head), strict=True
            ):
                candidate.score = score
            head.sort(key=lambda c: c.score, reverse=True)
            # Below the reranked head, fusion's order stands (scores stay under the head's).
            floor = min((c.score for c in head), default=0.0)
            for offset, candidate in enumerate(tail, start=1):
                candidate.score = floor - offset * 1e-3
            candidates = head + tail
        return question, candidates, "hybrid" if dense is not None else "bm25"

    async def _embed_or_fall_back(self, query: str, *, lexical: bool) -> list[float] | None:
        """The query's vector; None (BM25 alone) when the embeddings service fails and BM25
        can search the query, else the service's error."""
        if lexical and self.outage.resting():
            self.outage.skipped()
            self._count_fallback(self.outage.reason)
            return None
        try:
            async with asyncio.timeout(self.embed_timeout):
                vector = await self._embed_query(query)
        except TimeoutError as exc:
            failure = EmbeddingsUnavailable(
                "The embeddings service took too long to answer.", reason="timeout"
            )
            if not lexical:
                raise failure from exc
        except EmbeddingsUnavailable as exc:
            if not lexical:
                raise
            failure = exc
        else:
            if vector is not None:
                self.outage.succeeded()
            return vector
        self.outage.failed(failure)
        self._count_fallback(failure.reason)
        return None

    def _count_fallback(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.retrieval_dense_fallbacks.labels(metric_book(), reason).inc()

    async def _embed_query(self, query: str) -> list[float] | None:
        if self.embedder is None:
            return None
        key = None
        if self.cache is not None:
            digest = hashlib.sha256(query.encode()).hexdigest()
            key = f"embedding:{self.embedder.name}:{digest}"
            raw = await self.cache.get(key)
            if raw is not None and len(raw) == 4 * self.embedder.dimension:
                return list(array("f", raw))
        vector = await self.embedder.embed_query(query)
        if key is not None and self.cache is not None:
            await self.cache.set(key, array("f", vector).tobytes(), self.embedding_ttl_seconds)
        return vector


def _similarities(
    dense: list[float], hits: Sequence[Hit], lexicon: LexicalIndex
) -> dict[uuid.UUID, float]:
    """Each hit's cosine similarity to the query: from the vectors this process holds, else
    from those Qdrant returned with the hits."""
    if lexicon.dense is not None:
        return lexicon.similarities((hit.chunk_id for hit in hits), dense)
    with_dense = [hit for hit in hits if hit.dense]
    return dict(
        zip(
            (h.chunk_id for h in with_dense),
            cosines(dense, [h.dense or [] for h in with_dense]),
            strict=True,
        )
    )


def fuse(first: Sequence[Hit], second: Sequence[Hit]) -> list[Hit]:
    """Two ranked lists as one, by reciprocal rank (1 / (k + rank), ranks from 1); a chunk in
    both comes once."""
    by_id: dict[uuid.UUID, Hit] = {}
    for hit in (*first, *second):
        by_id.setdefault(hit.chunk_id, hit)
    fused = reciprocal_rank_fusion(
        [(hit.chunk_id, hit.score) for hit in first],
        [(hit.chunk_id, hit.score) for hit in second],
        k=RRF_K + 1,  # positions from 0, so the first of a list scores 1 / (RRF_K + 1)
    )
    return [replace(by_id[chunk_id], score=score) for chunk_id, score in fused]


def hit_to_source(index: int, hit: Hit) -> Source:
    return Source(
        index=index,
        title=hit.title,
        text=hit.text,
        section=hit.section,
        page_url=hit.page_url,
        source_path=hit.source_path,
        score=round(hit.score, 6),
    )


def _page_path(url: str) -> str:
    """The path of a page URL or path, without fragment, query or trailing slash."""
    return urlsplit(url.strip()).path.rstrip("/") or "/"


def boost_page(hits: list[Hit], page_context: str) -> list[Hit]:
    """Re-rank so that chunks of the reader's page score `PAGE_BOOST` times higher."""
    page = _page_path(page_context)

    def on_page(hit: Hit) -> bool:
        path = _page_path(hit.page_url)
        return path == page or (page != "/" and path.endswith(page))

    def lifted(score: float) -> float:  # cross-encoder scores may be negative
        return score * PAGE_BOOST if score >= 0 else score / PAGE_BOOST

    boosted = [replace(hit, score=lifted(hit.score)) if on_page(hit) else hit for hit in hits]
    return sorted(boosted, key=lambda hit: hit.score, reverse=True)
