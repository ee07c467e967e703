"""The checks of one answer, on answers built by hand: the chat path itself never shows a
marker without a source (it drops them), so these violations can only be staged here."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from bookchat.chat.citations import snippet
from bookchat.chat.schemas import ChatMode, ChatRead, Citation, UsageRead
from bookchat.evaluation.checks import (
    BookText,
    Passage,
    check_answer,
    normalise,
    says_selection_does_not_answer,
)
from bookchat.providers.extractive import NOTHING_QUOTABLE_ANSWER

DANCE = (
    "A forager that found nectar performs a **waggle dance** on the comb. The angle of the "
    "dance gives the direction of the flowers, and its length gives the distance."
)
SWARM = (
    "When a colony outgrows its hive, the old queen leaves with about half of the workers.\n\n"
    "The swarm:\n\n- hangs on a branch for a few hours\n- waits while scouts look for a home"
)
BOOK = BookText(
    {
        "bees/dance.md": [Passage.of(DANCE, "https://e.org/bees/dance#waggle")],
        "bees/swarm.md": [Passage.of(SWARM, "https://e.org/bees/swarm#swarming")],
    }
)
SELECTION = (
    "Scouts that found a good cavity dance for it, and the swarm flies off once enough agree."
)


def cite(index: int, text: str, path: str | None, *, cited: bool = True) -> Citation:
    page = {"bees/dance.md": "dance#waggle", "bees/swarm.md": "swarm#swarming"}.get(path or "")
    return Citation(
        index=index,
        title="Selected text" if path is None else path,
        source_path=path,
        page_url=f"https://e.org/bees/{page}" if page else None,
        snippet=snippet(text),
        cited=cited,
    )


def answer(
    response: str,
    *citations: Citation,
    mode: ChatMode = "rag",
    model: str = "extractive",
) -> ChatRead:
    return ChatRead(
        response=response,
        session_id=uuid.uuid4(),
        message_id=uuid.uuid4(),
        timestamp=datetime.now(UTC),
        mode=mode,
        model=model,
        citations=list(citations),
        usage=UsageRead(prompt_tokens=0, completion_tokens=0, total_tokens=0),
        latency_ms=7,
    )


DANCE_1 = cite(1, DANCE, "bees/dance.md")
ANGLE = (
    "The angle of the dance gives the direction of the flowers, and its length gives the distance."
)
SWARM_2 = cite(2, SWARM, "bees/swarm.md")


class TestCitations:
    def test_quotes_with_their_markers_pass(self) -> None:
        read = answer(
            "The angle of the dance gives the direction of the flowers, and its length gives "
            "the distance. [1] When a colony outgrows its hive, the old queen leaves with about "
            "half of the workers. [2]",
            DANCE_1,
            SWARM_2,
        )
        check = check_answer(read, BOOK, selection=None)
        assert check.citation_problems == ()
        assert check.shown == (1, 2)
        assert check.gap is None
        assert not check.refused

    def test_brackets_in_code_are_code_not_markers(self) -> None:
        code = "```python\nfirst = hives[0]\n```"
        book = BookText({"bees/code.md": [Passage.of(code, "https://e.org/bees/code#x")]})
        quoted = cite(1, code, "bees/code.md")
        read = answer(f"{code} [1] Use `hives[0]` [1]", quoted)
        check = check_answer(read, book, selection=None)
        assert check.shown == (1,)
        assert not any("[0]" in problem for problem in check.citation_problems)

    def test_the_answerers_own_words_are_not_quotes(self) -> None:
        read = answer(f"{NOTHING_QUOTABLE_ANSWER} [1]", DANCE_1)
        assert check_answer(read, BOOK, selection=None).citation_problems == ()

    def test_a_marker_without_a_citation(self) -> None:
        read = answer(f"{ANGLE} [1][3]", DANCE_1)
        assert check_answer(read, BOOK, selection=None).citation_problems == (
            "[3] names no citation",
        )

    def test_cited_flags_must_match_the_markers(self) -> None:
        read = answer(
            f"{ANGLE} [1]",
            cite(1, DANCE, "bees/dance.md", cited=False),
            SWARM_2,
        )
        assert check_answer(read, BOOK, selection=None).citation_problems == (
            "[1] is shown but its citation is not marked cited",
            "citation 2 is marked cited but [n] is never shown",
        )

    def test_a_cited_source_that_was_never_given(self) -> None:
        invented = cite(1, "Bees vote by humming in the dark.", "bees/dance.md")
        read = answer("Bees vote by humming in the dark. [1]", invented, model="gpt-4o-mini")
        assert check_answer(read, BOOK, selection=None).citation_problems == (
            "[1] (bees/dance.md) is not a source that was given",
        )

    def test_an_extractive_sentence_that_is_not_in_its_source(self) -> None:
        read = answer(f"{ANGLE} Bees sing at dawn. [1]", DANCE_1)
        assert check_answer(read, BOOK, selection=None).citation_problems == (
            "quote not in its source [1]: 'bees sing at dawn.'",
        )

    def test_a_quote_credited_to_the_wrong_source(self) -> None:
        read = answer(
            "When a colony outgrows its hive, the old queen leaves with about half of the "
            "workers. [1]",
            DANCE_1,
        )
        [problem] = check_answer(read, BOOK, selection=None).citation_problems
        assert problem.startswith("quote not in its source [1]: 'when a colony outgrows")

    def test_a_language_model_may_paraphrase(self) -> None:
        read = answer("Bees point the way with a dance. [1]", DANCE_1, model="gpt-4o-mini")
        assert check_answer(read, BOOK, selection=None).citation_problems == ()

    def test_markup_and_joined_list_items_still_count_as_quotes(self) -> None:
        read = answer(
            "A forager that found nectar performs a waggle dance on the comb. [1] "
            "hangs on a branch for a few hours waits while scouts look for a home [2]",
            DANCE_1,
            SWARM_2,
        )
        assert check_answer(read, BOOK, selection=None).citation_problems == ()

    def test_a_refusal_cites_nothing(self) -> None:
        read = answer("I couldn't find this in the book.", mode="no_context", model="none")
        check = check_answer(read, BOOK, selection=None)
        assert check.refused
        assert check.citation_problems == ()
        assert check.shown == ()

    def test_a_model_answer_that_cites_none_of_its_passages_is_a_refusal(self) -> None:
        # The reader got no answer from the book: the model found nothing in what it was given.
        declined = answer(
            "The book does not say how bees choose a queen.",
            cite(1, DANCE, "bees/dance.md", cited=False),
            model="gpt-4o-mini",
        )
        used = answer("Foragers dance. [1]", DANCE_1, model="gpt-4o-mini")
        assert check_answer(declined, BOOK, selection=None).refused
        assert not check_answer(used, BOOK, selection=None).refused


class TestGaps:
    @pytest.mark.parametrize(
        ("response", "gap"),
        [
            ("Dance. [1] Swarm. [2]", None),
            ("Swarm. [2] Dance. [1]", None),
            ("Swarm. [2]", "shows [2] without [1]"),
            ("Dance. [1] Swarm. [3]", "shows [3] without [2]"),
            ("Dance and swarm. [1, 4]", "shows [4] without [2]"),
        ],
    )
    def test_a_reader_never_sees_a_number_without_those_before_it(
        self, response: str, gap: str | None
    ) -> None:
        citations = [cite(n, DANCE, "bees/dance.md", cited=True) for n in (1, 2, 3, 4)]
        read = answer(response, *citations, model="gpt-4o-mini")
        assert check_answer(read, BOOK, selection=None).gap == gap


class TestSelections:
    def test_an_answer_from_the_selection_alone_is_isolated(self) -> None:
        read = answer(
            "Scouts that found a good cavity dance for it, and the swarm flies off once enough "
            "agree. [1]",
            cite(1, SELECTION, None),
            mode="selected_text",
        )
        check = check_answer(read, BOOK, selection=SELECTION)
        assert check.isolation_problems == ()
        assert check.citation_problems == ()
        assert not check.refused

    def test_a_book_passage_in_a_selection_answer(self) -> None:
        read = answer(
            "The angle of the dance gives the direction of the flowers, and its length gives "
            "the distance. [1]",
            cite(1, SELECTION, None),
            mode="selected_text",
            model="gpt-4o-mini",
        )
        check = check_answer(read, BOOK, selection=SELECTION)
        assert check.isolation_problems == (
            "shows a book passage: 'the angle of the dance gives the direction of the flowers, "
            "and its length gives…'",
        )

    def test_a_selection_answer_that_cites_the_book(self) -> None:
        read = answer(
            "A forager that found nectar performs a waggle dance on the comb. [1]",
            DANCE_1,
            mode="rag",
        )
        check = check_answer(read, BOOK, selection=SELECTION)
        assert check.isolation_problems[:2] == (
            "answered from the book, not from the selection",
            "citation 1 (bees/dance.md) is not the selection",
        )

    @pytest.mark.parametrize(
        "response",
        [
            "The selected text does not say how much a hive costs.",
            "I can't answer that from the selection. [1]",
            "Nothing in the passage you selected answers this.",
            "That isn't covered by the selected passage.",
            "This passage doesn't say when the swarm leaves.",
        ],
    )
    def test_saying_the_selection_does_not_answer_is_a_refusal(self, response: str) -> None:
        assert says_selection_does_not_answer(response, SELECTION)
        read = answer(response, cite(1, SELECTION, None), mode="selected_text")
        assert check_answer(read, BOOK, selection=SELECTION).refused

    @pytest.mark.parametrize(
        ("response", "selection"),
        [
            ("Scouts dance for a good cavity. [1]", SELECTION),
            # A quote of the selection is the selection talking, not the answer.
            (
                "The selection is not final until enough scouts agree. [1]",
                "The selection is not final until enough scouts agree.",
            ),
            ("The book does not cover this.", SELECTION),
        ],
    )
    def test_other_answers_are_not_refusals(self, response: str, selection: str) -> None:
        assert not says_selection_does_not_answer(response, selection)


def test_normalise_drops_markup_and_spacing_on_both_sides() -> None:
    markdown = (
        "## Heading\n\n- The **waggle**  _dance_ uses `angle_of_sun`;\n"
        "  see [the comb](https://e.org/comb) and <b>bees</b>.\n```python\nx = 1\n```\n"
        ":::tip\nRead “slowly”.\n:::\n| a | b |"
    )
    # Headings and table cells are text a reader sees too.
    assert normalise(markdown) == (
        'heading the waggle dance uses angle_of_sun; see the comb and bees. x = 1 read "slowly".'
        " a | b"
    )
