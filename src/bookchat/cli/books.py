"""`bookchat books add`, `list` and `remove`: the books one deployment serves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bookchat.books.names import DEFAULT_BOOK, SLUG_PATTERN
from bookchat.cli.common import app, cli_settings, run_async

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from bookchat.books.schemas import BookCreate
    from bookchat.books.service import BookConfig
    from bookchat.container import Container
    from bookchat.core.config import Settings

books = typer.Typer(
    name="books",
    help="The books this deployment serves: add, list and remove them.",
    no_args_is_help=True,
)
app.add_typer(books)

# How the options are called here, for the fields BookCreate names in its errors.
_OPTIONS = {
    "slug": "SLUG",
    "title": "--title",
    "base_url": "--base-url",
    "docs_dir": "--docs",
    "persona": "--persona",
    "cors_origins": "--origin",
}


def book_slug(slug: str) -> str:
    """`slug` when it can name a book; else exit 2 saying what a slug is."""
    if not re.fullmatch(SLUG_PATTERN, slug):
        typer.echo(
            f"{slug!r} is not a book slug: lowercase letters, digits and inner dashes, "
            "at most 64 characters.",
            err=True,
        )
        raise typer.Exit(code=2)
    return slug


def no_such_book(slug: str) -> str:
    """What to tell an operator who named a book that does not exist."""
    return (
        f"There is no book {slug!r}: add it with `bookchat books add {slug} --title TITLE "
        "--base-url URL` (`bookchat books list` shows the books)."
    )


async def find_book(container: Container, slug: str) -> BookConfig:
    """The book `slug`; exit 1 with `no_such_book` when there is none."""
    from bookchat.core.errors import NotFound

    try:
        return await container.books.get(slug)
    except NotFound:
        typer.echo(no_such_book(slug), err=True)
        raise typer.Exit(code=1) from None


@books.command(name="add")
def add_book(
    slug: Annotated[
        str, typer.Argument(help="Its name in URLs: /api/v1/books/SLUG/...", show_default=False)
    ],
    title: Annotated[str, typer.Option(help="The book's title.", show_default=False)],
    base_url: Annotated[
        str,
        typer.Option(
            help="Where the book is published; citations link below it.", show_default=False
        ),
    ],
    docs: Annotated[
        Path | None,
        typer.Option(help="Its docs folder, where `bookchat ingest --book SLUG` reads."),
    ] = None,
    persona: Annotated[
        str | None,
        typer.Option(help="Added to the assistant's rules for this book (tone, audience)."),
    ] = None,
    origin: Annotated[
        list[str] | None,
        typer.Option(
            help="A browser origin allowed on this book's routes (repeatable).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Add a book; then ingest its pages with `bookchat ingest --book SLUG`."""
    from pydantic import ValidationError

    from bookchat.books.schemas import BookCreate

    settings = cli_settings()
    book_slug(slug)
    if docs is not None and not docs.is_dir():
        typer.echo(f"--docs: {docs} is not a folder.", err=True)
        raise typer.Exit(code=2)
    try:
        payload = BookCreate.model_validate(
            {
                "slug": slug,
                "title": title,
                "base_url": base_url,
                "docs_dir": str(docs.resolve()) if docs is not None else None,
                "persona": persona,
                "cors_origins": origin or None,
            }
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        where = _OPTIONS.get(str(error["loc"][0]), str(error["loc"][0])) if error["loc"] else ""
        typer.echo(f"Invalid {where}: {error['msg']}", err=True)
        raise typer.Exit(code=2) from None
    run_async(_add_book(settings, payload))


async def _add_book(settings: Settings, payload: BookCreate) -> int:
    from bookchat.container import open_container

    async with open_container(settings) as container, container.sessionmaker() as db:
        _, book = await container.books.create(db, payload)
    typer.echo(f"Added the book {book.slug!r} ({book.title}), published at {book.base_url}.")
    ingest = f"bookchat ingest --book {book.slug}" + ("" if book.docs_dir else " DOCS_FOLDER")
    typer.echo(f"Ingest its pages with `{ingest}`.")
    return 0


@books.command(name="list")
def list_books() -> None:
    """List the books with their sites and how many documents each holds."""
    run_async(_list_books(cli_settings()))


async def _list_books(settings: Settings) -> int:
    from bookchat.container import open_container

    rows = [("SLUG", "TITLE", "BASE URL", "DOCUMENTS")]
    async with open_container(settings) as container, container.sessionmaker() as db:
        while True:
            page, total = await container.books.list(db, limit=200, offset=len(rows) - 1)
            for _, book in page:
                documents = await _document_count(container, db, book.slug)
                rows.append((book.slug, book.title, book.base_url, str(documents)))
            if not page or len(rows) - 1 >= total:
                break
    width = [max(len(row[i]) for row in rows) for i in range(4)]
    for slug, title, base_url, count in rows:
        typer.echo(
            f"{slug:<{width[0]}}  {title:<{width[1]}}  {base_url:<{width[2]}}  {count:>{width[3]}}"
        )
    return 0


async def _document_count(container: Container, db: AsyncSession, slug: str) -> int:
    page = await container.content.list_documents(db, slug, limit=1, offset=0, module=None)
    return page.total


@books.command(name="remove")
def remove_book(
    slug: Annotated[str, typer.Argument(help="The book to remove.", show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove a book with its documents, index entries, conversations and cached answers."""
    settings = cli_settings()
    book_slug(slug)
    if slug == DEFAULT_BOOK:
        typer.echo(
            "The default book serves the unscoped routes (/api/v1/chat...); it cannot be removed.",
            err=True,
        )
        raise typer.Exit(code=2)
    run_async(_remove_book(settings, slug, confirmed=yes))


async def _remove_book(settings: Settings, slug: str, *, confirmed: bool) -> int:
    from bookchat.container import open_container

    async with open_container(settings) as container, container.sessionmaker() as db:
        book = await find_book(container, slug)
        documents = await _document_count(container, db, slug)
        question = (
            f"Remove the book {slug!r} ({book.title}) with its {documents} documents and every "
            "conversation, rating and generated chapter of it? This cannot be undone."
        )
        if not confirmed and not typer.confirm(question, default=False):
            typer.echo("Nothing removed.", err=True)
            return 1
        await container.books.delete(db, slug)
    typer.echo(f"Removed the book {slug!r} and its {documents} documents.")
    return 0
