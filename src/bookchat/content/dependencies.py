"""How the content routes reach the content service the lifespan built."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from bookchat.accounts.dependencies import get_optional_user
from bookchat.accounts.models import User
from bookchat.content.service import ContentService
from bookchat.core.config import Settings
from bookchat.core.errors import ValidationFailed
from bookchat.core.ratelimit import request_identity
from bookchat.dependencies import ContainerDep, rate_limited
from bookchat.providers.terms import content_terms


async def get_content_service(container: ContainerDep) -> ContentService:
    """The book's content service (documents, search, ingestion jobs)."""
    return container.content


ContentServiceDep = Annotated[ContentService, Depends(get_content_service)]


# Counted per signed-in reader, else per client address, like chat.
SEARCH_RATE_LIMIT = Depends(
    rate_limited("search", lambda _, book: book.rate_limit_search, after=get_optional_user)
)


async def search_client(
    request: Request,
    container: ContainerDep,
    reader: Annotated[User | None, Depends(get_optional_user)],
) -> str:
    """Who is searching, for their share of the concurrent searches: the signed-in reader,
    else the client address (as the rate limit counts them)."""
    return request_identity(request, container.limiter, reader)


SearchClient = Annotated[str, Depends(search_client)]


def check_search_terms(q: str, settings: Settings) -> None:
    """400 when the query has more distinct search terms than MAX_SEARCH_TERMS.

    Refused rather than cut: a cut query would silently search for something else. What
    counts is what BM25 matches on (stop words and repeats do not count), since each distinct
    term is one more posting list to score."""
    terms = len(set(content_terms(q)))
    limit = settings.max_search_terms
    if terms > limit:
        raise ValidationFailed(
            f"q has {terms} search terms; at most {limit} are allowed (stop words and repeats "
            "do not count)",
            details=[
                {"loc": ["query", "q"], "msg": f"at most {limit} search terms", "type": "too_long"}
            ],
        )
