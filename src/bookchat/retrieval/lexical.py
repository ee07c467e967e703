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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import structlog

from bookchat.books.names import index_version
from bookchat.core.cache import Cache
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
    # The chunks' dense vectors, each of length 1, in row order (None: Qdrant searches them).
    dense: npt.NDArray[np.float32] | None = None
    row_of: Mapping[uuid.UUID, int] = field(default_factory=dict)

    @classmethod
    def build(cls, rows: Iterable[LexicalRow], *, max_dense_bytes: int = 0) -> LexicalIndex:
        """The index of `rows`; their dense vectors too when every row has one and they take
        at most `max_dense_bytes`."""
        rows = list(rows)
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
            dense=_unit_rows(rows, max_dense_bytes),
            row_of={chunk_id: number for number, chunk_id in enumerate(ids)},
        )

    @property
    def dense_bytes(self) -> int:
        return 0 if self.dense is None else self.dense.nbytes

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
        found = self._within(np.flatnonzero(scores > 0), module, document_id)
        return self._best(found, scores, limit)

    def dense_search(
        self,
        query: Sequence[float],
        limit: int,
        *,
        module: str | None = None,
        document_id: str | None = None,
    ) -> list[tuple[uuid.UUID, float]] | None:
        """The `limit` chunks most similar to `query` (cosine), best first, with their
        similarities, as an exact search in Qdrant finds them; None when this index does not
        hold the dense vectors."""
        if self.dense is None:
            return None
        if limit <= 0 or not self.ids:
            return []
        scores = self.dense @ _unit(query)
        found = self._within(np.arange(len(self.ids)), module, document_id)
        return self._best(found, scores, limit)

    def similarities(
        self, chunk_ids: Iterable[uuid.UUID], query: Sequence[float]
    ) -> dict[uuid.UUID, float]:
        """The cosine similarity of each of these chunks to `query` (those this index holds)."""
        if self.dense is None:
            return {}
        known = [(id_, self.row_of[id_]) for id_ in chunk_ids if id_ in self.row_of]
        if not known:
            return {}
        scores = self.dense[[row for _, row in known]] @ _unit(query)
        return {chunk_id: float(score) for (chunk_id, _), score in zip(known, scores, strict=True)}

    def _within(
        self, found: npt.NDArray[np.intp], module: str | None, document_id: str | None
    ) -> npt.NDArray[np.intp]:
        for key, rows in ((module, self.by_module), (document_id, self.by_document)):
            if key is not None:
                found = np.intersect1d(found, rows.get(key, np.empty(0, dtype=np.intp)))
        return found

    def _best(
        self, found: npt.NDArray[np.intp], scores: npt.NDArray[Any], limit: int
    ) -> list[tuple[uuid.UUID, float]]:
        if len(found) > limit:
            found = found[np.argpartition(-scores[found], limit - 1)[:limit]]
        # Best first; equal scores keep the order the chunks were read in.
        ordered = found[np.lexsort((found, -scores[found]))]
        return [(self.ids[row], float(scores[row])) for row in ordered]


def _unit(vector: Sequence[float]) -> npt.NDArray[np.float32]:
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    return array / norm if norm > 0 else array


def _unit_rows(rows: Sequence[LexicalRow], max_bytes: int) -> npt.NDArray[np.float32] | None:
    """The rows' dense vectors scaled to length 1, or None: a row without one, or more than
    `max_bytes` of them."""
    if not rows or any(row.dense is None for row in rows):
        return None
    width = len(rows[0].dense or ())
    if width == 0 or len(rows) * width * 4 > max_bytes:
        return None
    matrix = np.array([row.dense for row in rows], dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: npt.NDArray[np.float32] = (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)
    return unit


class Source(Protocol):
    """Where an index is read from: a book's chunks with their BM25 vectors."""

    async def lexical_rows(self, book: str, *, with_dense: bool = False) -> list[LexicalRow]: ...


class BookLexicon:
    """Each book's lexical index (its own IDF too: a word common in one book may be rare in
    another), read from the collection when first asked for, and kept until the book changes.

    With `dense_budget_bytes`, a book's dense vectors are kept too while all books' together fit
    in it, and its dense search runs here: embedded Qdrant checks a payload filter point by
    point in Python (87 ms a query with 20 books of textbook-a's size in the collection), and a
    Qdrant server is spared a round trip. A book that does not fit is searched by Qdrant,
    filtered to the book, as every book is with a budget of 0."""

    def __init__(
        self,
        source: Source,
        cache: Cache | None = None,
        reload_after: float = RELOAD_AFTER_SECONDS,
        *,
        dense_budget_bytes: int = 0,
    ) -> None:
        self.source = source
        self.cache = cache
        self.reload_after = reload_after
        self._dense_budget = dense_budget_bytes
        self._books: dict[str, _BookIndex] = {}

    async def get(self, book: str) -> LexicalIndex:
        """`book`'s index, read again first when the book changed."""
        index = self._books.get(book)
        if index is None:
            index = self._books[book] = _BookIndex(self, book)
        return await index.get()

    def forget(self, book: str) -> None:
        """Drop `book`'s index (the book was deleted)."""
        index = self._books.pop(book, None)
        if index is not None:
            index.cancel()

    async def aclose(self) -> None:
        for index in self._books.values():
            await index.aclose()

    def dense_room(self, book: str) -> int:
        """Bytes of dense vectors `book` may keep: the budget less what the others hold."""
        others = sum(index.dense_bytes for name, index in self._books.items() if name != book)
        return max(self._dense_budget - others, 0)


class _BookIndex:
    """One book's lexical index, read from the collection and kept until the book changes.

    Every replica reads it from the collection itself. The ingestor bumps the book's shared
    index version when it changes (cache.py): the next question waits for the new index. While
    no version can be read (Redis is down, or there is no cache), the index in hand is served
    and read again in the background once it is `reload_after` seconds old.
    """

    def __init__(self, lexicon: BookLexicon, book: str) -> None:
        self._lexicon = lexicon
        self._source = lexicon.source
        self._book = book
        self._version_name = index_version(book)
        self._cache = lexicon.cache
        self._reload_after = lexicon.reload_after
        self._lock = asyncio.Lock()
        self._current: LexicalIndex | None = None
        self._version: int | None = None
        self._loaded_at = 0.0
        self._refresh: asyncio.Task[None] | None = None

    async def get(self) -> LexicalIndex:
        version = await self._cache.version(self._version_name) if self._cache is not None else None
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
        room = self._lexicon.dense_room(self._book)
        rows = await self._source.lexical_rows(self._book, with_dense=room > 0)
        self._current = await asyncio.to_thread(
            partial(LexicalIndex.build, rows, max_dense_bytes=room)
        )
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

    @property
    def dense_bytes(self) -> int:
        return 0 if self._current is None else self._current.dense_bytes

    def cancel(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()

    async def aclose(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            await asyncio.gather(self._refresh, return_exceptions=True)
