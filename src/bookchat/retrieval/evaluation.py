"""Measuring retrieval quality on a question set: hit@1, hit@k and MRR, per retrieval mode."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bookchat.retrieval.service import HybridRetriever


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    question: str
    pages: tuple[str, ...]
    kind: str = ""
    section: str | None = None


@dataclass(frozen=True, slots=True)
class Scores:
    mode: str
    questions: int
    hit_at_1: float
    hit_at_k: float
    mrr: float
    k: int
    misses: tuple[str, ...] = ()


class QuestionFileError(ValueError):
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
    """Rank of the first chunk from an expected page, over the question set."""
    hits_1 = hits_k = 0
    reciprocal = 0.0
    misses = []
    for question in questions:
        results = await retriever.search(
            question.question,
            limit=k,
            use_dense=mode in ("dense", "hybrid"),
            use_sparse=mode in ("bm25", "hybrid"),
        )
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
    total = max(len(questions), 1)
    return Scores(
        mode=mode,
        questions=len(questions),
        hit_at_1=hits_1 / total,
        hit_at_k=hits_k / total,
        mrr=reciprocal / total,
        k=k,
        misses=tuple(misses),
    )
