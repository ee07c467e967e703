"""BM25 over the book's chunks, scored in this process from an inverted index.

The chunks' BM25 vectors are stored in the Qdrant collection, the copy every replica reads. Each
process keeps them as an inverted index (for each term, the chunks that hold it and their
weights), read once per index version, and scores a question there with a few array operations
per question term. Qdrant scored them itself before, but embedded Qdrant merges the question with
every point's vector in pure Python: 35-45% of a chat's CPU on textbook-a, and with 20 books in
one collection, 0.2 s a question (0.4 ms here). Scoring here costs the same in both profiles,
so both keep one code path; Qdrant still searches the dense vectors (see `QdrantIndex.search`).

The scores are those Qdrant gives a sparse vector with `Modifier.IDF`: the sum, over the terms a
chunk shares with the question, of question weight x IDF x chunk weight, where the IDF is
ln(1 + (N - n + 0.5) / (n + 0.5)) for N chunks of which n hold the term. The same index gives the
relevance gate its term weights (`relevance.Query`).
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
import structlog

from bookchat.core.cache import INDEX_VERSION, Cache
from bookchat.providers.sparse import SparseVector
from bookchat.retrieval.index import LexicalRow

logger = structlog.get_logger(__name__)

# While the shared index version cannot be read, how long a process serves its index before
# reading the collection again (in the background; questions meanwhile use the index in hand).
RELOAD_AFTER_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class _Posting:
    rows: npt.NDArray[np.intp]
    weights: npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class LexicalIndex:
    """The book's BM25 vectors as an inverted index; rows are chunks, in the order read."""

    ids: tuple[uuid.UUID, ...] = ()
    postings: Mapping[int, _Posting] = field(default_factory=dict)
    by_document: Mapping[str, npt.NDArray[np.intp]] = field(default_factory=dict)
    by_module: Mapping[str, npt.NDArray[np.intp]] = field(default_factory=dict)

    @classmethod
    def build(cls, rows: Iterable[LexicalRow]) -> LexicalIndex:
        ids: list[uuid.UUID] = []
        terms: defaultdict[int, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
        documents: defaultdict[str, list[int]] = defaultdict(list)
        modules: defaultdict[str, list[int]] = defaultdict(list)
        for number, row in enumerate(rows):
            ids.append(row.chunk_id)
            documents[row.document_id].append(number)
            if row.module is not None:
                modules[row.module].append(number)
            for term, weight in zip(row.vector.indices, row.vector.values, strict=True):
                held, weights = terms[term]
                held.append(number)
                weights.append(weight)
        return cls(
            ids=tuple(ids),
            postings={
                term: _Posting(np.array(held, dtype=np.intp), np.array(weights, dtype=np.float64))
                for term, (held, weights) in terms.items()
            },
            by_document={key: np.array(found, dtype=np.intp) for key, found in documents.items()},
            by_module={key: np.array(found, dtype=np.intp) for key, found in modules.items()},
        )

    @property
    def chunks(self) -> int:
        return len(self.ids)

    def frequency(self, term: int) -> int:
        """In how many chunks `term` occurs."""
        posting = self.postings.get(term)
        return 0 if posting is None else len(posting.rows)

    def idf(self, term: int) -> float:
        """BM25's inverse document frequency, as Qdrant's `Modifier.IDF` computes it."""
        found = self.frequency(term)
        return math.log(1 + (self.chunks - found + 0.5) / (found + 0.5))

    def weights(self, terms: Iterable[int]) -> dict[int, float]:
        return {term: self.idf(term) for term in set(terms)}

    def known(self, term: int) -> bool:
        return term in self.postings

    def search(
        self,
        query: SparseVector,
        limit: int,
        *,
        module: str | None = None,
        document_id: str | None = None,
    ) -> list[tuple[uuid.UUID, float]]:
        """The `limit` best chunks sharing a term with `query`, best first, with their scores;
        only chunks of `module` and of `document_id` when given."""
        if limit <= 0 or not self.ids:
            return []
        scores = np.zeros(len(self.ids))
        matched = False
        for term, weight in zip(query.indices, query.values, strict=True):
            posting = self.postings.get(term)
            if posting is not None:
                # A chunk holds a term once, so its rows are distinct: `+=` adds to each.
                scores[posting.rows] += (weight * self.idf(term)) * posting.weights
                matched = True
        if not matched:
            return []
        found = np.flatnonzero(scores > 0)
        for key, rows in ((module, self.by_module), (document_id, self.by_document)):
            if key is not None:
                found = np.intersect1d(found, rows.get(key, np.empty(0, dtype=np.intp)))
        if len(found) > limit:
            found = found[np.argpartition(-scores[found], limit - 1)[:limit]]
        # Best first; equal scores keep the order the chunks were read in.
        ordered = found[np.lexsort((found, -scores[found]))]
        return [(self.ids[row], float(scores[row])) for row in ordered]


class Source(Protocol):
    """Where an index is read from: the collection's chunks with their BM25 vectors."""

    async def lexical_rows(self) -> list[LexicalRow]: ...


class BookLexicon:
    """The book's lexical index, read from the collection and kept until the book changes.

    Every replica reads it from the collection itself. The ingestor bumps the shared index
    version when the book changes (cache.py): the next question waits for the new index. While
    no version can be read (Redis is down, or there is no cache), the index in hand is served
    and read again in the background once it is `reload_after` seconds old.
    """

    def __init__(
        self,
        source: Source,
        cache: Cache | None = None,
        reload_after: float = RELOAD_AFTER_SECONDS,
    ) -> None:
        self._source = source
        self._cache = cache
        self._reload_after = reload_after
        self._lock = asyncio.Lock()
        self._current: LexicalIndex | None = None
        self._version: int | None = None
        self._loaded_at = 0.0
        self._refresh: asyncio.Task[None] | None = None

    async def get(self) -> LexicalIndex:
        version = await self._cache.version(INDEX_VERSION) if self._cache is not None else None
        current = self._current
        if current is not None and version is None:
            if time.monotonic() - self._loaded_at >= self._reload_after:
                self._refresh_in_background()
            return current
        if current is not None and version == self._version:
            return current
        async with self._lock:
            if self._current is None or (version is not None and version != self._version):
                await self._load(version)
            assert self._current is not None
            return self._current

    async def _load(self, version: int | None) -> None:
        rows = await self._source.lexical_rows()
        self._current = await asyncio.to_thread(LexicalIndex.build, rows)
        self._version = version
        self._loaded_at = time.monotonic()

    def _refresh_in_background(self) -> None:
        if self._refresh is not None and not self._refresh.done():
            return
        self._loaded_at = time.monotonic()  # one reload per period, even if this one fails
        self._refresh = asyncio.create_task(self._reload())

    async def _reload(self) -> None:
        try:
            async with self._lock:
                # Read without a version: the next version the cache gives is read again.
                await self._load(None)
        except Exception as exc:  # the index in hand stays in service
            logger.warning("retrieval.lexicon_reload_failed", error_type=type(exc).__name__)

    async def aclose(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            await asyncio.gather(self._refresh, return_exceptions=True)
