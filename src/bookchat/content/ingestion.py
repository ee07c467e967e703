"""Ingestion: Markdown documents into the SQL store (the source of truth) and the vector index.

Every document is written in an order that never leaves it unsearchable: its new points are
upserted first, then its rows are replaced in one transaction, then its stale points are
deleted. A failure at any step leaves the previous version searchable, and the next run (or
`reconcile`) repairs what a crash left behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import structlog
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookchat.books.names import DEFAULT_BOOK, index_version
from bookchat.content.chunker import TextChunk, embedding_text
from bookchat.content.loader import LoadedDocument
from bookchat.content.models import Chunk, Document, chunk_id_for, document_id_for
from bookchat.content.planning import ChunkingPolicy, ChunkPlanner
from bookchat.core.cache import Cache
from bookchat.core.db import utcnow
from bookchat.core.errors import AppError, is_database_outage, is_network_outage
from bookchat.core.metrics import Metrics
from bookchat.providers.embeddings import Embedder
from bookchat.providers.sparse import SparseEncoder
from bookchat.retrieval.index import IndexedChunk, QdrantIndex

logger = structlog.get_logger(__name__)

Outcome = Literal["added", "updated", "unchanged", "removed", "failed"]
ProgressFn = Callable[[str, Outcome], None]


@dataclass(slots=True)
class IngestReport:
    """What an ingestion run did, document by document."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    chunks: int = 0
    seconds: float = 0.0

    def record(self, source_path: str, outcome: Outcome) -> None:
        if outcome != "failed":
            getattr(self, outcome).append(source_path)

    @property
    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "updated": len(self.updated),
            "unchanged": len(self.unchanged),
            "removed": len(self.removed),
            "failed": len(self.failed),
            "chunks": self.chunks,
        }

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def failure_reason(exc: Exception) -> str:
    """Why a document or a job failed, in words fit for a job's `error`: our own message for
    our errors, a plain sentence for the rest. Never the exception's text: a driver's can carry
    SQL, parameters (the page itself) and connection details; the log line has it."""
    if isinstance(exc, AppError):
        return exc.message
    if is_database_outage(exc) or is_network_outage(exc):
        return "The database was unavailable; run the ingestion again."
    if isinstance(exc, SQLAlchemyError):
        return (
            "The database refused to store it (a value too long or not allowed); "
            "the server log has the details."
        )
    return "An unexpected error; the server log has the details."


