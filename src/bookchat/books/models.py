"""The `books` table: the tenant every document, chat session and ingestion job belongs to."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bookchat.books.names import DEFAULT_BOOK, SLUG_MAX_LENGTH
from bookchat.core.db import Base, UTCDateTime, utcnow

# The longest docs folder path a book stores.
DOCS_DIR_CHARS = 1024


class Book(Base):
    """A book and its own settings. NULL means "as the service's settings say": the default book
    is stored with all of them NULL, so `BOOK_TITLE`, `BOOK_BASE_URL`... keep configuring it."""

    __tablename__ = "books"

    slug: Mapped[str] = mapped_column(String(SLUG_MAX_LENGTH), primary_key=True)
    title: Mapped[str | None] = mapped_column(String(500))
    base_url: Mapped[str | None] = mapped_column(String(2048))
    docs_dir: Mapped[str | None] = mapped_column(String(DOCS_DIR_CHARS))
    # Added to the assistant's rules for this book (tone, audience); never replaces them.
    persona: Mapped[str | None] = mapped_column(Text)
    # Browser origins allowed to call this book's routes, on top of CORS_ORIGINS.
    cors_origins: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Per-reader rates for this book's chat and search (`20/minute`); NULL: RATE_LIMIT_*.
    rate_limit_chat: Mapped[str | None] = mapped_column(String(64))
    rate_limit_search: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


def book_column(*, index: bool = True) -> Mapped[str]:
    """The book a row belongs to; deleting the book deletes the row."""
    return mapped_column(
        String(SLUG_MAX_LENGTH),
        ForeignKey("books.slug", ondelete="CASCADE"),
        default=DEFAULT_BOOK,
        server_default=DEFAULT_BOOK,
        index=index,
    )
