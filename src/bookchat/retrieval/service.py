"""Finding the passages of the book that answer a question: hybrid search over the index."""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol
from urllib.parse import urlsplit

from bookchat.core.cache import Cache
from bookchat.core.metrics import Metrics
from bookchat.providers.base import Source
from bookchat.providers.embeddings import Embedder
from bookchat.providers.sparse import SparseEncoder, SparseVector
from bookchat.retrieval.index import Hit, QdrantIndex

# How much a chunk of the page the reader is on is preferred over other pages' chunks.
PAGE_BOOST = 1.25


class Retriever(Protocol):
    """What the chat flow needs: the best passages for a question, numbered from 1."""

    async def retrieve(
        self, query: str, *, limit: int = 5, page_context: str | None = None
    ) -> list[Source]: ...


@dataclass(slots=True)
class RelevanceFloor:
    """When a passage counts as relevant to a question (fused RRF scores are only ranks).

    A passage passes when its cosine similarity to the question reaches `min_dense_score`
    (dense retrieval on), or when it contains at least `min_term_coverage` of the question's
    distinct BM25 terms (stemmed, stop words removed). Defaults measured on the textbook-a
    question set: see the README.
    """

    min_dense_score: float = 0.3
    min_term_coverage: float = 0.34

    def passes(self, hit: Hit, dense: Sequence[float] | None, sparse: SparseVector | None) -> bool:
        if (
            dense is not None
            and hit.dense is not None
            and cosine(dense, hit.dense) >= self.min_dense_score
        ):
            return True
        if sparse is not None and sparse.indices:
            terms = set(sparse.indices)
            if len(terms & hit.sparse_indices) / len(terms) >= self.min_term_coverage:
                return True
        return False


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    norm = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    return math.fsum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0


@dataclass(slots=True)
class HybridRetriever:
    """Dense (when an embedder is configured) and BM25 candidates, fused by reciprocal rank."""

    index: QdrantIndex
    sparse: SparseEncoder
    embedder: Embedder | None = None
    candidates: int = 20
    floor: RelevanceFloor = field(default_factory=RelevanceFloor)
    # Query vectors, shared by replicas through Redis when configured: a popular question is
    # embedded once.
    cache: Cache | None = None
    embedding_ttl_seconds: float = 24 * 3600
    metrics: Metrics | None = None

    @property
    def name(self) -> Literal["hybrid", "bm25"]:
        return "hybrid" if self.embedder is not None else "bm25"

    async def search(
        self,
        query: str,
        *,
        limit: int = 5,
        module: str | None = None,
        document_id: uuid.UUID | None = None,
        page_context: str | None = None,
        use_dense: bool = True,
        use_sparse: bool = True,
        relevant_only: bool = False,
    ) -> list[Hit]:
        """The best chunks for `query`; `page_context` lifts the chunks of that page;
        `relevant_only` drops the chunks under the relevance floor."""
        started = time.perf_counter()
        dense = await self._embed_query(query) if use_dense else None
        sparse = await self.sparse.encode_query(query) if use_sparse else None
        # Fetch more than asked when boosting, so a chunk of the current page can move up.
        fetch = max(limit, self.candidates // 2) if page_context else limit
        hits = await self.index.search(
            dense=dense,
            sparse=sparse,
            limit=fetch,
            candidates=max(self.candidates, fetch),
            module=module,
            document_id=document_id,
            with_vectors=relevant_only,
        )
        if relevant_only:
            hits = [hit for hit in hits if self.floor.passes(hit, dense, sparse)]
        if page_context:
            hits = boost_page(hits, page_context)
        if self.metrics is not None:
            self.metrics.retrieval_duration.labels(self.name).observe(time.perf_counter() - started)
        return hits[:limit]

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

    async def retrieve(
        self, query: str, *, limit: int = 5, page_context: str | None = None
    ) -> list[Source]:
        hits = await self.search(query, limit=limit, page_context=page_context, relevant_only=True)
        return [hit_to_source(number, hit) for number, hit in enumerate(hits, start=1)]


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

    boosted = [replace(hit, score=hit.score * PAGE_BOOST) if on_page(hit) else hit for hit in hits]
    return sorted(boosted, key=lambda hit: hit.score, reverse=True)