class Ingestor:
    """Writes documents to the database and the index, keeping the two in agreement."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        index: QdrantIndex,
        sparse: SparseEncoder,
        embedder: Embedder | None,
        policy: ChunkingPolicy | None = None,
        cache: Cache | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._metrics = metrics
        # Cached answers embed the index version; every change to the book bumps it.
        self._cache = cache
        self._index = index
        self._sparse = sparse
        self._embedder = embedder
        # Text past what the embedding model reads would be invisible to it: chunks fit.
        self._planner = ChunkPlanner(policy or ChunkingPolicy(), embedder)
        # One writer per process: two runs interleaving on one document would race.
        self._lock = asyncio.Lock()

    async def ingest(
        self,
        documents: Sequence[LoadedDocument],
        *,
        book: str = DEFAULT_BOOK,
        prune: bool = False,
        progress: ProgressFn | None = None,
        reconcile: bool = False,
    ) -> IngestReport:
        """Add new documents to `book`, replace changed ones, skip unchanged ones; with
        `prune`, delete the book's stored documents that are not in `documents`; with
        `reconcile`, finish by making the index match the database exactly (repairs what an
        interrupted run left)."""
        started = time.perf_counter()
        report = IngestReport()
        async with self._lock:
            stored = await self._stored_hashes(book)
            for document in documents:
                outcome = await self._ingest_one(document, book, stored, report)
                if progress is not None:
                    progress(document.source_path, outcome)
            if prune:
                keep = {document_id_for(d.source_path, book) for d in documents}
                for document_id, (source_path, _) in stored.items():
                    if document_id not in keep:
                        await self._delete(document_id)
                        report.record(source_path, "removed")
                        self._count(book, "removed")
                        if progress is not None:
                            progress(source_path, "removed")
            if reconcile:
                await self._reconcile()
            if report.changed:
                await self._book_changed(book)
        report.seconds = time.perf_counter() - started
        logger.info("ingest.finished", book=book, **report.counts, seconds=round(report.seconds, 2))
        return report

    async def _ingest_one(
        self,
        document: LoadedDocument,
        book: str,
        stored: dict[uuid.UUID, tuple[str, str]],
        report: IngestReport,
        *,
        reraise: bool = False,
    ) -> Outcome:
        document_id = document_id_for(document.source_path, book)
        previous = stored.get(document_id)
        if previous is not None and previous[1] == document.content_hash:
            report.record(document.source_path, "unchanged")
            self._count(book, "unchanged")
            return "unchanged"
        try:
            written = await self._write(document_id, book, document)
        except Exception as exc:  # one bad document must not stop the others
            logger.warning(
                "ingest.document_failed",
                source_path=document.source_path,
                error_type=type(exc).__name__,
                error=str(exc),
            )
            report.failed[document.source_path] = failure_reason(exc)
            self._count(book, "failed")
            if reraise:  # the caller answers for this one document: it needs the cause
                raise
            return "failed"
        outcome: Outcome = "added" if previous is None else "updated"
        report.record(document.source_path, outcome)
        report.chunks += written
        self._count(book, outcome, chunks=written)
        return outcome

    async def upsert_document(
        self, document: LoadedDocument, *, book: str = DEFAULT_BOOK
    ) -> Outcome:
        """Ingest one document into `book` (used by the content API's PUT); a failure raises
        its cause (an `AppError` such as `DependencyUnavailable` when a store or vendor is
        down)."""
        async with self._lock:
            stored = await self._stored_hashes(book)
            outcome = await self._ingest_one(document, book, stored, IngestReport(), reraise=True)
            if outcome in ("added", "updated"):
                await self._book_changed(book)
        return outcome

    async def delete_document(self, document_id: uuid.UUID, *, book: str = DEFAULT_BOOK) -> bool:
        """Remove a document of `book` from the index and the database; False when the book
        has no such document."""
        async with self._lock:
            async with self._sessionmaker() as db:
                exists = await db.get(Document, document_id)
            if exists is None or exists.book != book:
                return False
            await self._delete(document_id)
            await self._book_changed(exists.book)
            self._count(book, "removed")
            return True

    def _count(self, book: str, outcome: Outcome, *, chunks: int = 0) -> None:
        if self._metrics is not None:
            self._metrics.ingested_documents.labels(book, outcome).inc()
            if chunks:
                self._metrics.ingested_chunks.labels(book).inc(chunks)

    async def _book_changed(self, book: str) -> None:
        if self._cache is not None:
            await self._cache.bump(index_version(book))

    async def _delete(self, document_id: uuid.UUID) -> None:
        # Index first: a document that is gone from search but still in SQL is re-added by the
        # next run; the other order could leave points that no row explains.
        await self._index.delete_document(document_id)
        async with self._sessionmaker() as db:
            await db.execute(delete(Document).where(Document.id == document_id))
            await db.commit()

    async def _stored_hashes(self, book: str) -> dict[uuid.UUID, tuple[str, str]]:
        async with self._sessionmaker() as db:
            rows = await db.execute(
                select(Document.id, Document.source_path, Document.content_hash).where(
                    Document.book == book
                )
            )
            return {row.id: (row.source_path, row.content_hash) for row in rows}

    async def _write(self, document_id: uuid.UUID, book: str, document: LoadedDocument) -> int:
        # CPU-bound (a large page takes a while): off the event loop, so serving goes on.
        pieces = await asyncio.to_thread(self._planner.plan, document.body, title=document.title)
        rows = [self._chunk_row(document_id, document.page_url, piece) for piece in pieces]
        await self._index.upsert(
            await self._indexed(
                book, document_id, document.source_path, document.title, document.module, rows
            )
        )
        try:
            await self._replace_rows(document_id, book, document, rows)
        except BaseException:
            # The database kept the previous version: drop the points only the new one had.
            async with self._sessionmaker() as db:
                old_ids = set(
                    await db.scalars(select(Chunk.id).where(Chunk.document_id == document_id))
                )
            await self._index.delete_points({r.id for r in rows} - old_ids)
            raise
        await self._index.delete_document(document_id, keep=[r.id for r in rows])
        return len(rows)

    def _chunk_row(self, document_id: uuid.UUID, page_url: str, piece: TextChunk) -> Chunk:
        # The id hashes exactly what `_indexed` embeds: the same text keeps its point.
        text = embedding_text(piece.heading_path, piece.text)
        text_hash = hashlib.sha256(text.encode()).hexdigest()
        return Chunk(
            id=chunk_id_for(document_id, piece.ordinal, text_hash),
            document_id=document_id,
            ordinal=piece.ordinal,
            heading_path=list(piece.heading_path),
            anchor=piece.anchor,
            page_url=f"{page_url}#{piece.anchor}" if piece.anchor else page_url,
            text=piece.text,
            token_count=piece.token_count,
        )

    async def _indexed(
        self,
        book: str,
        document_id: uuid.UUID,
        source_path: str,
        title: str,
        module: str | None,
        rows: Sequence[Chunk],
    ) -> list[IndexedChunk]:
        """Encode the rows (BM25 always, dense when an embedder is configured) for the index."""
        texts = [embedding_text(row.heading_path, row.text) for row in rows]
        sparse = await self._sparse.encode_documents(texts)
        dense: Sequence[Sequence[float] | None] = (
            await self._embedder.embed_documents(texts) if self._embedder else [None] * len(texts)
        )
        return [
            IndexedChunk(
                chunk_id=row.id,
                document_id=document_id,
                source_path=source_path,
                title=title,
                heading_path=row.heading_path,
                page_url=row.page_url,
                module=module,
                text=row.text,
                sparse=sparse_vector,
                dense=dense_vector,
                book=book,
            )
            for row, sparse_vector, dense_vector in zip(rows, sparse, dense, strict=True)
        ]

    async def _replace_rows(
        self,
        document_id: uuid.UUID,
        book: str,
        document: LoadedDocument,
        rows: Sequence[Chunk],
    ) -> None:
        async with self._sessionmaker() as db:
            existing = await db.get(Document, document_id)
            now = utcnow()
            if existing is None:
                existing = Document(
                    id=document_id, book=book, source_path=document.source_path, created_at=now
                )
                db.add(existing)
            existing.title = document.title
            existing.page_url = document.page_url
            existing.module = document.module
            existing.content_hash = document.content_hash
            existing.body = document.body
            existing.meta = document_metadata(document)
            existing.updated_at = now
            await db.execute(delete(Chunk).where(Chunk.document_id == document_id))
            db.add_all(rows)
            await db.commit()

    # --- index maintenance ------------------------------------------------------------------

    async def reindex(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild the collection from the database (after changing embedders), each stored
        document chunked again to fit what the embedder now configured reads."""
        async with self._lock:
            await self._index.recreate()
            async with self._sessionmaker() as db:
                documents = list(await db.scalars(select(Document).order_by(Document.source_path)))
            total = 0
            for number, document in enumerate(documents, start=1):
                total += await self._rechunk_document(document)
                if progress is not None:
                    progress(number, len(documents))
            for book in sorted({document.book for document in documents}):
                await self._book_changed(book)
            return total

    async def reconcile(self) -> tuple[int, int]:
        """Make the index hold exactly the database's chunks: re-add missing points, delete
        stale ones. Returns (re-added, deleted)."""
        async with self._lock:
            return await self._reconcile()

    async def _reconcile(self) -> tuple[int, int]:
        async with self._sessionmaker() as db:
            expected = set(await db.scalars(select(Chunk.id)))
        present = await self._index.point_ids()
        stale = present - expected
        missing = expected - present
        await self._index.delete_points(stale)
        if missing:
            async with self._sessionmaker() as db:
                ids = set(await db.scalars(select(Chunk.document_id).where(Chunk.id.in_(missing))))
                documents = list(await db.scalars(select(Document).where(Document.id.in_(ids))))
            for document in documents:
                await self._reindex_document(document)
        if stale or missing:
            logger.warning("index.reconciled", readded=len(missing), deleted=len(stale))
        return len(missing), len(stale)

    async def _rechunk_document(self, document: Document) -> int:
        """Plan a stored document's chunks again, index them, then replace its chunk rows (an
        unchanged plan keeps its ids)."""
        pieces = await asyncio.to_thread(self._planner.plan, document.body, title=document.title)
        rows = [self._chunk_row(document.id, document.page_url, piece) for piece in pieces]
        await self._index_stored(document, rows)
        async with self._sessionmaker() as db:
            await db.execute(delete(Chunk).where(Chunk.document_id == document.id))
            db.add_all(rows)
            await db.commit()
        return len(rows)

    async def _index_stored(self, document: Document, rows: Sequence[Chunk]) -> None:
        """Index a stored document's chunk rows (its points are replaced in place)."""
        await self._index.upsert(
            await self._indexed(
                document.book,
                document.id,
                document.source_path,
                document.title,
                document.module,
                rows,
            )
        )

    async def _reindex_document(self, document: Document) -> int:
        async with self._sessionmaker() as db:
            rows = list(
                await db.scalars(
                    select(Chunk).where(Chunk.document_id == document.id).order_by(Chunk.ordinal)
                )
            )
        await self._index_stored(document, rows)
        return len(rows)


def document_metadata(document: LoadedDocument) -> dict[str, object]:
    return {
        "route": document.route,
        "description": document.description,
        "keywords": list(document.keywords),
        "sidebar_position": document.sidebar_position,
    }
