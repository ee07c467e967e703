"""Markers in answers as the reader sees them: cited sources numbered [1]..[n] in order of first
use, unknown markers removed, code left alone; the same text whether the answer arrives in one
piece or in chunks."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bookchat.chat.citations import MARKER_MAX_CHARS, Renumbering, resolve_citations, snippet
from bookchat.providers.base import Source

SOURCES = [
    Source(
        index=1,
        title="Nodes",
        section="Publishers",
        text="A publisher sends messages.",
        page_url="https://b.example/nodes#publishers",
        source_path="nodes.md",
        score=0.9,
    ),
    Source(index=2, title="Topics", text="Topics are named buses."),
]
FIVE = [Source(index=n, title=f"Source {n}", text=f"Passage {n}.") for n in range(1, 6)]


def streamed(text: str, cuts: list[int], sources: list[Source] = FIVE) -> list[str]:
    """What a stream shows when the model's text arrives cut at these offsets."""
    renumbering = Renumbering(sources)
    bounds = [0, *sorted(cuts), len(text)]
    shown = [renumbering.feed(text[start:end]) for start, end in pairwise(bounds)]
    return [*shown, renumbering.close()]


def test_known_markers_are_cited_unknown_removed() -> None:
    answer = resolve_citations("Publishers send [1]. Buses [2, 7]. Ghost [9].", SOURCES)

    assert answer.text == "Publishers send [1]. Buses [2]. Ghost."
    assert [(c.index, c.cited) for c in answer.citations] == [(1, True), (2, True)]
    assert answer.citations[0].page_url == "https://b.example/nodes#publishers"
    assert answer.citations[0].section == "Publishers"


def test_uncited_sources_are_listed_but_not_flagged() -> None:
    answer = resolve_citations("No markers here.", SOURCES)
    assert [(c.index, c.cited) for c in answer.citations] == [(1, False), (2, False)]


def test_cited_sources_are_numbered_in_order_of_first_use() -> None:
    answer = resolve_citations("A [3]. B [1][3]. C [7].", FIVE)

    assert answer.text == "A [1]. B [2][1]. C."
    assert [(c.index, c.title, c.cited) for c in answer.citations] == [
        (1, "Source 3", True),
        (2, "Source 1", True),
        (3, "Source 2", False),
        (4, "Source 4", False),
        (5, "Source 5", False),
    ]
    assert [(s.index, s.title) for s in answer.sources] == [
        (1, "Source 3"),
        (2, "Source 1"),
        (3, "Source 2"),
        (4, "Source 4"),
        (5, "Source 5"),
    ]
    assert answer.citations[0].snippet == "Passage 3."


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("X [2, 4]. Y [4,2].", "X [1][2]. Y [2][1]."),
        ("X [4, 9]. Y [3, 3].", "X [1]. Y [2]."),
        ("X [9, 0]. Y [5].", "X. Y [1]."),
        ("[9] Starts with a ghost.", "Starts with a ghost."),
        ("Ends with a ghost [9]", "Ends with a ghost"),
        ("One.\n\n[9] Two [4].", "One.\n\nTwo [1]."),
        ("One.[9] Two.", "One. Two."),
        ("  Padded [2].  \n", "Padded [1]."),
        ("Leaves [see above], [1a], [1234], [ 2], [], [[ and [2 as they are.", None),
    ],
)
def test_marker_forms(text: str, shown: str | None) -> None:
    assert resolve_citations(text, FIVE).text == (text if shown is None else shown)


def test_code_is_never_renumbered() -> None:
    text = (
        "Read `argv[2]` and `data[0]` first [4].\n\n"
        "```python\nfirst = msg.data[0]  # [4]\nsecond = msg.data[2]\n```\n\n"
        "Then ``a[2]`` [2]. A lone ` opens code to the end of its line [4]\n"
        "and prose is back [4].\n"
        "~~~\n[9]\n~~~\n"
    )
    answer = resolve_citations(text, FIVE)

    assert answer.text == (
        "Read `argv[2]` and `data[0]` first [1].\n\n"
        "```python\nfirst = msg.data[0]  # [4]\nsecond = msg.data[2]\n```\n\n"
        "Then ``a[2]`` [2]. A lone ` opens code to the end of its line [4]\n"
        "and prose is back [1].\n"
        "~~~\n[9]\n~~~"
    )
    assert [c.title for c in answer.citations if c.cited] == ["Source 4", "Source 2"]


