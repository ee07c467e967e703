"""Sparse (lexical) encoders: BM25 term weights for Qdrant's sparse vectors, fully offline."""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Protocol, runtime_checkable

import mmh3
from py_rust_stemmers import SnowballStemmer

# The term space of fastembed's `Qdrant/bm25` model: an index built by it (earlier versions
# encoded with fastembed) and one built by `Bm25Encoder` hold the same ids and weights.
BM25_MODEL = "Qdrant/bm25"
# Shipped with the package (see bm25/README.md): our stop words.
_BM25_DATA = resources.files("bookchat.providers") / "bm25"
# Longer tokens (base64, hashes, minified code) are dropped, as `Qdrant/bm25` drops them.
MAX_TOKEN_CHARS = 40
# Queries up to this long are encoded on the event loop (well under a millisecond).
INLINE_QUERY_CHARS = 600
_NOT_WORD_OR_SPACE = re.compile(r"[^\w\s]")
_NOT_WORD = re.compile(r"[^\w]")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class SparseVector:
    """Term ids and their weights, sorted by id; empty when the text has no indexable term."""

    indices: list[int]
    values: list[float]


@runtime_checkable
class SparseEncoder(Protocol):
    """Turns text into sparse vectors: documents carry term weights, queries the terms alone."""

    @property
    def name(self) -> str: ...

    async def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]: ...

    async def encode_query(self, text: str) -> SparseVector: ...


@lru_cache(maxsize=1)
def english_stop_words() -> frozenset[str]:
    """The project's English stop-word list (`bm25/english.txt`)."""
    text = (_BM25_DATA / "english.txt").read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


@lru_cache(maxsize=1)
def _stemmer() -> SnowballStemmer:
    return SnowballStemmer("english")


def _is_punctuation(token: str) -> bool:
    # Tokens are runs of word characters; the only punctuation left is a lone connector such
    # as "_" (Unicode category Pc), which `Qdrant/bm25` drops as punctuation.
    return len(token) == 1 and unicodedata.category(token).startswith("P")


def bm25_terms(text: str) -> list[str]:
    """The stemmed terms BM25 counts in `text`, in order, repeats kept: `Qdrant/bm25`'s reading
    (anything but word characters separates tokens; lone punctuation, stop words and tokens
    over 40 characters are dropped; English Snowball stems)."""
    plain = _NOT_WORD_OR_SPACE.sub(" ", text)
    tokens = _SPACES.sub(" ", _NOT_WORD.sub(" ", plain.lower())).strip().split()
    stop = english_stop_words()
    kept = [
        token
        for token in tokens
        if not _is_punctuation(token) and token not in stop and len(token) <= MAX_TOKEN_CHARS
    ]
    return [stem for stem in _stemmer().stem_words(kept) if stem] if kept else []


def bm25_term_id(term: str) -> int:
    """A stemmed term's id in the sparse index (its unsigned 32-bit MurmurHash3, as
    `Qdrant/bm25` computes it)."""
    return abs(mmh3.hash(term))


class Bm25Encoder:
    """BM25 in `Qdrant/bm25`'s term space: English Snowball stemming, our stop words.

    Documents get BM25 term-frequency weights; a query gets weight 1 per distinct term. The
    inverse document frequency is applied by Qdrant (sparse vector with `Modifier.IDF`).
    Pure Python on a stemmer and a hash: no model files, no network, no ONNX runtime (fastembed
    is imported only by those who configure a fastembed model). Documents and long queries are
    encoded in a worker thread.
    """

    # What the stored vectors mean; unchanged from when fastembed computed them, so indexes
    # built then still match.
    name = "fastembed:Qdrant/bm25"

    def __init__(self, *, k: float = 1.2, b: float = 0.75, avg_len: float = 256.0) -> None:
        self._k = k
        self._b = b
        self._avg_len = avg_len

    def _encode_document(self, text: str) -> SparseVector:
        terms = bm25_terms(text)
        k, b = self._k, self._b
        length_norm = k * (1 - b + b * len(terms) / self._avg_len)
        weights: dict[int, float] = {}
        # A later term whose hash collides with an earlier one's takes its place, as in
        # `Qdrant/bm25` (the same ids and weights, float for float).
        for term, occurrences in Counter(terms).items():
            weights[bm25_term_id(term)] = occurrences * (k + 1) / (occurrences + length_norm)
        ordered = sorted(weights.items())
        return SparseVector(
            indices=[index for index, _ in ordered], values=[value for _, value in ordered]
        )

    def _encode_documents(self, texts: list[str]) -> list[SparseVector]:
        return [self._encode_document(text) for text in texts]

    def _encode_query(self, text: str) -> SparseVector:
        ids = sorted({bm25_term_id(term) for term in bm25_terms(text)})
        return SparseVector(indices=ids, values=[1.0] * len(ids))

    async def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        """BM25 term weights of each text, in input order."""
        if not texts:
            return []
        return await asyncio.to_thread(self._encode_documents, list(texts))

    async def encode_query(self, text: str) -> SparseVector:
        """The query's distinct terms, each with weight 1. A question of ordinary length is
        encoded on the loop (about 0.1 ms, what a hop to a worker thread costs by itself), so
        answers do not queue behind whatever keeps the worker threads busy; a long text goes
        to a thread."""
        if len(text) <= INLINE_QUERY_CHARS:
            return self._encode_query(text)
        return await asyncio.to_thread(self._encode_query, text)
