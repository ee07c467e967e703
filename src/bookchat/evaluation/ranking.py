"""Retrieval alone: where the first passage of an expected page ranks, per retrieval mode."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bookchat.evaluation.questions import Question
from bookchat.retrieval.service import HybridRetriever


@dataclass(frozen=True, slots=True)
class KindScores:
    """hit@1 and hit@k over the ranked questions of one kind (`Question.kind`)."""

    kind: str
    questions: int
    hit_at_1: float
    hit_at_k: float


@dataclass(frozen=True, slots=True)
class Scores:
    """hit@1, hit@k and MRR of one retrieval mode over the ranked questions."""

    mode: str
    questions: int
    hit_at_1: float
    hit_at_k: float
    mrr: float
    k: int
    misses: tuple[str, ...] = ()
    # Per kind of question, in the order kinds first appear (paraphrases that share no word
    # with their answer are out of reach of BM25; the total hides that).
    kinds: tuple[KindScores, ...] = ()


def modes_for(retriever: HybridRetriever) -> list[str]:
    return ["bm25", "dense", "hybrid"] if retriever.embedder is not None else ["bm25"]


async def evaluate(
    retriever: HybridRetriever, questions: Sequence[Question], *, mode: str, k: int = 5
) -> Scores:
    """Rank of the first passage from an expected page, over the first questions that name
    pages (see `Question.ranked`); a question with none in the top k is a miss."""
    use_dense = mode in ("dense", "hybrid")
    use_sparse = mode in ("bm25", "hybrid")
    ranked = [q for q in questions if q.ranked]
    hits_1 = hits_k = 0
    reciprocal = 0.0
    misses = []
    ranks: dict[str, list[int | None]] = {}
    for question in ranked:
        results = await retriever.search(
            question.question, limit=k, use_dense=use_dense, use_sparse=use_sparse
        )
        rank = next(
            (i for i, hit in enumerate(results, start=1) if hit.source_path in question.pages),
            None,
        )
        ranks.setdefault(question.kind, []).append(rank)
        if rank is None:
            misses.append(question.id)
            continue
        hits_k += 1
        hits_1 += rank == 1
        reciprocal += 1 / rank
    total = max(len(ranked), 1)
    return Scores(
        mode=mode,
        questions=len(ranked),
        hit_at_1=hits_1 / total,
        hit_at_k=hits_k / total,
        mrr=reciprocal / total,
        k=k,
        misses=tuple(misses),
        kinds=tuple(
            KindScores(
                kind=kind,
                questions=len(found),
                hit_at_1=sum(rank == 1 for rank in found) / len(found),
                hit_at_k=sum(rank is not None for rank in found) / len(found),
            )
            for kind, found in ranks.items()
        ),
    )
