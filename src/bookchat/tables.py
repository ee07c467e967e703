"""Import every domain's tables so `Base.metadata` knows them all (Alembic, tests)."""

from __future__ import annotations


def load_all_tables() -> None:
    """Register every ORM table on `core.db.Base.metadata` (a new domain's `models` goes here)."""
    import bookchat.accounts.models
    import bookchat.books.models
    import bookchat.chapters.models
    import bookchat.chat.models
    import bookchat.content.models  # noqa: F401
