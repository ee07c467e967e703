"""How routes learn which book they serve: the `{book}` of `/api/v1/books/{book}/...`, or the
default book on the unscoped routes."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Path, Request

from bookchat.books.names import SLUG_PATTERN
from bookchat.books.service import BookConfig, BookService, book_not_found
from bookchat.core.metrics import BOOK_SCOPE_KEY, METRIC_BOOK
from bookchat.dependencies import ContainerDep

_SLUG = re.compile(SLUG_PATTERN)


async def get_book_service(container: ContainerDep) -> BookService:
    return container.books


BookServiceDep = Annotated[BookService, Depends(get_book_service)]


async def book_in_path(
    book: Annotated[str, Path(description="The book's slug (`bookchat books list`).")],
) -> None:
    """Declares `{book}` for the book-scoped routes (their OpenAPI parameter); `current_book`
    reads and checks it."""


async def current_book(request: Request, books: BookServiceDep) -> BookConfig:
    """The book this request is about; 404 for a slug no book has. Once known, it labels the
    request's metrics (the HTTP ones through its ASGI scope, the rest through `METRIC_BOOK`);
    an unknown slug never does."""
    slug = request.path_params.get("book")
    if slug is None:
        book = await books.default()
    elif not _SLUG.fullmatch(slug):
        raise book_not_found(slug)
    else:
        book = await books.get(slug)
    request.scope[BOOK_SCOPE_KEY] = book.slug
    METRIC_BOOK.set(book.slug)
    return book


CurrentBook = Annotated[BookConfig, Depends(current_book)]
