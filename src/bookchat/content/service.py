"""The content domain's logic: reading documents, searching, and ingestion jobs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookchat.content.ingestion import Ingestor, IngestReport, failure_reason
from bookchat.content.loader import LoadedDocument, load_folder, parse_markdown
from bookchat.content.models import Chunk, Document, IngestJob, JobStatus
from bookchat.content.schemas import (
    ChunkRead,
    DocumentDetail,
    DocumentPage,
    DocumentRead,
    DocumentUpload,
    JobRead,
    SearchHitRead,
    SearchRead,
)
from bookchat.core.concurrency import Bulkhead
from bookchat.core.db import utcnow
from bookchat.core.errors import NotFound, ValidationFailed
from bookchat.retrieval.service import HybridRetriever

logger = structlog.get_logger(__name__)

DOC_SUFFIXES = (".md", ".mdx")


def clean_source_path(raw: str) -> str:
    """A safe relative path for an uploaded document (no absolute paths, no `..`)."""
    path = PurePosixPath(raw.replace("\\", "/"))
    parts = [part for part in path.parts if part not in ("", ".", "/")]
    if not parts or any(part == ".." for part in parts) or path.is_absolute():
        raise ValidationFailed(f"source_path {raw!r} must be a relative path inside the book")
    if not parts[-1].lower().endswith(DOC_SUFFIXES):
        raise ValidationFailed(f"{raw!r} is not a Markdown file: only .md and .mdx are accepted")
    return "/".join(parts)


def parse_uploads(uploads: Sequence[DocumentUpload], base_url: str) -> list[LoadedDocument]:
    """Parse uploaded Markdown; a draft is skipped, a malformed one is a 400 (`LoaderError`)."""
    documents = []
    for upload in uploads:
        source_path = clean_source_path(upload.source_path)
        document = parse_markdown(upload.content, source_path, base_url, upload.module)
        if document is not None:
            documents.append(document)
    return documents


def resolve_docs_folder(docs_dir: str, sub_path: str | None) -> Path:
    """The book's docs folder or a folder inside it; anything outside it is refused, and so is
    a name the file system cannot take (too long, say: a book's docs_dir is set over HTTP)."""
    try:
        root = Path(docs_dir).resolve()
        folder = (root / sub_path).resolve() if sub_path else root
        if not folder.is_relative_to(root):
            raise ValidationFailed("path must be inside the book's docs folder")
        if folder.is_dir():
            return folder
    except OSError:
        pass
    raise ValidationFailed(f"{sub_path or docs_dir!r} is not a folder of the book")


class JobRunner:
    """Runs ingestion jobs in the background of this process and keeps them referenced."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self, grace_seconds: float = 30.0) -> None:
        """Let running jobs finish (bounded), then cancel the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


@dataclass(slots=True)
class ContentService:
    sessionmaker: async_sessionmaker[AsyncSession]
    ingestor: Ingestor
    retriever: HybridRetriever
    jobs: JobRunner
    # Searches run at once: a client that floods search queues behind its own requests
    # instead of taking every thread and the event loop from everyone else.
    searches: Bulkhead | None = None

    # --- reading ----------------------------------------------------------------------------

    async def list_documents(
        self, db: AsyncSession, book: str, *, limit: int, offset: int, module: str | None
    ) -> DocumentPage:
        counts = (
            select(Chunk.document_id, func.count().label("n"))
            .group_by(Chunk.document_id)
            .subquery()
        )
        query = (
            select(Document, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.document_id == Document.id)
            .where(Document.book == book)
        )
        total_query = select(func.count()).select_from(Document).where(Document.book == book)
        if module is not None:
            query = query.where(Document.module == module)
            total_query = total_query.where(Document.module == module)
        rows = await db.execute(query.order_by(Document.source_path).limit(limit).offset(offset))
        total = await db.scalar(total_query) or 0
        items = [document_read(document, count) for document, count in rows]
        return DocumentPage(items=items, total=total, limit=limit, offset=offset)

    async def get_document(
        self, db: AsyncSession, book: str, document_id: uuid.UUID
    ) -> DocumentDetail:
        document = await _document_of(db, book, document_id)
        chunks = list(
            await db.scalars(
                select(Chunk).where(Chunk.document_id == document_id).order_by(Chunk.ordinal)
            )
        )
        return DocumentDetail(
            **document_read(document, len(chunks)).model_dump(),
            content=document.body,
            chunks=[ChunkRead.model_validate(chunk) for chunk in chunks],
        )

    async def search(
        self,
        query: str,
        *,
        book: str,
        limit: int,
        module: str | None,
        document_id: uuid.UUID | None,
        client: str | None = None,
    ) -> SearchRead:
        """The best chunks of `book` for `query`; `client` (who asks) gets its share of the
        places."""
        if self.searches is None:
            hits = await self.retriever.search(
                query, book=book, limit=limit, module=module, document_id=document_id
            )
        else:
            async with self.searches.slot(client):
                hits = await self.retriever.search(
                    query, book=book, limit=limit, module=module, document_id=document_id
                )
        return SearchRead(
            query=query,
            mode=self.retriever.name,
            results=[SearchHitRead.model_validate(hit) for hit in hits],
        )

    # --- writing ----------------------------------------------------------------------------

    async def update_document(
        self,
        db: AsyncSession,
        book: str,
        document_id: uuid.UUID,
        content: str,
        module: str | None,
    ) -> DocumentDetail:
        """Replace a document's Markdown; its index entries are replaced in the same call."""
        document = await _document_of(db, book, document_id)
        base_url = base_url_of(document.page_url, str(document.meta.get("route", "")))
        parsed = parse_markdown(content, document.source_path, base_url, module or document.module)
        if parsed is None:
            raise ValidationFailed("The new content is a draft (draft: true); delete it instead.")
        # The ingestor writes the book's two stores in its own order and transactions, under the
        # lock it shares with jobs and the CLI. End this request's read transaction first (which
        # also forgets what it loaded), so the answer below reads what was written.
        await db.rollback()
        await self.ingestor.upsert_document(parsed, book=book)
        return await self.get_document(db, book, document_id)

    async def delete_document(self, book: str, document_id: uuid.UUID) -> None:
        if not await self.ingestor.delete_document(document_id, book=book):
            raise NotFound(f"No document with id {document_id}.")

    async def start_job(
        self,
        db: AsyncSession,
        book: str,
        *,
        source: str,
        documents: Sequence[LoadedDocument] | None = None,
        folder: Path | None = None,
        base_url: str,
        prune: bool = False,
    ) -> JobRead:
        """Record a job and run it in the background; the caller polls `get_job`."""
        job = IngestJob(book=book, source=source, status=JobStatus.PENDING, counts={})
        db.add(job)
        await db.commit()
        self.jobs.submit(self._run_job(job.id, book, documents, folder, base_url, prune))
        return JobRead.model_validate(job)

    async def get_job(self, db: AsyncSession, book: str, job_id: uuid.UUID) -> JobRead:
        job = await db.get(IngestJob, job_id)
        if job is None or job.book != book:
            raise NotFound(f"No ingestion job with id {job_id}.")
        return JobRead.model_validate(job)

    async def _run_job(
        self,
        job_id: uuid.UUID,
        book: str,
        documents: Sequence[LoadedDocument] | None,
        folder: Path | None,
        base_url: str,
        prune: bool,
    ) -> None:
        await self._update_job(job_id, status=JobStatus.RUNNING, started_at=utcnow())
        try:
            if documents is None:
                assert folder is not None
                documents = await asyncio.to_thread(load_folder, folder, base_url)
            report = await self.ingestor.ingest(
                documents, book=book, prune=prune, reconcile=folder is not None
            )
        except Exception as exc:  # the job records the failure; nothing else awaits it
            logger.exception("ingest.job_failed", job_id=str(job_id))
            await self._update_job(
                job_id,
                status=JobStatus.FAILED,
                error=failure_reason(exc),
                finished_at=utcnow(),
            )
            return
        await self._update_job(
            job_id,
            status=JobStatus.FAILED if report.failed else JobStatus.SUCCEEDED,
            counts=report.counts,
            error=_failures(report),
            finished_at=utcnow(),
        )

    async def _update_job(self, job_id: uuid.UUID, **values: Any) -> None:
        async with self.sessionmaker() as db:
            job = await db.get(IngestJob, job_id)
            if job is None:  # pragma: no cover - the row was written before the task started
                return
            for name, value in values.items():
                setattr(job, name, value)
            await db.commit()


async def _document_of(db: AsyncSession, book: str, document_id: uuid.UUID) -> Document:
    """The document `document_id` of `book`; another book's is as absent as a missing one."""
    document = await db.get(Document, document_id)
    if document is None or document.book != book:
        raise NotFound(f"No document with id {document_id}.")
    return document


def base_url_of(page_url: str, route: str) -> str:
    """The book's base URL, recovered from a page's URL and route (`page_url = base + route`)."""
    route = route.rstrip("/")
    if route and page_url.endswith(route):
        return page_url[: -len(route)]
    return page_url.rstrip("/")


def _failures(report: IngestReport) -> str | None:
    if not report.failed:
        return None
    return "; ".join(f"{path}: {reason}" for path, reason in sorted(report.failed.items()))


def document_read(document: Document, chunk_count: int) -> DocumentRead:
    """By hand, unlike the other reads: the count is not a column, and the ORM names the
    `metadata` column `meta` (SQLAlchemy reserves the name)."""
    return DocumentRead(
        id=document.id,
        source_path=document.source_path,
        title=document.title,
        page_url=document.page_url,
        module=document.module,
        content_hash=document.content_hash,
        chunk_count=chunk_count,
        metadata=document.meta,
        updated_at=document.updated_at,
    )
