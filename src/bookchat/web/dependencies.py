"""How the demo site's routes reach the book's pages the lifespan built, and which book a
`/book/...` page belongs to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from bookchat.books.dependencies import BookServiceDep
from bookchat.books.names import DEFAULT_BOOK, SLUG_PATTERN
from bookchat.books.service import BookConfig
from bookchat.core.errors import NotFound
from bookchat.dependencies import ContainerDep
from bookchat.web.service import BookPages

_SLUG = re.compile(SLUG_PATTERN)


async def get_book_pages(container: ContainerDep) -> BookPages:
    """The book's chapters and their rendered HTML (one render cache per app)."""
    return container.book_pages


BookPagesDep = Annotated[BookPages, Depends(get_book_pages)]


@dataclass(frozen=True, slots=True)
class DemoPage:
    """What a `/book/...` address shows: a chapter route of `book`, or None for the book's
    home page (its first chapter)."""

    book: BookConfig
    route: str | None


async def demo_page(request: Request, books: BookServiceDep) -> DemoPage:
    """`/book/{slug}/{route}` is a page of book `slug` when a book has that slug; any other
    `/book/{route}` is a chapter of the default book, as before books existed.

    Where both could be meant (a book's slug is also the first segment of a default-book chapter
    route, `/book/ros2/...` with a book `ros2`), the book wins: the default book's chapter is then
    out of the demo's reach, while the book would otherwise have no pages at all.
    """
    route: str = request.path_params.get("route", "")
    head, _, rest = route.strip("/").partition("/")
    if head != DEFAULT_BOOK and _SLUG.fullmatch(head):
        try:
            book = await books.get(head)
        except NotFound:
            pass
        else:
            return DemoPage(book, rest or None)
    return DemoPage(await books.default(), route)


DemoPageDep = Annotated[DemoPage, Depends(demo_page)]
