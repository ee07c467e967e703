"""The book as stored: documents, their chunks and ingestion jobs. The SQL store is the source of
truth; the Qdrant collection is an index rebuilt from it by `bookchat reindex`."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bookchat.books.models import book_column
from bookchat.books.names import DEFAULT_BOOK
from bookchat.core.db import Base, UTCDateTime, portable_enum, utcnow

# Fixed namespace: document and chunk ids are the same on every machine for the same content.
ID_NAMESPACE = uuid.UUID("6f1c1d3e-6a55-4b5e-9f0e-3d1b8f0c2a77")


def document_id_for(source_path: str, book: str = DEFAULT_BOOK) -> uuid.UUID:
    """The id of the document at `source_path` in `book` (uuid5: stable across re-ingestion).
    The default book's ids are those of the time before books: nothing to re-ingest."""
    key = source_path if book == DEFAULT_BOOK else f"{book}:{source_path}"
    return uuid.uuid5(ID_NAMESPACE, f"document:{key}")


def chunk_id_for(document_id: uuid.UUID, ordinal: int, text_hash: str) -> uuid.UUID:
    """The id of a chunk: the same text at the same place keeps its id (and its Qdrant point)."""
    return uuid.uuid5(ID_NAMESPACE, f"chunk:{document_id}:{ordinal}:{text_hash}")


class Document(Base):
    __tablename__ = "documents"
    # Also the index of a book's documents (its leading column).
    __table_args__ = (UniqueConstraint("book", "source_path"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    book: Mapped[str] = book_column(index=False)
    source_path: Mapped[str] = mapped_column(String(1024))
    title: Mapped[str] = mapped_column(String(500))
    page_url: Mapped[str] = mapped_column(String(2048))
    module: Mapped[str | None] = mapped_column(String(500), index=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    # Cleaned Markdown of the whole page: chapters are personalized and translated from it.
    body: Mapped[str] = mapped_column(Text)
    # Frontmatter-derived facts (route, description, keywords, sidebar_position).
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    chunks: Mapped[list[Chunk]] = relationship(
        back_populates="document",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Chunk.ordinal",
    )


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = (UniqueConstraint("document_id", "ordinal"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    document_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("documents.id", ondelete="CASCADE")
    )
    ordinal: Mapped[int] = mapped_column(Integer)
    heading_path: Mapped[list[str]] = mapped_column(JSON)
    anchor: Mapped[str | None] = mapped_column(String(500))
    page_url: Mapped[str] = mapped_column(String(2048))
    text: Mapped[str] = mapped_column(Text)
    token_count: Mapped[int] = mapped_column(Integer)

    document: Mapped[Document] = relationship(back_populates="chunks")


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class IngestJob(Base):
    __tablename__ = "ingest_jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    status: Mapped[JobStatus] = mapped_column(
        portable_enum(JobStatus, "ingest_job_status"), default=JobStatus.PENDING
    )
    book: Mapped[str] = book_column()
    source: Mapped[str] = mapped_column(String(32))
    # added / updated / unchanged / removed / failed documents, chunks written
    counts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
