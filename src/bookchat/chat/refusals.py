"""What is kept of a question the book does not cover, for the insights (never shown to the
reader): the nearest book section the retriever found below the relevance floor, and the
question's words in a form that rewordings share.

The insights group refused questions by the nearest section when there is one, else by this
key (docs/insights.md, "Unanswered questions").
"""

from __future__ import annotations

from typing import Any

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
