"""Markers in answers: known ones become cited sources, unknown ones disappear."""

from __future__ import annotations

from bookchat.chat.citations import resolve_citations, snippet
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


def test_known_markers_are_cited_unknown_removed() -> None:
    text, citations = resolve_citations("Publishers send [1]. Buses [2, 7]. Ghost [9].", SOURCES)

    assert text == "Publishers send [1]. Buses [2]. Ghost."
    assert [(c.index, c.cited) for c in citations] == [(1, True), (2, True)]
    assert citations[0].page_url == "https://b.example/nodes#publishers"
    assert citations[0].section == "Publishers"


def test_uncited_sources_are_listed_but_not_flagged() -> None:
    _, citations = resolve_citations("No markers here.", SOURCES)
    assert [c.cited for c in citations] == [False, False]


def test_snippet_is_short_and_on_a_word_boundary() -> None:
    long = "word " * 200
    short = snippet(long, limit=50)
    assert len(short) <= 51
    assert short.endswith("…")
    assert not short[:-1].endswith(" ")
