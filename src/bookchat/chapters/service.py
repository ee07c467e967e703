"""Chapters rewritten by a language model (personalized, translated): which chapter, a cache
hit or the rewrite (chapters/generation.py), and its delivery as one answer or as a stream of
events. The variants only say what to make of a chapter (`Variant`): chapters/personalize.py,
chapters/translate.py."""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookchat.books.names import DEFAULT_BOOK
from bookchat.chapters import cache
from bookchat.chapters.generation import Rewriter
from bookchat.chapters.models import GeneratedContent, GeneratedKind
from bookchat.chapters.schemas import ChapterSource, GeneratedRead
from bookchat.content.markdown import estimate_tokens
from bookchat.content.models import Document
from bookchat.core.config import Settings
from bookchat.core.db import utcnow
from bookchat.core.errors import AppError, NotFound
from bookchat.core.sse import StreamEvent
from bookchat.providers.base import ChatModel
from bookchat.providers.budgeted import admit

logger = structlog.get_logger(__name__)

# A cached chapter streams as `token` events of up to 40 lines each.
_CACHED_PIECE_RE = re.compile(r"(?:[^\n]*\n){1,40}|[^\n]+")


@dataclass(frozen=True, slots=True)
class ChapterText:
    """The Markdown to rewrite and where it comes from: a stored document (its id and content
    hash) or text sent with the request."""

    document_id: uuid.UUID | None
    source_hash: str
    markdown: str


@dataclass(frozen=True, slots=True)
class Variant:
    """What to make of a chapter: the kind, its cache key and the model's instructions.

    `extra` goes into the `start` and `done` events and the answer (a translation's language
    and direction)."""

    kind: GeneratedKind
    key: str
    instructions: str
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChapterRequest:
    """What a reader asks for: which chapter (`source`) and what to make of it (`variant`)."""

    source: ChapterSource
    variant: Variant
    book: str = DEFAULT_BOOK  # the book whose chapter it is


@dataclass(frozen=True, slots=True)
class GeneratedChapter:
    content: str
    document_id: uuid.UUID | None
    variant: str
    cached: bool
    model: str
    generated_at: datetime
    extra: Mapping[str, str] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The answer's fields (JSON-ready), extras included."""
        read = GeneratedRead(
            content=self.content,
            document_id=self.document_id,
            variant=self.variant,
            cached=self.cached,
            model=self.model,
            generated_at=self.generated_at,
        )
        return {**read.model_dump(mode="json"), **self.extra}


