"""Chapters a language model rewrote from the book's documents, cached per variant."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from bookchat.core.db import Base, UTCDateTime, new_id, portable_enum, utcnow


class GeneratedKind(StrEnum):
    PERSONALIZED = "personalized"
    TRANSLATED = "translated"


class GeneratedContent(Base):
    """A chapter rewritten by a language model, cached for the next reader who asks the same.

    A lookup names the document's current `content_hash`, so a re-ingested chapter never serves
    a variant made from its old text; deleting the document deletes its variants.
    """

    __tablename__ = "generated_content"
    __table_args__ = (UniqueConstraint("kind", "document_id", "variant", "source_hash", "model"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    kind: Mapped[GeneratedKind] = mapped_column(portable_enum(GeneratedKind, "generated_kind"))
    document_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    # A fingerprint of the reader profile, or the target language tag.
    variant: Mapped[str] = mapped_column(String(64))
    # The document's content_hash when this was generated.
    source_hash: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
