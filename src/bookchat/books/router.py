"""The admin API of the books a deployment serves: list, add, change and delete them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi import Path as PathParam

from bookchat.accounts.dependencies import AdminDep
from bookchat.books.dependencies import BookServiceDep
from bookchat.books.models import DOCS_DIR_CHARS, Book
from bookchat.books.schemas import BookCreate, BookPage, BookRead, BookUpdate
from bookchat.books.service import BookConfig
from bookchat.core.config import Settings
from bookchat.core.errors import ValidationFailed
from bookchat.core.openapi import MAX_OFFSET, error_responses
from bookchat.dependencies import SessionDep, SettingsDep

router = APIRouter(prefix="/admin/books", tags=["books"], dependencies=[AdminDep])

SlugPath = Annotated[str, PathParam(description="The book's slug.")]


def confine_docs_dir(docs_dir: str | None, settings: Settings) -> str | None:
    """`docs_dir` as the absolute folder it names inside BOOK_DOCS_ROOT (400 outside it): the
    admin key must not be a way to ingest, and so publish, any Markdown the server can read."""
    if docs_dir is None:
        return None
    try:
        root = Path(settings.book_docs_root).resolve()
        folder = (root / docs_dir).resolve()
    except (OSError, ValueError):
        folder = None
    if folder is None or not folder.is_relative_to(root):
        problem = "must name a folder inside BOOK_DOCS_ROOT (relative to it, or absolute)"
    elif len(str(folder)) > DOCS_DIR_CHARS:
        problem = (
            f"must be at most {DOCS_DIR_CHARS:,} characters once resolved inside BOOK_DOCS_ROOT"
        )
    else:
        return str(folder)
    raise ValidationFailed(
        "The book's docs folder must be a folder inside the server's BOOK_DOCS_ROOT.",
        details=[{"loc": ["body", "docs_dir"], "msg": problem, "type": "value_error"}],
    )


def book_read(row: Book, config: BookConfig) -> BookRead:
    """A book as the API shows it: its effective settings, and when it was made and changed."""
    return BookRead(
        slug=config.slug,
        title=config.title,
        base_url=config.base_url,
        docs_dir=config.docs_dir,
        persona=config.persona,
        cors_origins=list(config.cors_origins),
        rate_limit_chat=config.rate_limit_chat,
        rate_limit_search=config.rate_limit_search,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.get("", response_model=BookPage, responses=error_responses(400, 401, 403))
async def list_books(
    db: SessionDep,
    books: BookServiceDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> BookPage:
    """The books this deployment serves, by slug."""
    page, total = await books.list(db, limit=limit, offset=offset)
    return BookPage(
        items=[book_read(row, config) for row, config in page],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.post(
    "",
    status_code=201,
    response_model=BookRead,
    responses=error_responses(400, 401, 403, 409),
)
async def create_book(
    payload: BookCreate, db: SessionDep, books: BookServiceDep, settings: SettingsDep
) -> BookRead:
    """Add a book; its pages are ingested separately (`/api/v1/books/{slug}/content/ingest`),
    sent with the request or read from its `docs_dir`, a folder inside the server's
    BOOK_DOCS_ROOT."""
    payload.docs_dir = confine_docs_dir(payload.docs_dir, settings)
    return book_read(*await books.create(db, payload))


@router.get("/{slug}", response_model=BookRead, responses=error_responses(401, 403, 404))
async def read_book(slug: SlugPath, db: SessionDep, books: BookServiceDep) -> BookRead:
    """One book with its effective settings."""
    return book_read(*await books.read(db, slug))


@router.patch("/{slug}", response_model=BookRead, responses=error_responses(400, 401, 403, 404))
async def update_book(
    slug: SlugPath,
    payload: BookUpdate,
    db: SessionDep,
    books: BookServiceDep,
    settings: SettingsDep,
) -> BookRead:
    """Change the fields sent; `null` returns a field to the service's settings."""
    if "docs_dir" in payload.model_fields_set:
        payload.docs_dir = confine_docs_dir(payload.docs_dir, settings)
    return book_read(*await books.update(db, slug, payload))


@router.delete("/{slug}", status_code=204, responses=error_responses(401, 403, 404, 409))
async def delete_book(slug: SlugPath, db: SessionDep, books: BookServiceDep) -> Response:
    """Delete a book with its documents, index entries, conversations and cached answers."""
    await books.delete(db, slug)
    return Response(status_code=204)