@dataclass(frozen=True, slots=True)
class Generation:
    """A request that is validated and ready: the chapter, the variant, a cache hit if any."""

    chapter: ChapterText
    variant: Variant
    cached: GeneratedChapter | None


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(slots=True)
class ChapterService:
    """Finds a chapter, serves it from the cache or has it rewritten, and caches the result."""

    settings: Settings
    model: ChatModel
    sessionmaker: async_sessionmaker[AsyncSession]
    rewriter: Rewriter = field(init=False)

    def __post_init__(self) -> None:
        self.rewriter = Rewriter(
            self.model,
            concurrency=self.settings.generation_concurrency,
            section_tokens=self.settings.generation_section_tokens,
            timeout_seconds=self.settings.generation_timeout_seconds,
        )

    @property
    def offline(self) -> bool:
        """True when the server answers with the extractive answerer: nothing can rewrite."""
        return self.model.mode == "extractive"

    async def generate(self, db: AsyncSession, request: ChapterRequest) -> GeneratedChapter:
        """The chapter in one piece: from the cache, or rewritten and then cached."""
        return await self._deliver(await self.prepare(db, request))

    async def stream(
        self, db: AsyncSession, request: ChapterRequest
    ) -> AsyncGenerator[StreamEvent]:
        """Check everything first (a missing chapter is a plain 404, not an event), then the
        chapter as events (`_events`)."""
        return self._events(await self.prepare(db, request))

    # --- before the model ----------------------------------------------------------------------

    async def prepare(self, db: AsyncSession, request: ChapterRequest) -> Generation:
        """Find the chapter (404, 413) and look it up in the cache.

        Ends the request session's transaction: the rewrite that follows may take a minute,
        and must not hold a database connection while it does."""
        variant = request.variant
        chapter = await self.resolve(db, request.source, request.book)
        cached = await self._lookup(db, chapter, variant)
        # Read-only: committing (not rolling back) keeps loaded objects such as the reader usable.
        await db.commit()
        if cached is None:
            # The reader's budget must cover the chapter before a stream opens (429, no event).
            await admit(estimate_tokens(chapter.markdown) + estimate_tokens(variant.instructions))
        return Generation(chapter=chapter, variant=variant, cached=cached)

    async def resolve(
        self, db: AsyncSession, source: ChapterSource, book: str = DEFAULT_BOOK
    ) -> ChapterText:
        if source.content is not None:
            text = source.content.replace("\r\n", "\n").replace("\r", "\n")
            return ChapterText(document_id=None, source_hash=content_hash(text), markdown=text)
        if source.document_id is not None:
            document = await db.get(Document, source.document_id)
            if document is None or document.book != book:
                raise NotFound(f"No document with id {source.document_id}.")
        else:
            path = (source.source_path or "").replace("\\", "/").lstrip("/")
            document = await db.scalar(
                select(Document).where(Document.book == book, Document.source_path == path)
            )
            if document is None:
                raise NotFound(f"No document at source_path {path!r}.")
        return ChapterText(
            document_id=document.id, source_hash=document.content_hash, markdown=document.body
        )

    async def _lookup(
        self, db: AsyncSession, chapter: ChapterText, variant: Variant
    ) -> GeneratedChapter | None:
        if chapter.document_id is None:
            return None
        row = await cache.find(
            db,
            kind=variant.kind,
            document_id=chapter.document_id,
            variant=variant.key,
            source_hash=chapter.source_hash,
            model=self.model.model,
        )
        if row is None:
            return None
        return GeneratedChapter(
            content=row.body,
            document_id=chapter.document_id,
            variant=variant.key,
            cached=True,
            model=row.model,
            generated_at=row.created_at,
            extra=variant.extra,
        )

    # --- delivery ------------------------------------------------------------------------------

    async def _deliver(self, generation: Generation) -> GeneratedChapter:
        if generation.cached is not None:
            self._log(generation, cached=True, started=time.perf_counter())
            return generation.cached
        started = time.perf_counter()
        chapter, variant = generation.chapter, generation.variant
        content = await self.rewriter.rewrite(chapter.markdown, variant.instructions)
        result = await self._finish(generation, content)
        self._log(generation, cached=False, started=started)
        return result

    async def _events(self, generation: Generation) -> AsyncGenerator[StreamEvent]:
        """The chapter as events: `start`, `token`... (whole sections, in order), then `done`
        (the same object as the one-piece answer) or `error` {code, message}.

        A client that goes away closes this generator, which cancels the model calls."""
        started = time.perf_counter()
        chapter, variant = generation.chapter, generation.variant
        pieces = []
        if generation.cached is None:
            pieces = await self.rewriter.plan_off_loop(chapter.markdown)
        yield (
            "start",
            {
                "document_id": str(chapter.document_id) if chapter.document_id else None,
                "variant": variant.key,
                "cached": generation.cached is not None,
                "model": generation.cached.model if generation.cached else self.model.model,
                "sections": len(pieces) or 1,
                **variant.extra,
            },
        )
        if generation.cached is not None:
            for piece in _CACHED_PIECE_RE.findall(generation.cached.content):
                yield "token", {"text": piece}
            self._log(generation, cached=True, started=started)
            yield "done", generation.cached.payload()
            return
        parts: list[str] = []
        try:
            async with aclosing(self.rewriter.pieces(pieces, variant.instructions)) as rewritten:
                async for part in rewritten:
                    # Pieces are joined line by line: every one after the first starts a line.
                    yield "token", {"text": f"\n{part}" if parts else part}
                    parts.append(part)
        except AppError as exc:
            yield "error", {"code": exc.code, "message": exc.public_message}
            return
        result = await self._finish(generation, "\n".join(parts))
        self._log(generation, cached=False, started=started)
        yield "done", result.payload()

    async def _finish(self, generation: Generation, content: str) -> GeneratedChapter:
        """The rewritten chapter, cached when it is a stored document's (ad-hoc `content` is
        not: nothing could invalidate or delete those rows)."""
        chapter, variant = generation.chapter, generation.variant
        generated_at = utcnow()
        if chapter.document_id is not None:
            row = GeneratedContent(
                kind=variant.kind,
                document_id=chapter.document_id,
                variant=variant.key,
                source_hash=chapter.source_hash,
                model=self.model.model,
                body=content,
                created_at=generated_at,
            )
            await cache.store(self.sessionmaker, row)
        return GeneratedChapter(
            content=content,
            document_id=chapter.document_id,
            variant=variant.key,
            cached=False,
            model=self.model.model,
            generated_at=generated_at,
            extra=variant.extra,
        )

    def _log(self, generation: Generation, *, cached: bool, started: float) -> None:
        logger.info(
            "generation.done",
            kind=generation.variant.kind.value,
            variant=generation.variant.key,
            document_id=str(generation.chapter.document_id)
            if generation.chapter.document_id
            else None,
            cached=cached,
            latency_ms=round((time.perf_counter() - started) * 1000),
        )
