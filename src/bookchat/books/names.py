"""How books are named, kept free of heavy imports (the index and the CLI read it)."""

from __future__ import annotations

# The book of a deployment that never named one: the unscoped routes (`/api/v1/chat`...) serve
# it, and a database from before books existed holds it alone.
DEFAULT_BOOK = "default"
# Lowercase letters, digits and inner dashes: a slug is a URL path segment and a cache key part.
SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
SLUG_MAX_LENGTH = 64


def index_version(book: str) -> str:
    """The cache namespace bumped when `book`'s content changes (the default book keeps the name
    it had before books existed, so an upgrade invalidates nothing)."""
    return "index" if book == DEFAULT_BOOK else f"index:{book}"
