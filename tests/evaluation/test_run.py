"""Whole runs on a tiny book written here, where the right outcome of every question is known:
through the real container, chat service and retriever, with the offline answerer or the real
OpenAI SDK against the fake server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bookchat.chat.models import Message, MessageRole
from bookchat.container import open_container
from bookchat.evaluation.answers import ask
from bookchat.evaluation.questions import Question
from bookchat.evaluation.ranking import KindScores
from bookchat.evaluation.report import Evaluation, Tally
from bookchat.evaluation.run import run_evaluation
from tests.conftest import make_settings, openai_settings
from tests.factories import book_settings, stored
from tests.fakes.openai_server import FakeOpenAIServer

BEES = """\
---
title: Honey Bees
---

# Honey Bees

## The Waggle Dance

A forager bee that found nectar performs a waggle dance on the comb. The angle of the dance
tells the other bees the direction of the flowers, and its duration tells them the distance.
"""

TIDES = """\
---
title: Tides
---

# Tides

## Why Tides Happen

The gravity of the moon pulls the oceans into two bulges on opposite sides of the earth. As
the earth turns, a coast passes through both bulges, so most places see two high tides a day.

## Spring and Neap Tides

When the sun and the moon line up, their pulls add up and the tides are large: these are
spring tides. When they pull at right angles the tides are small, and those are neap tides.
"""

SELECTION = "Spring tides are large because the sun and the moon pull along the same line."
MOON = "The gravity of the moon pulls the oceans into two bulges on opposite sides of the earth."


@pytest.fixture
def book(tmp_path: Path) -> Path:
    folder = tmp_path / "book"
    folder.mkdir()
    (folder / "bees.md").write_text(BEES)
    (folder / "tides.md").write_text(TIDES)
    return folder


def by_id(evaluation: Evaluation) -> dict[str, Any]:
    return {result.id: result for result in evaluation.results}


async def test_the_offline_answerer_on_a_book_whose_answers_are_known(
    sqlite_url: str, book: Path
) -> None:
    questions = [
        Question(
            "dance",
            "What does the angle of the waggle dance tell the bees?",
            ("bees.md",),
            section="The Waggle Dance",
        ),
        Question("neap", "What are neap tides?", ("tides.md",), section="Spring and Neap Tides"),
        Question("faucet", "How do I fix a leaking faucet?", refuse=True),
        Question("spring", "Why are spring tides large?", selection=SELECTION),
    ]

    evaluation = await run_evaluation(
        make_settings(sqlite_url), questions, book, base_url="https://e.org/book"
    )

    [bm25] = evaluation.retrieval
    assert (bm25.mode, bm25.questions, bm25.hit_at_1, bm25.mrr) == ("bm25", 2, 1.0, 1.0)
    assert bm25.kinds == (KindScores("", 2, 1.0, 1.0),)
    assert (evaluation.setup.documents, evaluation.setup.model) == (2, "extractive")
    scores = evaluation.answers
    assert scores.answerable_refused == Tally(0, 2)
    assert scores.expected_page_cited == Tally(2, 2)
    # The links land on the headings asked about, not on the section before them.
    assert scores.expected_section_cited == Tally(2, 2)
    assert scores.off_topic_refused == Tally(1, 1)
    assert scores.refusal_precision == scores.refusal_recall == 1.0
    assert scores.citations_valid == Tally(3, 3)
    assert scores.selections_isolated == Tally(1, 1)
    assert scores.selections_declined == Tally(0, 1)
    assert scores.latency_p50_ms is not None
    results = by_id(evaluation)
    assert results["faucet"].mode == "no_context"
    assert (results["spring"].mode, results["spring"].shown) == ("selected_text", (1,))
    assert "sun and the moon" in results["spring"].response
    assert "neap" in results["neap"].response
    assert results["neap"].cited == ("tides.md > Spring and Neap Tides",)


async def test_what_a_language_model_says_about_a_selection_is_checked(
    sqlite_url: str, book: Path, fake_openai: FakeOpenAIServer
) -> None:
    def reply(request: dict[str, Any]) -> str:
        conversation = json.dumps(request["messages"])
        if "Why are spring tides large?" in conversation:
            return f"{MOON} [1]"  # from the book, not from the selection
        return "The selected text does not say how to fix a faucet."

    fake_openai.reply = reply
    settings = make_settings(sqlite_url, **openai_settings(fake_openai))
    questions = [
        Question("spring", "Why are spring tides large?", selection=SELECTION),
        Question("faucet", "How do I fix a leaking faucet?", refuse=True, selection=SELECTION),
    ]

    evaluation = await run_evaluation(settings, questions, book, base_url="https://e.org/book")

    results = by_id(evaluation)
    [problem] = results["spring"].isolation_problems
    assert problem.startswith("shows a book passage: 'the gravity of the moon pulls the oceans")
    assert not results["spring"].refused
    assert results["faucet"].refused
    assert results["faucet"].isolation_problems == ()
    scores = evaluation.answers
    assert scores.selections_isolated == Tally(1, 2)
    assert scores.selections_refused == Tally(1, 1)
    assert scores.selections_declined == Tally(0, 1)
    assert evaluation.setup.model == "gpt-4o-mini"


async def test_the_history_is_asked_first_in_the_same_conversation(sqlite_url: str) -> None:
    settings = await book_settings(sqlite_url)
    question = Question(
        "walk",
        "And when it walks?",
        ("02-motion/walking.md",),
        history=("How does a biped keep its balance?", "What is the zero moment point?"),
    )

    async with open_container(settings) as container, container.sessionmaker() as db:
        read = await ask(container.chat, db, question, await container.books.default())

    asked = await stored(
        sqlite_url,
        Message,
        session_id=read.session_id,
        role=MessageRole.USER,
        order_by=(Message.created_at,),
    )
    assert [m.content for m in asked] == [*question.history, question.question]
