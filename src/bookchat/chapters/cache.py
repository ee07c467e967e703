"""The cache of rewritten chapters (`generated_content`).

A row is keyed by the document, the kind, the variant (a profile fingerprint or a language tag),
the document's content hash and the model, so a re-ingested chapter never serves a variant of
its old text and a new model never serves an old model's.
"""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookchat.chapters.models import GeneratedContent, GeneratedKind
from bookchat.content.models import Document

logger = structlog.get_logger(__name__)


async def find(
    db: AsyncSession,
    *,
    kind: GeneratedKind,
    document_id: uuid.UUID,
    variant: str,
    source_hash: str,
    model: str,
) -> GeneratedContent | None:
    """The cached variant of this version of the document, made by this model, if any."""
    return await db.scalar(
        select(GeneratedContent).where(
            GeneratedContent.kind == kind,
            GeneratedContent.document_id == document_id,
            GeneratedContent.variant == variant,
            GeneratedContent.source_hash == source_hash,
            GeneratedContent.model == model,
        )
    )


async def store(sessionmaker: async_sessionmaker[AsyncSession], row: GeneratedContent) -> None:
    """Cache a new variant, and drop the variants of the chapter's older versions.

    Skipped when the chapter changed while it was being rewritten (this result is already
    stale) and when the same variant was stored meanwhile. A failure only costs the cache:
    the reader still gets the chapter. Its own session: the request's may be long gone (a
    stream outlives its request)."""
    kind = row.kind.value  # read now: a failed session may leave the row unreadable
    try:
        async with sessionmaker() as db:
            current = await db.scalar(
                select(Document.content_hash).where(Document.id == row.document_id)
            )
            if current != row.source_hash:
                return
            await db.execute(
                delete(GeneratedContent).where(
                    GeneratedContent.document_id == row.document_id,
                    GeneratedContent.source_hash != current,
                )
            )
            db.add(row)
            try:
                await db.commit()
            except IntegrityError:  # the same variant, stored by a concurrent request
                await db.rollback()
    except Exception:
        logger.exception("generation.store_failed", kind=kind)
