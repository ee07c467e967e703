"""Bodies of the books API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl

from bookchat.books.names import SLUG_MAX_LENGTH, SLUG_PATTERN
from bookchat.core.ratelimit import parse_rate

Slug = Annotated[str, Field(pattern=SLUG_PATTERN, max_length=SLUG_MAX_LENGTH)]


def _valid_rate(rate: str) -> str:
    try:
        parse_rate(rate)
    except ValueError as exc:
        raise ValueError(f"{rate!r} is not a rate such as `20/minute`") from exc
    return rate


def _valid_origins(origins: list[str]) -> list[str]:
    for origin in origins:
        url = HttpUrl(origin)
        if url.path not in (None, "", "/") or url.query or url.fragment:
            raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], no path)")
    return [origin.rstrip("/") for origin in origins]


# `| None` outside: a length constraint on `str | None` fails on a `null` (a 500, not a 400).
Rate = Annotated[str, AfterValidator(_valid_rate), Field(max_length=64)]
Origins = Annotated[list[str], AfterValidator(_valid_origins), Field(max_length=50)]


class BookFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=500)
    base_url: HttpUrl | None = Field(
        default=None, description="Where the book is published; citations link below it."
    )
    docs_dir: str | None = Field(
        default=None, max_length=1024, description="Its docs folder on the server, for ingest."
    )
    persona: str | None = Field(
        default=None,
        max_length=2000,
        description="Added to the assistant's rules for this book (tone, audience).",
    )
    cors_origins: Origins | None = Field(
        default=None,
        description="Browser origins allowed on this book's routes (and CORS_ORIGINS).",
    )
    rate_limit_chat: Rate | None = Field(
        default=None, description="e.g. `20/minute`; RATE_LIMIT_CHAT else."
    )
    rate_limit_search: Rate | None = Field(
        default=None, description="e.g. `60/minute`; RATE_LIMIT_SEARCH else."
    )


class BookCreate(BookFields):
    slug: Slug = Field(description="The book's name in URLs: `/api/v1/books/{slug}/chat`.")
    title: str = Field(min_length=1, max_length=500)
    base_url: HttpUrl = Field(description="Where the book is published; citations link below it.")


class BookUpdate(BookFields):
    """Only the fields sent change; `null` returns a field to the service's settings."""


class BookRead(BaseModel):
    slug: str
    title: str
    base_url: str
    docs_dir: str | None
    persona: str | None
    cors_origins: list[str]
    rate_limit_chat: str
    rate_limit_search: str
    created_at: datetime
    updated_at: datetime


class BookPage(BaseModel):
    items: list[BookRead]
    total: int
    limit: int
    offset: int
