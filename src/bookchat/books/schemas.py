"""Bodies of the books API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    UrlConstraints,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

from bookchat.books.names import SLUG_MAX_LENGTH, SLUG_PATTERN
from bookchat.core.ratelimit import parse_rate

Slug = Annotated[str, Field(pattern=SLUG_PATTERN, max_length=SLUG_MAX_LENGTH)]


def _valid_rate(rate: str) -> str:
    try:
        parse_rate(rate)
    except ValueError as exc:
        raise ValueError(f"{rate!r} is not a rate such as `20/minute`") from exc
    return rate


def _normalized_origins(origins: list[str]) -> list[str]:
    """As browsers send an Origin: lower case, no trailing slash; each once."""
    return list(dict.fromkeys(origin.lower().rstrip("/") for origin in origins))


# scheme://host[:port]: what a browser's `Origin` header holds (no path, query or fragment).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
ORIGIN_PATTERN = rf"^https?://{_LABEL}(?:\.{_LABEL})*(?::\d{{1,5}})?/?$"
Origin = Annotated[str, Field(max_length=300, pattern=ORIGIN_PATTERN)]


# What `limits` reads: `20/minute`, `5 per 2 hours`, `10/hour;100/day`. The pattern puts the rule
# in the schema; the validator is `limits`' own parser. `| None` outside: a length constraint on
# `str | None` fails on a `null` (a 500, not a 400).
_ONE_RATE = r"\d+\s*(?:/|per)\s*(?:\d+\s*)?(?:second|minute|hour|day|month|year)s?"
RATE_PATTERN = rf"^\s*{_ONE_RATE}\s*(?:[,;|]\s*{_ONE_RATE}\s*)*$"
# A page's URL (the base, its route and an anchor) is stored in 2,048 characters.
BaseUrl = Annotated[HttpUrl, UrlConstraints(max_length=1024)]
Rate = Annotated[str, Field(max_length=64, pattern=RATE_PATTERN), AfterValidator(_valid_rate)]
Origins = Annotated[list[Origin], Field(max_length=50), AfterValidator(_normalized_origins)]


class BookFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=500)
    base_url: BaseUrl | None = Field(
        default=None, description="Where the book is published; citations link below it."
    )
    docs_dir: str | None = Field(
        default=None,
        max_length=1024,
        description=(
            "Its docs folder on the server, for ingest: a folder inside the server's "
            "BOOK_DOCS_ROOT (a relative one is taken inside it), at most 1,024 characters once "
            "resolved there; 400 otherwise."
        ),
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
    base_url: BaseUrl = Field(description="Where the book is published; citations link below it.")


class BookUpdate(BookFields):
    """Only the fields sent change; `null` returns a field to the service's settings (not the
    title nor the site: another book's would become the default book's)."""

    # Strings in the schema, and a `null` sent is refused (400); unset, they stay as they are.
    title: Annotated[str, Field(min_length=1, max_length=500)] | SkipJsonSchema[None] = None
    base_url: (
        Annotated[
            BaseUrl, Field(description="Where the book is published; citations link below it.")
        ]
        | SkipJsonSchema[None]
    ) = None

    @field_validator("title", "base_url", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may not be null")
        return value


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
