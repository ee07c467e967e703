"""Content endpoints: ingestion jobs, documents, and search over the book."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from bookchat.accounts.dependencies import AdminDep
from bookchat.books.dependencies import CurrentBook
from bookchat.content.dependencies import (
    SEARCH_RATE_LIMIT,
    ContentServiceDep,
    SearchClient,
    check_search_terms,
)
from bookchat.content.schemas import (
    DocumentDetail,
    DocumentPage,
    DocumentUpdate,
    DocumentUpload,
    IngestCreate,
    JobRead,
    SearchRead,
)
from bookchat.content.service import parse_uploads, resolve_docs_folder
from bookchat.core.errors import (
    VISIBLE_TEXT_PATTERN,
    Forbidden,
    PayloadTooLarge,
    ValidationFailed,
)
from bookchat.core.openapi import MAX_OFFSET, error_responses
from bookchat.dependencies import SessionDep, SettingsDep

MAX_UPLOAD_FILES = 500

router = APIRouter(prefix="/content", tags=["content"])

_INGEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {"schema": IngestCreate.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string", "format": "binary"},
                            "description": ".md / .mdx files",
                        },
                        "base_url": {"type": "string"},
                    },
                    "required": ["files"],
                }
            },
        },
    }
}


@router.post(
    "/ingest",
    status_code=202,
    response_model=JobRead,
    dependencies=[AdminDep],
    responses=error_responses(400, 401, 403, 413),
    openapi_extra=_INGEST_BODY,
)
async def create_ingest_job(
    request: Request,
    db: SessionDep,
    service: ContentServiceDep,
    settings: SettingsDep,
    book: CurrentBook,
) -> JobRead:
    """Ingest uploaded files, JSON documents, or the book's docs folder (a background job)."""
    if not settings.ingest_jobs_enabled:
        raise Forbidden(
            "Ingestion jobs are off on this deployment (INGEST_JOBS_ENABLED=false, as on "
            "serverless platforms, where work stops when the response is sent). Run "
            "`bookchat ingest` against the same DATABASE_URL and QDRANT_URL, or replace pages "
            "one by one with PUT /api/v1/content/{document_id}."
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"Uploads are limited to {settings.max_upload_bytes} bytes.")
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        uploads, base_url = await _read_multipart(request, settings.max_upload_bytes)
        documents = await asyncio.to_thread(parse_uploads, uploads, base_url or book.base_url)
        return await service.start_job(
            db, book.slug, source="upload", documents=documents, base_url=book.base_url
        )
    body = await request.body()
    if len(body) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"Uploads are limited to {settings.max_upload_bytes} bytes.")
    try:
        # Strict, as the schema says: `"prune": 0` is not a boolean.
        payload = (
            IngestCreate.model_validate_json(body, strict=True) if body.strip() else IngestCreate()
        )
    except ValidationError as exc:
        raise ValidationFailed(
            "The ingestion request is not valid.",
            details=[
                {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors()
            ],
        ) from None
    base_url = payload.base_url or book.base_url
    if payload.documents is not None:
        documents = await asyncio.to_thread(parse_uploads, payload.documents, base_url)
        return await service.start_job(
            db, book.slug, source="json", documents=documents, base_url=base_url
        )
    if book.docs_dir is None:
        raise ValidationFailed(
            f"The book {book.slug!r} has no docs folder on this server: send its documents, "
            "or set its docs_dir first."
        )
    folder = resolve_docs_folder(book.docs_dir, payload.path)
    return await service.start_job(
        db, book.slug, source="folder", folder=folder, base_url=base_url, prune=payload.prune
    )


async def _read_multipart(request: Request, limit: int) -> tuple[list[DocumentUpload], str | None]:
    form = await request.form(max_files=MAX_UPLOAD_FILES)
    uploads = []
    for item in form.getlist("files"):
        if not isinstance(item, UploadFile):
            raise ValidationFailed("`files` must be file uploads")
        data = await item.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(f"{item.filename}: files are limited to {limit} bytes.")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValidationFailed(f"{item.filename}: not UTF-8 text") from None
        if "\x00" in text:
            raise ValidationFailed(f"{item.filename}: contains NUL characters; not a text file")
        uploads.append(DocumentUpload(source_path=item.filename or "", content=text))
    if not uploads:
        raise ValidationFailed("Send one or more .md/.mdx files in the `files` field.")
    base_url = form.get("base_url")
    return uploads, base_url if isinstance(base_url, str) and base_url else None


@router.get(
    "/jobs/{job_id}",
    response_model=JobRead,
    dependencies=[AdminDep],
    responses=error_responses(401, 403, 404),
)
async def read_ingest_job(
    job_id: uuid.UUID, db: SessionDep, service: ContentServiceDep, book: CurrentBook
) -> JobRead:
    """Progress and result of an ingestion job."""
    return await service.get_job(db, book.slug, job_id)


@router.get(
    "/search",
    response_model=SearchRead,
    responses=error_responses(400, 429, 503),
    dependencies=[SEARCH_RATE_LIMIT],
)
async def search_content(
    service: ContentServiceDep,
    settings: SettingsDep,
    client: SearchClient,
    book: CurrentBook,
    q: Annotated[
        str,
        # At least one visible character: a blank query is refused.
        Query(
            min_length=1,
            max_length=2000,
            pattern=VISIBLE_TEXT_PATTERN,
            description="What to look for.",
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=50)] = 5,
    module: Annotated[str | None, Query(max_length=500)] = None,
    document_id: uuid.UUID | None = None,
) -> SearchRead:
    """Hybrid search over the book (no language model involved); at most MAX_SEARCH_TERMS
    distinct terms, rate limited by RATE_LIMIT_SEARCH."""
    if not q.strip():
        raise ValidationFailed("q must not be blank")
    check_search_terms(q, settings)
    return await service.search(
        q.strip(),
        book=book.slug,
        limit=limit,
        module=module,
        document_id=document_id,
        client=client,
    )


@router.get("/documents", response_model=DocumentPage, responses=error_responses(400))
async def list_documents(
    db: SessionDep,
    service: ContentServiceDep,
    book: CurrentBook,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    module: Annotated[str | None, Query(max_length=500)] = None,
) -> DocumentPage:
    """The book's documents, by source path."""
    return await service.list_documents(db, book.slug, limit=limit, offset=offset, module=module)


@router.get(
    "/documents/{document_id}", response_model=DocumentDetail, responses=error_responses(404)
)
async def read_document(
    document_id: uuid.UUID, db: SessionDep, service: ContentServiceDep, book: CurrentBook
) -> DocumentDetail:
    """One document with its Markdown and its chunks."""
    return await service.get_document(db, book.slug, document_id)


# `:uuid`: only an id matches, so a write to a fixed path beside it (`/content/documents`,
# `/content/search`) is that path's 405, not a malformed id's 400; a malformed id is a 404.
@router.put(
    "/{document_id:uuid}",
    response_model=DocumentDetail,
    dependencies=[AdminDep],
    responses=error_responses(400, 401, 403, 404),
)
async def update_document(
    document_id: uuid.UUID,
    payload: DocumentUpdate,
    db: SessionDep,
    service: ContentServiceDep,
    book: CurrentBook,
) -> DocumentDetail:
    """Replace a document's Markdown; the index is updated before this returns."""
    return await service.update_document(
        db, book.slug, document_id, payload.content, payload.module
    )


@router.delete(
    "/{document_id:uuid}",
    status_code=204,
    dependencies=[AdminDep],
    responses=error_responses(401, 403, 404),
)
async def delete_document(
    document_id: uuid.UUID, service: ContentServiceDep, book: CurrentBook
) -> Response:
    """Delete a document and its index entries."""
    await service.delete_document(book.slug, document_id)
    return Response(status_code=204)
