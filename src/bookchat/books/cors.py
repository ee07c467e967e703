"""Which browser origins a book's routes allow on top of CORS_ORIGINS: its own `cors_origins`
(the lookup `core/cors.ScopedCORSMiddleware` asks for)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from starlette.types import Scope

from bookchat.books.names import SLUG_PATTERN
from bookchat.core.cors import OriginsLookup
from bookchat.core.errors import NotFound

if TYPE_CHECKING:
    from bookchat.container import Container

_SLUG = re.compile(SLUG_PATTERN)


def slug_in_path(path: str, prefix: str) -> str | None:
    """The slug of `{prefix}{slug}/...`; None for any other path.

    `{prefix}{slug}` itself (the books admin API's read, change and delete) is not one of the
    book's routes: a site allowed to embed a book's chat gets no say over the book.
    """
    if not path.startswith(prefix):
        return None
    slug, slash, rest = path[len(prefix) :].partition("/")
    if not slash or not rest or not _SLUG.fullmatch(slug):
        return None
    return slug


def book_origins(prefix: str) -> OriginsLookup:
    """The origins book `slug` allows on `{prefix}{slug}/...` (read through the book service's
    short cache); none on other paths and for an unknown slug. The unscoped routes serve the
    default book but are not its routes here: they allow CORS_ORIGINS alone."""

    async def lookup(scope: Scope) -> tuple[str, ...]:
        slug = slug_in_path(scope["path"], prefix)
        if slug is None:
            return ()
        container: Container | None = getattr(scope["app"].state, "container", None)
        if container is None:  # no lifespan yet: nothing to read the book from
            return ()
        try:
            book = await container.books.get(slug)
        except NotFound:  # the route answers 404, under the global policy
            return ()
        return book.cors_origins

    return lookup
