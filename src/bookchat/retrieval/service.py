"""Finding the passages of the book that answer a question.

This is the seam the chat flow calls. Until the book index exists (the ingestion work), the
only retriever is `NoBookIndex`, which finds nothing, and answers say so honestly.
"""

from __future__ import annotations

from typing import Protocol

from bookchat.providers.base import Source


class Retriever(Protocol):
    async def retrieve(
        self, query: str, *, limit: int = 5, page_context: str | None = None
    ) -> list[Source]:
        """The best passages for the query, numbered from 1, best first."""
        ...


class NoBookIndex:
    """The retriever of a service with no book indexed: it never finds a passage."""

    name = "none"

    async def retrieve(
        self, query: str, *, limit: int = 5, page_context: str | None = None
    ) -> list[Source]:
        return []
