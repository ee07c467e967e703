"""Sparse (lexical) encoders: BM25 term weights for Qdrant's sparse vectors, fully offline."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Protocol, runtime_checkable

from fastembed.sparse.bm25 import Bm25
from fastembed.sparse.sparse_embedding_base import SparseEmbedding

BM25_MODEL = "Qdrant/bm25"
# Shipped with the package (see bm25/README.md): our stop words, and the folder fastembed is
# told the model lives in, so it never downloads the Qdrant/bm25 repository.
_BM25_DATA = resources.files("bookchat.providers") / "bm25"


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


@lru_cache(maxsize=4)
def _bm25_model(k: float, b: float, avg_len: float) -> Bm25:
    """fastembed's BM25 with our stop words, loaded once per process and parameter set.

    Loading takes a noticeable fraction of a second (the stemmer, stop words and punctuation
    tables), and the model holds no per-call state, so every encoder of a process shares it:
    the server builds one, but the CLI and the test suite open many containers.
    """
    data_dir = str(_BM25_DATA)
    return Bm25(
        BM25_MODEL,
        # Both point at our package folder: fastembed returns `specific_model_path` without
        # any download, and `cache_dir` keeps it from creating a cache folder in /tmp.
        cache_dir=data_dir,
        specific_model_path=data_dir,
        stopwords=set(english_stop_words()),
        language="english",
        k=k,
        b=b,
        avg_len=avg_len,
    )


def _to_vector(embedding: SparseEmbedding) -> SparseVector:
    pairs = sorted(zip(embedding.indices.tolist(), embedding.values.tolist(), strict=True))
    return SparseVector(
        indices=[int(index) for index, _ in pairs], values=[float(value) for _, value in pairs]
    )


class FastEmbedBm25Encoder:
    """BM25 on fastembed's `Qdrant/bm25`: English Snowball stemming, our stop words.

    Documents get BM25 term-frequency weights; a query gets weight 1 per distinct term. The
    inverse document frequency is applied by Qdrant (sparse vector with `Modifier.IDF`).
    Construction reads nothing from the network; encoding runs in a worker thread.
    """

    name = "fastembed:Qdrant/bm25"

    def __init__(
        self,
        *,
        k: float = 1.2,
        b: float = 0.75,
        avg_len: float = 256.0,
        batch_size: int = 256,
    ) -> None:
        self._batch_size = batch_size
        self._model = _bm25_model(k, b, avg_len)

    def _encode_documents(self, texts: list[str]) -> list[SparseVector]:
        embeddings: Iterable[SparseEmbedding] = self._model.embed(
            texts, batch_size=self._batch_size
        )
        return [_to_vector(embedding) for embedding in embeddings]

    def _encode_query(self, text: str) -> SparseVector:
        return _to_vector(next(iter(self._model.query_embed(text))))

    async def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        """BM25 term weights of each text, in input order."""
        if not texts:
            return []
        return await asyncio.to_thread(self._encode_documents, list(texts))

    async def encode_query(self, text: str) -> SparseVector:
        """The query's distinct terms, each with weight 1."""
        return await asyncio.to_thread(self._encode_query, text)
