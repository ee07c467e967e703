"""How the demo site's routes reach the book's pages the lifespan built."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from bookchat.dependencies import ContainerDep
from bookchat.web.service import BookPages


async def get_book_pages(container: ContainerDep) -> BookPages:
    """The book's chapters and their rendered HTML (one render cache per app)."""
    return container.book_pages


BookPagesDep = Annotated[BookPages, Depends(get_book_pages)]
