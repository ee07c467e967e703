"""Measuring retrieval quality on a question set: hit@1, hit@k and MRR, per retrieval mode."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bookchat.core.errors import ValidationFailed
from bookchat.retrieval.service import HybridRetriever


@dataclass(frozen=True, slots=True)
class Question:
    """A question and the pages that answer it; no pages means the book does not cover it."""

    id: str
    question: str
    pages: tuple[str, ...]
    kind: str = ""
    section: str | None = None

    @property
    def answerable(self) -> bool:
        return bool(self.pages)


@dataclass(frozen=True, slots=True)
class Scores:
    mode: str
    questions: int
    hit_at_1: float
    hit_at_k: float
    mrr: float
    k: int
    misses: tuple[str, ...] = ()
    # The relevance floor: answerable questions it would refuse, off-topic ones it refuses.
    refused_answerable: int = 0
    off_topic: int = 0
    refused_off_topic: int = 0


class QuestionFileError(ValidationFailed):
    """The question file is malformed (the message names the line)."""


def load_questions(path: Path) -> list[Question]:
    """Read a JSONL question set: `{"id", "question", "pages": [...], "kind"?, "section"?}`."""
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            questions.append(
                Question(
                    id=str(raw["id"]),
                    question=str(raw["question"]),
                    pages=tuple(str(p) for p in raw["pages"]),
                    kind=str(raw.get("kind", "")),
                    section=raw.get("section"),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise QuestionFileError(f"{path}:{number}: {exc}") from None
    return questions


def modes_for(retriever: HybridRetriever) -> list[str]:
    return ["bm25", "dense", "hybrid"] if retriever.embedder is not None else ["bm25"]


async def evaluate(
    retriever: HybridRetriever, questions: Sequence[Question], *, mode: str, k: int = 5
) -> Scores:
    """Rank of the first chunk from an expected page, over the answerable questions; and how
    the relevance floor treats answerable and off-topic questions."""
    use_dense = mode in ("dense", "hybrid")
    use_sparse = mode in ("bm25", "hybrid")
    answerable = [q for q in questions if q.answerable]
    hits_1 = hits_k = refused = 0
    reciprocal = 0.0
    misses = []
    for question in answerable:
        results = await retriever.search(
            question.question, limit=k, use_dense=use_dense, use_sparse=use_sparse
        )
        refused += not await _passes_floor(retriever, question, k, use_dense, use_sparse)
        rank = next(
            (i for i, hit in enumerate(results, start=1) if hit.source_path in question.pages),
            None,
        )
        if rank is None:
            misses.append(question.id)
            continue
        hits_k += 1
        hits_1 += rank == 1
        reciprocal += 1 / rank
    off_topic = [q for q in questions if not q.answerable]
    refused_off_topic = 0
    for question in off_topic:
        refused_off_topic += not await _passes_floor(retriever, question, k, use_dense, use_sparse)
    total = max(len(answerable), 1)
    return Scores(
        mode=mode,
        questions=len(answerable),
        hit_at_1=hits_1 / total,
        hit_at_k=hits_k / total,
        mrr=reciprocal / total,
        k=k,
        misses=tuple(misses),
        refused_answerable=refused,
        off_topic=len(off_topic),
        refused_off_topic=refused_off_topic,
    )


async def _passes_floor(
    retriever: HybridRetriever, question: Question, k: int, use_dense: bool, use_sparse: bool
) -> bool:
    """Whether chat would find a usable passage (as `retrieve` does: the top k, then the
    floor) rather than answer that the book does not cover the question."""
    relevant = await retriever.search(
        question.question, limit=k, use_dense=use_dense, use_sparse=use_sparse, relevant_only=True
    )
    return bool(relevant)
