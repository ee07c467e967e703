"""Does the book cover this question? The relevance gate.

Fused scores are ranks, not evidence: a passage always comes first, even for "What is the capital
of France?". The gate asks instead how much of the question a passage holds, weighting each of
the question's words by how rare it is in the book (its inverse document frequency, the weight
BM25 gives it). Common words of a book (`model`, `best`, `world`) weigh little, so a passage that
shares them with an off-topic question does not pass; a word the book never uses weighs most, so
a question about something the book does not mention does not pass either. A dense similarity or
a cross-encoder's score can also let a passage through (paraphrases share no words).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from bookchat.retrieval.index import Hit
from bookchat.retrieval.lexical import LexicalIndex


def coverage(weights: Mapping[int, float], present: Collection[int]) -> float:
    """The share of the question's weight that a text holds (0 when the question has no terms)."""
    total = math.fsum(weights.values())
    if total <= 0:
        return 0.0
    return math.fsum(w for term, w in weights.items() if term in present) / total


@dataclass(frozen=True, slots=True)
class Query:
    """A question as the reranker and the gate read it: its text, its stemmed terms, their IDF
    weights, and the share of that weight in words the book never uses."""

    text: str
    terms: tuple[str, ...]
    weights: dict[int, float]
    unknown: float = 0.0

    @classmethod
    def of(cls, text: str, terms: Sequence[str], ids: Iterable[int], book: LexicalIndex) -> Query:
        weights = book.weights(ids)
        total = math.fsum(weights.values())
        outside = math.fsum(w for term, w in weights.items() if not book.known(term))
        return cls(text, tuple(terms), weights, outside / total if total > 0 else 0.0)


@dataclass(slots=True)
class Candidate:
    """A fused hit with what the gate and the reranker judge it by."""

    hit: Hit
    rank: int  # 1-based, in fusion order
    terms: frozenset[int]  # the BM25 term ids of the passage and its headings
    coverage: float  # the share of the question's weight the passage holds
    dense: float | None = None  # cosine similarity to the question, when vectors exist
    score: float = 0.0  # the reranker's score (higher is better)


@dataclass(frozen=True, slots=True)
class RelevanceGate:
    """Whether the book covers a question, judged on the best candidates; and which passages
    are worth giving to the model.

    Lexically, the book covers a question when less than `max_unknown` of its weight lies in
    words the book never uses and the best `pooled` passages together hold at least
    `min_coverage` of it. With an embedder, a passage whose cosine similarity reaches
    `min_dense_score` covers it on its own (paraphrases share no words), and the lexical rule
    also needs `lexical_dense_ratio` of that similarity (words shared with a passage far in
    meaning, "the speed of light" and a section on baked lighting, are not enough).
    A cross-encoder's score of at least `min_rerank_score` (one configured) covers it too.
    Defaults measured on the project's question sets: see the README.
    """

    min_coverage: float = 0.25
    max_unknown: float = 0.6
    min_dense_score: float = 0.35
    min_rerank_score: float | None = None
    pooled: int = 3
    lexical_dense_ratio: float = 0.95

    def covers(self, query: Query, candidates: Sequence[Candidate]) -> bool:
        if any(self._vouched(c) for c in candidates):
            return True
        if not candidates or query.unknown >= self.max_unknown:
            return False
        dense = [c.dense for c in candidates if c.dense is not None]
        if dense and max(dense) < self.lexical_dense_ratio * self.min_dense_score:
            return False
        held = frozenset().union(*(c.terms for c in candidates[: self.pooled]))
        return coverage(query.weights, held) >= self.min_coverage

    def useful(self, candidate: Candidate) -> bool:
        """A passage worth giving to the model once the question is covered: it holds some
        of the question, or a model vouches for it."""
        return candidate.coverage > 0 or self._vouched(candidate)

    def _vouched(self, candidate: Candidate) -> bool:
        if candidate.dense is not None and candidate.dense >= self.min_dense_score:
            return True
        return self.min_rerank_score is not None and candidate.score >= self.min_rerank_score
