"""The totals of a run, the table and the JSON, from results built by hand."""

from __future__ import annotations

import json
import uuid

import pytest

from bookchat.evaluation.answers import AnswerResult
from bookchat.evaluation.questions import Category
from bookchat.evaluation.ranking import KindScores, Scores
from bookchat.evaluation.report import Evaluation, Setup, Tally, render, score_answers


def result(
    category: Category,
    *,
    refused: bool,
    latency_ms: int = 10,
    problems: tuple[str, ...] = (),
    shown: tuple[int, ...] = (1,),
    gap: str | None = None,
    page: bool | None = None,
    section: bool | None = None,
    isolation: tuple[str, ...] = (),
    quotes: bool | None = True,
) -> AnswerResult:
    must_refuse = category in ("off_topic", "topic_switch", "selection_refuses")
    return AnswerResult(
        id=f"{category}-{uuid.uuid4().hex[:4]}",
        category=category,
        must_refuse=must_refuse,
        refused=refused,
        mode="no_context" if refused and not category.startswith("selection") else "rag",
        model="extractive",
        latency_ms=latency_ms,
        shown=() if refused else shown,
        expected_page_cited=page,
        expected_section_cited=section,
        citation_problems=problems,
        gap=gap,
        isolation_problems=isolation,
        response="…",
        quotes=None if refused else quotes,
    )


def test_the_totals() -> None:
    results = [
        result("answerable", refused=False, page=True, section=True, latency_ms=10),
        result("answerable", refused=False, page=False, section=False, gap="shows [2] without [1]"),
        result("answerable", refused=True, latency_ms=30),
        result(
            "follow_up",
            refused=False,
            page=True,
            section=False,
            problems=("[3] names no citation",),
            quotes=False,
        ),
        result("off_topic", refused=True, latency_ms=2),
        result("off_topic", refused=False, shown=()),
        result("topic_switch", refused=False),
        result("topic_switch", refused=True),
        result("selection_answers", refused=False, isolation=("shows a book passage",)),
        result("selection_refuses", refused=True),
    ]
    scores = score_answers(results)
    # 4 refusals, 3 of them expected; 5 questions to refuse, 3 refused.
    assert scores.refusal_precision == pytest.approx(3 / 4)
    assert scores.refusal_recall == pytest.approx(3 / 5)
    assert scores.answerable_refused == Tally(1, 4)
    assert scores.follow_ups_refused == Tally(0, 1)
    assert scores.off_topic_refused == Tally(2, 4)
    assert scores.topic_switches_refused == Tally(1, 2)
    assert scores.selections_declined == Tally(0, 1)
    assert scores.selections_refused == Tally(1, 1)
    # Answers from sources: everything not `no_context` (the refused selection counts too).
    assert scores.citations_valid == Tally(6, 7)
    assert scores.citation_gaps == Tally(1, 7)
    assert scores.uncited == Tally(1, 6)
    # Answerable questions answered offline: one points at passages without quoting them.
    assert scores.quoting_nothing == Tally(1, 3)
    assert scores.selections_isolated == Tally(1, 2)
    assert scores.expected_page_cited == Tally(2, 3)
    assert scores.expected_section_cited == Tally(1, 3)
    assert scores.latency_p50_ms == 10
    assert scores.latency_p95_ms == 30


def test_the_table_lists_what_misleads_a_reader_first() -> None:
    results = [
        result("answerable", refused=False, page=False, gap="shows [2] without [1]"),
        result("off_topic", refused=False),
        result("selection_answers", refused=False, isolation=("shows a book passage: 'x'",)),
        result("answerable", refused=False, page=True, problems=("[3] names no citation",)),
    ]
    setup = Setup("q.jsonl", "book", 2, 5, 0.1, len(results), "bm25", None, "extractive", 5)
    scores = [Scores("bm25", 2, 0.5, 1.0, 0.75, 5, ())]
    evaluation = Evaluation(setup, scores, score_answers(results), results)

    lines = render(evaluation)

    assert lines[0] == "q.jsonl on book"
    assert "  bm25       0.500   1.000   0.750" in lines
    assert "  off-topic refused              0/1    0.0%   topic switches 0/0" in lines
    start = lines.index("Not as expected:")
    assert [line.split(": ", 1)[1] for line in lines[start + 1 :]] == [
        "shows a book passage: 'x'",
        "[3] names no citation",
        "answered (rag), should refuse",
        "cites no expected page",
        "shows [2] without [1]",
    ]
    document = json.loads(json.dumps(evaluation.json()))
    assert document["answers"]["off_topic_refused"] == {"count": 0, "of": 1, "rate": 0.0}
    assert document["retrieval"][0]["mrr"] == 0.75
    assert document["questions"][3]["citation_problems"] == ["[3] names no citation"]


def test_the_table_splits_retrieval_by_kind_of_question() -> None:
    # A total can hide that one kind (paraphrases sharing no word with the book) is missed.
    setup = Setup("q.jsonl", "book", 2, 5, 0.1, 3, "hybrid", "minilm", "extractive", 5)
    scores = [
        Scores(
            mode,
            3,
            0.667,
            0.667,
            0.667,
            5,
            (),
            (KindScores("definition", 2, 1.0, 1.0), KindScores("paraphrase", 1, p1, pk)),
        )
        for mode, p1, pk in (("bm25", 0.0, 0.0), ("hybrid", 0.0, 1.0))
    ]
    lines = render(Evaluation(setup, scores, score_answers([]), []))

    start = lines.index("  by kind, hit@1 / hit@5")
    assert lines[start + 1].split() == ["kind", "questions", "bm25", "hybrid"]
    assert lines[start + 2].split() == ["definition", "2", *["1.000", "/", "1.000"] * 2]
    paraphrase = lines[start + 3].split()
    assert paraphrase == ["paraphrase", "1", "0.000", "/", "0.000", "0.000", "/", "1.000"]


def test_questions_without_kinds_get_no_kind_table() -> None:
    setup = Setup("q.jsonl", "book", 2, 5, 0.1, 1, "bm25", None, "extractive", 5)
    scores = [Scores("bm25", 1, 1.0, 1.0, 1.0, 5, (), (KindScores("", 1, 1.0, 1.0),))]
    lines = render(Evaluation(setup, scores, score_answers([]), []))
    assert not any("by kind" in line for line in lines)
