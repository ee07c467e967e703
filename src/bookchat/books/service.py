"""The books a deployment serves: their settings as every request reads them, and their
creation, changes and deletion (admin API and `bookchat books`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookchat.books.models import Book
from bookchat.books.names import DEFAULT_BOOK, index_version
from bookchat.core.config import Settings
from bookchat.core.errors import Conflict, NotFound

if TYPE_CHECKING:
    # Types only: the schemas' rate check loads the web stack, which the CLI's no-model
    # ingest path (BookConfig) must not (tests/test_startup.py).
    from bookchat.books.schemas import BookCreate, BookUpdate
    from bookchat.core.cache import Cache
    from bookchat.retrieval.index import QdrantIndex
    from bookchat.retrieval.lexical import BookLexicon

logger = structlog.get_logger(__name__)

# How long a process trusts the books it read: a change made through another replica reaches
# this one's requests within this time (this replica's own changes at once).
BOOKS_TTL_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class BookConfig:
    """A book as requests use it: its own settings, or the service's where it has none."""

    slug: str
    title: str
    base_url: str
    docs_dir: str | None
    persona: str | None
    cors_origins: tuple[str, ...]
    rate_limit_chat: str
    rate_limit_search: str

    @classmethod
    def of(cls, book: Book | None, settings: Settings) -> BookConfig:
        """`book`'s settings over the service's; the default book's when `book` is None (a
        database not yet migrated to books)."""
        if book is None:
            book = Book(slug=DEFAULT_BOOK, cors_origins=[])
        default = book.slug == DEFAULT_BOOK
        return cls(
            slug=book.slug,
            title=book.title or settings.book_title,
            base_url=book.base_url or settings.book_base_url,
            docs_dir=book.docs_dir or (settings.book_docs_dir if default else None),
            persona=book.persona,
            cors_origins=tuple(book.cors_origins or ()),
            rate_limit_chat=book.rate_limit_chat or settings.rate_limit_chat,
            rate_limit_search=book.rate_limit_search or settings.rate_limit_search,
        )

    @property
    def index_version(self) -> str:
        return index_version(self.slug)


def book_not_found(slug: str) -> NotFound:
    return NotFound(f"There is no book {slug!r} here.")


class BookService:
    """Reads books through a short in-process cache (a request must not cost a query for its
    book) and changes them in the database, which every replica reads."""

    def __init__(
        self,
        *,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        index: QdrantIndex,
        lexicon: BookLexicon,
        cache: Cache,
        ttl_seconds: float = BOOKS_TTL_SECONDS,
    ) -> None:
        self._settings = settings
        self._sessionmaker = sessionmaker
        self._index = index
        self._lexicon = lexicon
        self._cache = cache
        self._ttl = ttl_seconds
        self._known: dict[str, tuple[BookConfig | None, float]] = {}

    async def get(self, slug: str) -> BookConfig:
        """The book `slug`; 404 when there is none."""
        found, at = self._known.get(slug, (None, -self._ttl))
        if time.monotonic() - at >= self._ttl:
            async with self._sessionmaker() as db:
                row = await db.get(Book, slug)
            if row is None and slug == DEFAULT_BOOK:
                found = BookConfig.of(None, self._settings)
            else:
                found = BookConfig.of(row, self._settings) if row is not None else None
            if len(self._known) > 10_000:  # unknown slugs must not grow this without bound
                self._known.clear()
            self._known[slug] = (found, time.monotonic())
        if found is None:
            raise book_not_found(slug)
        return found

    async def default(self) -> BookConfig:
        return await self.get(DEFAULT_BOOK)

    def forget(self, slug: str) -> None:
        """Read `slug` again on its next use (it changed here)."""
        self._known.pop(slug, None)

    async def list(
        self, db: AsyncSession, *, limit: int = 50, offset: int = 0
    ) -> tuple[list[tuple[Book, BookConfig]], int]:
        """A page of books by slug, and how many there are."""
        total = (await db.execute(select(func.count()).select_from(Book))).scalar_one()
        rows = (
            await db.scalars(select(Book).order_by(Book.slug).limit(limit).offset(offset))
        ).all()
        return [(row, BookConfig.of(row, self._settings)) for row in rows], total

    async def read(self, db: AsyncSession, slug: str) -> tuple[Book, BookConfig]:
        row = await db.get(Book, slug)
        if row is None:
            raise book_not_found(slug)
        return row, BookConfig.of(row, self._settings)

    async def create(self, db: AsyncSession, payload: BookCreate) -> tuple[Book, BookConfig]:
        """Add a book (409 when the slug is taken). It starts empty: points a deleted book of
        the same slug got after its deletion (an ingestion still running then) are removed."""
        fields = payload.model_dump(mode="json", exclude_none=True)
        row = Book(**{"cors_origins": [], **fields})
        db.add(row)
        try:
            await db.commit()
        except IntegrityError as exc:
            await db.rollback()
            raise Conflict(f"A book {payload.slug!r} already exists.") from exc
        await self._index.delete_book(row.slug)
        await self._cache.bump(index_version(row.slug))
        self._lexicon.forget(row.slug)
        self.forget(row.slug)
        logger.info("books.created", book=row.slug)
        return row, BookConfig.of(row, self._settings)

    async def update(
        self, db: AsyncSession, slug: str, payload: BookUpdate
    ) -> tuple[Book, BookConfig]:
        """Change the fields sent; a `null` returns one to the service's settings (the schema
        refuses it for the title and the site)."""
        row = await db.get(Book, slug)
        if row is None:
            raise book_not_found(slug)
        for name, value in payload.model_dump(mode="json", exclude_unset=True).items():
            setattr(row, name, [] if name == "cors_origins" and value is None else value)
        await db.commit()
        # Its title and persona are in its answers: the cached ones were written with the old.
        await self._cache.bump(index_version(slug))
        self.forget(slug)
        logger.info("books.updated", book=slug)
        return row, BookConfig.of(row, self._settings)

    async def delete(self, db: AsyncSession, slug: str) -> None:
        """Delete a book with everything it holds: its points first, then its rows (documents,
        chunks, chapters, conversations, feedback, jobs, in one transaction), then its cached
        answers (a new index version). A failure part-way leaves the book listed, and deleting
        it again finishes the job."""
        if slug == DEFAULT_BOOK:
            raise Conflict("The default book serves the unscoped routes; it cannot be deleted.")
        row = await db.get(Book, slug)
        if row is None:
            raise book_not_found(slug)
        await self._index.delete_book(slug)
        await db.delete(row)
        await db.commit()
        await self._cache.bump(index_version(slug))
        self._lexicon.forget(slug)
        self.forget(slug)
        logger.info("books.deleted", book=slug)