def test_no_sources_means_no_citations_and_no_markers() -> None:
    answer = resolve_citations("Not in the book [1].", [])
    assert (answer.text, answer.citations, answer.sources) == ("Not in the book.", [], [])


def test_renumbering_a_renumbered_answer_changes_nothing() -> None:
    first = resolve_citations("A [3]. B [1][3], [2, 5]. C [7]. `x[4]`", FIVE)
    again = resolve_citations(first.text, first.sources)

    assert again.text == first.text == "A [1]. B [2][1], [3][4]. C. `x[4]`"
    assert again.citations == first.citations
    assert again.sources == first.sources


class TestStreaming:
    def test_a_marker_cut_in_two_is_held_until_it_closes(self) -> None:
        assert streamed("A [3]. B [1][3]. C [7].", [3, 4]) == [
            "A",
            "",
            " [1]. B [2][1]. C.",
            "",
        ]

    def test_text_that_cannot_be_a_marker_is_shown_at_once(self) -> None:
        renumbering = Renumbering(FIVE)
        assert renumbering.feed("Use array[") == "Use array"
        assert renumbering.feed("0] or [see") == " or [see"
        assert renumbering.feed(" above] [2") == " above]"
        assert renumbering.feed("]") == " [1]"
        assert renumbering.close() == ""
        assert renumbering.answer().text == "Use array or [see above] [1]"

    def test_the_hold_is_bounded(self) -> None:
        group = "[" + "1," * MARKER_MAX_CHARS
        renumbering = Renumbering(FIVE)
        assert renumbering.feed(group) == group
        assert renumbering.feed("2]") == "2]"

    def test_an_answer_that_ends_inside_a_marker_keeps_the_fragment_as_text(self) -> None:
        assert streamed("Ends at [2", [8]) == ["Ends at", "", " [2"]

    def test_an_answer_cut_off_drops_the_fragment_nobody_saw(self) -> None:
        renumbering = Renumbering(FIVE)
        shown = [renumbering.feed("Cut [3] off at "), renumbering.feed("[2")]
        assert [*shown, renumbering.close(complete=False)] == ["Cut [1] off at", "", ""]
        assert renumbering.answer().text == "Cut [1] off at"
        assert [c.cited for c in renumbering.answer().citations] == [True] + [False] * 4

    @pytest.mark.parametrize(
        "text",
        [
            "A [3]. B [1][3]. C [7].",
            "Read `argv[2]` then [2, 3].\n```\nx[1]\n```\n[9] done [1]",
            "array[0] or [see above] [12] [1, 44] [3,3]\n\n[9]\tEnd [5]  ",
        ],
    )
    def test_every_cut_shows_the_same_answer(self, text: str) -> None:
        whole = resolve_citations(text, FIVE).text
        for cut in range(len(text) + 1):
            assert "".join(streamed(text, [cut])) == whole, cut
        assert "".join(streamed(text, list(range(1, len(text))))) == whole

    @settings(max_examples=300, deadline=None)
    @given(
        pieces=st.lists(
            st.sampled_from(
                ["[", "]", "1", "3", "9", "12", ",", " ", "\n", "`", "```", "~~~", "a", "x["]
            ),
            max_size=40,
        ),
        cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
    )
    def test_chunks_never_change_the_answer(self, pieces: list[str], cuts: list[int]) -> None:
        text = "".join(pieces)
        cuts = [cut for cut in cuts if cut <= len(text)]
        assert "".join(streamed(text, cuts)) == resolve_citations(text, FIVE).text


def test_snippet_is_short_and_on_a_word_boundary() -> None:
    long = "word " * 200
    short = snippet(long, limit=50)
    assert len(short) <= 51
    assert short.endswith("…")
    assert not short[:-1].endswith(" ")
