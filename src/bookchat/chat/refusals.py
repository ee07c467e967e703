"""What is kept of a question the book does not answer, for the insights (never shown to the
reader): the nearest book section, and the question's words in a form that rewordings share.

A question goes unanswered two ways: the relevance gate refuses it (a `no_context` answer; its
nearest section is the retriever's best passage below the relevance floor), or the model is
given passages and cites none of them (it says the book does not cover the question; its
nearest section is the best passage it was given). The insights group both by the nearest
section when there is one, else by the key (docs/insights.md, "Unanswered questions").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bookchat.chat.models import MessageStatus
from bookchat.chat.schemas import ChatMode, Citation
from bookchat.providers.base import Source
from bookchat.providers.terms import content_terms, words

# Room for a long question's distinct stemmed words; longer keys are cut (the column's size).
QUESTION_KEY_CHARS = 500


def question_key(question: str) -> str:
    """The question's distinct content words, stemmed and sorted: "What is the capital of
    France?" and "france's capital?" share `capit franc`. A question of stop words only
    ("why?") keeps its words as written, lower-cased."""
    terms = sorted(set(content_terms(question))) or words(question)
    return " ".join(terms)[:QUESTION_KEY_CHARS]


def nearest_section(source: Source | None) -> dict[str, Any] | None:
    """The section as the insights show it: page title, heading and the URL with its anchor."""
    if source is None or not source.page_url:
        return None
    return {"title": source.title, "heading": source.section or None, "url": source.page_url}


def cites_nothing(mode: ChatMode, status: MessageStatus, citations: Sequence[Citation]) -> bool:
    """Whether a whole answer from the book's passages cites none of them: the model found
    nothing there to answer with. (An answer cut short may simply not have got to its citations;
    a selection is its own source.)"""
    return (
        mode == "rag"
        and status is MessageStatus.COMPLETE
        and bool(citations)
        and not any(citation.cited for citation in citations)
    )
