"""Reranking the fused candidates: what BM25 and vector similarity alone miss.

Fusion ranks by each branch's order; it cannot see that the question's words are the heading of
a section ("create a publisher" is the section *Creating a Publisher*), that they stand together
in a passage rather than scattered over it, or that a passage defines what is asked about. A
`Reranker` scores the candidates with what it knows; the retriever sorts by that score.

Two implementations, chosen by `RERANKER`: `lexical` (the default, offline, a few milliseconds)
and `cross-encoder` (a fastembed `TextCrossEncoder` ONNX model, which reads question and passage
together).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import structlog

from bookchat.core.errors import ConfigurationError
from bookchat.providers.fastembed_models import load_fastembed_model
from bookchat.providers.terms import content_terms, term_id
from bookchat.retrieval.relevance import Candidate, Query, coverage

logger = structlog.get_logger(__name__)


class Reranker(Protocol):
    """Scores candidates for a question; the scores only need to order them.

    `depth` is how many of the fused candidates it reorders for a question that asks for
    `limit` (as many as asked: it changes their order, not which passages are returned)."""

    @property
    def name(self) -> str: ...

    def depth(self, limit: int, *, dense: bool) -> int: ...

    async def score(self, query: Query, candidates: Sequence[Candidate]) -> list[float]: ...


# --- the offline default ---------------------------------------------------------------------

# Sentences that define: "X is a ...", "X are ...", "X refers to ...", "X (Y) means ...".
_DEFINES = re.compile(r"\b(?:is|are|refers? to|means|stands for|describes?)\b", re.IGNORECASE)
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True, slots=True)
class LexicalWeights:
    """How much each signal counts, measured on the textbook-a question set (README). Phrase
    proximity was tried too and gained nothing there."""

    body: float = 1.0
    heading: float = 1.0
    definition: float = 0.1
    # The cosine similarity to the question, when an embedder is configured.
    dense: float = 4.0
    # Only breaks ties: fusion's own order already put these candidates first.
    fusion: float = 0.01


@lru_cache(maxsize=4096)
def passage_term_ids(text: str) -> frozenset[int]:
    """The BM25 term ids of a passage's text."""
    return frozenset(term_id(t) for t in content_terms(text))


@lru_cache(maxsize=4096)
def heading_term_ids(title: str, path: tuple[str, ...]) -> frozenset[int]:
    return frozenset(term_id(t) for t in content_terms(" ".join((title, *path))))


@lru_cache(maxsize=4096)
def _defined_terms(text: str) -> frozenset[str]:
    """Terms a passage defines: the content words before "is", "are", "refers to"... in the
    opening words of its sentences."""
    defined: set[str] = set()
    for sentence in _SENTENCES.split(text):
        match = _DEFINES.search(sentence, 0, 80)
        if match is not None:
            defined.update(content_terms(sentence[: match.start()]))
    return frozenset(defined)


@dataclass(frozen=True, slots=True)
class LexicalReranker:
    """The offline reranker: IDF-weighted coverage of the question in the passage and in its
    heading path, a definition of what is asked, and the dense similarity when there is one.

    Measured on textbook-a: with BM25 alone, reordering deeper than the passages asked for
    brought in more wrong passages than right ones; with a dense similarity to go by, twice as
    deep finds more."""

    weights: LexicalWeights = LexicalWeights()
    name: str = "lexical"
    # Never shallower than a chat's passages (TOP_K's default): asking for fewer passages must
    # not change which comes first, as it did when `search --limit 1` reordered one.
    min_depth: int = 5

    def depth(self, limit: int, *, dense: bool) -> int:
        depth = max(limit, self.min_depth)
        return 2 * depth if dense else depth

    async def score(self, query: Query, candidates: Sequence[Candidate]) -> list[float]:
        return [self._score(query, candidate) for candidate in candidates]

    def _score(self, query: Query, candidate: Candidate) -> float:
        hit, w = candidate.hit, self.weights
        heading = coverage(query.weights, heading_term_ids(hit.title, tuple(hit.heading_path)))
        defined = _defined_terms(hit.text)
        defines = float(any(term in defined for term in query.terms))
        return (
            w.body * candidate.coverage
            + w.heading * heading
            + w.definition * defines
            + w.dense * (candidate.dense or 0.0)
            + w.fusion / candidate.rank
        )


# --- a cross-encoder -------------------------------------------------------------------------

CROSS_ENCODER_ADVICE = "using the lexical reranker instead (RERANKER=lexical)"


class RerankerUnavailable(ConfigurationError):
    """The configured reranking model cannot be had."""


class CrossEncoderReranker:
    """A fastembed `TextCrossEncoder` (ONNX) scoring question and passage together.

    Loaded like the local embedders: from `model_path`, else the model cache, else a download
    bounded by `download_timeout`; a model that cannot be had raises `RerankerUnavailable`.
    Scoring runs in a worker thread.
    """

    def __init__(
        self,
        *,
        model: str = "Xenova/ms-marco-MiniLM-L-6-v2",
        cache_dir: str | None = None,
        model_path: str | None = None,
        download_timeout: float = 10.0,
        depth: int = 20,
    ) -> None:
        # fastembed's cross-encoder module is imported only by those who configure one.
        from fastembed.common.utils import define_cache_dir
        from fastembed.rerank.cross_encoder import TextCrossEncoder

        try:
            description = TextCrossEncoder._get_model_description(model)
        except ValueError:
            raise RerankerUnavailable(
                f"fastembed does not know the reranking model {model!r}: set RERANK_MODEL to one "
                "of fastembed's TextCrossEncoder.list_supported_models(), or RERANKER=lexical"
            ) from None
        self.model = description.model
        self.name = f"cross-encoder:{self.model}"
        # A cross-encoder reads each candidate whole: it can lift one fusion ranked low.
        self._depth = depth
        self._encoder, source = load_fastembed_model(
            TextCrossEncoder,
            description,
            cache_dir=str(define_cache_dir(cache_dir)),
            model_path=model_path,
            path_setting="RERANK_MODEL_PATH",
            allow_download=True,
            download_timeout=download_timeout,
            error=RerankerUnavailable,
            advice=CROSS_ENCODER_ADVICE,
        )
        logger.info("rerank.model_loaded", model=self.model, source=source)

    def depth(self, limit: int, *, dense: bool) -> int:
        return max(limit, self._depth)

    def _score(self, question: str, passages: list[str]) -> list[float]:
        return [float(s) for s in self._encoder.rerank(question, passages)]

    async def score(self, query: Query, candidates: Sequence[Candidate]) -> list[float]:
        if not candidates:
            return []
        passages = [c.hit.text for c in candidates]
        return await asyncio.to_thread(self._score, query.text, passages)
