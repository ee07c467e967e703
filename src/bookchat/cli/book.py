"""The book's commands: `ingest`, `reindex`, `search`, `ask` and `eval`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bookchat.books.names import DEFAULT_BOOK
from bookchat.cli.common import app, cli_settings, run_async

if TYPE_CHECKING:
    from rich.console import Console

    from bookchat.books.service import BookConfig
    from bookchat.container import Stores
    from bookchat.content.loader import LoadedDocument
    from bookchat.core.config import Settings
    from bookchat.evaluation.report import Requirement


@app.command()
def ingest(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="Docs folder (default: the book's docs folder, BOOK_DOCS_DIR for the default "
            "book).",
            show_default=False,
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="Site URL of the docs (default: the book's, BOOK_BASE_URL for the default book)."
        ),
    ] = None,
    prune: Annotated[
        bool, typer.Option(help="Delete stored documents whose files are gone.")
    ] = False,
    if_empty: Annotated[
        bool, typer.Option(help="Do nothing when the book already has documents.")
    ] = False,
    book: Annotated[
        str, typer.Option(help="The book to ingest into (its slug: `bookchat books list`).")
    ] = DEFAULT_BOOK,
) -> None:
    """Ingest a Docusaurus/Markdown docs folder into a book (unchanged pages are skipped)."""
    from bookchat.cli.books import book_slug

    settings = cli_settings()
    slug = book_slug(book)
    if path is not None and not path.is_dir():
        typer.echo(f"{path} is not a folder.", err=True)
        raise typer.Exit(code=2)
    run_async(_ingest(settings, slug, path, base_url, prune, if_empty))


async def _ingest(
    settings: Settings,
    slug: str,
    path: Path | None,
    base_url: str | None,
    prune: bool,
    if_empty: bool,
) -> int:
    import time

    from rich.console import Console

    from bookchat.cli.books import no_such_book
    from bookchat.container import open_stores
    from bookchat.content.loader import LoaderError, load_folder
    from bookchat.content.stored import read_stored_book
    from bookchat.core.config import EmbeddingsProvider
    from bookchat.providers.factory import possible_embedder_names

    console = Console(stderr=True)
    started = time.perf_counter()
    # The stores alone say whether there is anything to do: the embedder, the encoders and the
    # rest of the container are loaded only when there is.
    async with open_stores(settings) as stores:
        book = await _stored_book_config(stores, slug)
        if book is None:
            typer.echo(no_such_book(slug), err=True)
            return 1
        folder = path or (Path(book.docs_dir) if book.docs_dir else None)
        if folder is None:
            typer.echo(
                f"The book {slug!r} has no docs folder: give one (bookchat ingest --book {slug} "
                "FOLDER).",
                err=True,
            )
            return 2
        if not folder.is_dir():
            typer.echo(f"{folder} is not a folder.", err=True)
            return 2
        stored = await read_stored_book(stores.sessionmaker, stores.index, slug)
    embedders = possible_embedder_names(settings)
    name = "The book" if slug == DEFAULT_BOOK else f"The book {slug!r}"
    if if_empty and stored.hashes:
        if stored.built_by_another(embedders) and (
            settings.embeddings_provider is EmbeddingsProvider.AUTO
        ):
            # Nobody chose the embedder the index was built with: the default changed under it.
            built = stored.signature.describe() if stored.signature else "another embedder"
            console.print(f"The index was built with {built}: rebuilding it for the default.")
            return await _reindex(settings)
        if not stored.index_usable(embedders):
            return await _repair_index(settings, console, name, len(stored.hashes))
        console.print(f"{name} already has {len(stored.hashes)} documents; nothing to ingest.")
        return 0
    try:
        documents = await asyncio.to_thread(load_folder, folder, base_url or book.base_url)
    except LoaderError as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    if stored.unchanged_by(documents, prune=prune, embedders=embedders):
        console.print(
            f"Nothing changed: {len(documents)} documents already up to date "
            f"({time.perf_counter() - started:.2f} s)."
        )
        return 0
    return await _ingest_documents(settings, console, slug, folder, documents, prune)


async def _stored_book_config(stores: Stores, slug: str) -> BookConfig | None:
    """The book `slug` as the stores hold it (None when there is none), read without the
    container: the books service comes with the models this path avoids loading."""
    from bookchat.books.models import Book
    from bookchat.books.service import BookConfig

    async with stores.sessionmaker() as db:
        row = await db.get(Book, slug)
    if row is None and slug != DEFAULT_BOOK:  # the default book is there even when unstored
        return None
    return BookConfig.of(row, stores.settings)


async def _repair_index(settings: Settings, console: Console, name: str, stored: int) -> int:
    """The database is the source of truth: make the index match it again."""
    from bookchat.container import open_container

    async with open_container(settings) as container:
        readded, deleted = await container.ingestor.reconcile()
    repaired = f" (index repaired: {readded} chunks re-added, {deleted} removed)"
    console.print(
        f"{name} already has {stored} documents; nothing to ingest"
        f"{repaired if readded or deleted else ''}."
    )
    return 0


async def _ingest_documents(
    settings: Settings,
    console: Console,
    slug: str,
    folder: Path,
    documents: list[LoadedDocument],
    prune: bool,
) -> int:
    from rich.progress import Progress

    from bookchat.container import open_container

    async with open_container(settings) as container:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"Ingesting {folder}", total=len(documents))

            def advance(source_path: str, outcome: str) -> None:
                if outcome != "removed":
                    progress.update(task, advance=1, description=f"{outcome:9} {source_path}")

            report = await container.ingestor.ingest(
                documents, book=slug, prune=prune, progress=advance, reconcile=True
            )
    counts = report.counts
    if not report.changed and not report.failed:
        console.print(
            f"Nothing changed: {counts['unchanged']} documents already up to date "
            f"({report.seconds:.2f} s)."
        )
        return 0
    console.print(
        f"Documents: {counts['added']} added, {counts['updated']} updated, "
        f"{counts['unchanged']} unchanged, {counts['removed']} removed, {counts['failed']} failed; "
        f"{counts['chunks']} chunks written in {report.seconds:.2f} s."
    )
    for source_path, reason in sorted(report.failed.items()):
        console.print(f"[red]failed[/red] {source_path}: {reason}")
    return 1 if report.failed else 0


@app.command()
def reindex() -> None:
    """Rebuild the vector index from the database (after changing the embedder)."""
    run_async(_reindex(cli_settings()))


async def _reindex(settings: Settings) -> int:
    from bookchat.container import open_container

    async with open_container(settings, check_index=False) as container:
        chunks = await container.ingestor.reindex()
        typer.echo(
            f"Rebuilt '{container.index.collection}' with {chunks} chunks "
            f"({container.retriever.name} retrieval)."
        )
    return 0


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    limit: Annotated[int, typer.Option(min=1, max=50, help="How many passages.")] = 5,
    module: Annotated[str | None, typer.Option(help="Only this module (its label).")] = None,
    book: Annotated[
        str, typer.Option(help="The book to search (its slug: `bookchat books list`).")
    ] = DEFAULT_BOOK,
) -> None:
    """Search the book and print the best passages with their page URLs."""
    from bookchat.cli.books import book_slug

    settings = cli_settings()
    run_async(_search(settings, book_slug(book), query, limit, module))


async def _search(settings: Settings, slug: str, query: str, limit: int, module: str | None) -> int:
    from bookchat.cli.books import find_book
    from bookchat.container import open_container

    async with open_container(settings) as container:
        book = await find_book(container, slug)
        hits = await container.retriever.search(query, book=book.slug, limit=limit, module=module)
    if not hits:
        ingest = "bookchat ingest" + ("" if slug == DEFAULT_BOOK else f" --book {slug}")
        typer.echo(f"No passage matches. Has the book been ingested? ({ingest})")
        return 1
    for rank, hit in enumerate(hits, start=1):
        snippet = " ".join(hit.text.split())[:240]
        typer.echo(f"{rank}. [{hit.score:.4f}] {' > '.join(hit.heading_path)}")
        typer.echo(f"   {hit.page_url}")
        typer.echo(f"   {snippet}\n")
    return 0


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="What to ask the book.")],
    session: Annotated[
        str | None, typer.Option(help="Continue this conversation (the id a previous ask printed).")
    ] = None,
    selection: Annotated[
        str | None, typer.Option(help="Answer from this text alone, as a reader's selection.")
    ] = None,
    book: Annotated[
        str, typer.Option(help="The book to ask (its slug: `bookchat books list`).")
    ] = DEFAULT_BOOK,
) -> None:
    """Ask the book a question, as a reader would, and print the answer with its sources."""
    from bookchat.cli.books import book_slug

    settings = cli_settings()
    run_async(_ask(settings, book_slug(book), question, session, selection))


async def _ask(
    settings: Settings, slug: str, question: str, session: str | None, selection: str | None
) -> int:
    from pydantic import ValidationError

    from bookchat.chat.schemas import ChatCreate
    from bookchat.cli.books import find_book
    from bookchat.container import open_container

    if not question.strip():
        typer.echo("The question is empty.", err=True)
        return 2
    try:
        request = ChatCreate(message=question, session_id=session, selected_text=selection)
    except ValidationError as exc:
        typer.echo(f"Invalid question: {exc.errors()[0]['msg']}", err=True)
        return 2
    async with open_container(settings) as container, container.sessionmaker() as db:
        read = await container.chat.answer(db, request, book=await find_book(container, slug))
    typer.echo(read.response)
    cited = [c for c in read.citations if c.cited]
    if cited:
        typer.echo("\nSources:")
    for citation in cited:
        where = " > ".join(part for part in (citation.title, citation.section) if part)
        typer.echo(f"  [{citation.index}] {where}")
        if citation.page_url:
            typer.echo(f"      {citation.page_url}")
    typer.echo(
        f"\n({read.mode}, model {read.model}; continue with --session {read.session_id})",
        err=True,
    )
    return 0


@app.command(name="eval")
def evaluate(
    questions: Annotated[Path, typer.Argument(help="JSONL question set.", exists=True)],
    docs: Annotated[Path, typer.Option(help="The docs folder the questions are about.")],
    base_url: Annotated[
        str, typer.Option(help="Base URL for page links.")
    ] = "https://example.org/book",
    k: Annotated[int, typer.Option(min=1, max=50, help="Cut-off for hit@k.")] = 5,
    output: Annotated[Path | None, typer.Option(help="Also write the scores as JSON here.")] = None,
    require: Annotated[
        list[str] | None,
        typer.Option(
            help="Exit 1 unless METRIC>=N or METRIC<=N holds (repeatable), e.g. "
            "off_topic_refused>=0.95 or answerable_refused<=0.03; rates are 0..1.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Measure retrieval (hit@1, hit@k, MRR per mode) and the answers readers get (refusals,
    citations, selections, latency) on a question set, in a scratch store."""
    from bookchat.evaluation.report import Requirement

    if not docs.is_dir():
        typer.echo(f"{docs} is not a folder.", err=True)
        raise typer.Exit(code=2)
    try:
        requirements = [Requirement.parse(text) for text in require or ()]
    except ValueError as exc:
        typer.echo(f"--require: {exc}", err=True)
        raise typer.Exit(code=2) from None
    run_async(_evaluate(cli_settings(), questions, docs, base_url, k, output, requirements))


async def _evaluate(
    settings: Settings,
    questions_file: Path,
    docs: Path,
    base_url: str,
    k: int,
    output: Path | None,
    requirements: list[Requirement],
) -> int:
    import json

    from bookchat.evaluation.questions import load_questions
    from bookchat.evaluation.report import render, unmet
    from bookchat.evaluation.run import run_evaluation

    questions = load_questions(questions_file)
    evaluation = await run_evaluation(
        settings, questions, docs, base_url=base_url, k=k, questions_file=str(questions_file)
    )
    for line in render(evaluation):
        typer.echo(line)
    if output is not None:
        text = json.dumps(evaluation.json(), indent=2, ensure_ascii=False) + "\n"
        await asyncio.to_thread(output.write_text, text, encoding="utf-8")
    failed = unmet(evaluation, requirements)
    if failed:
        typer.echo("\nRequirements not met:\n" + "\n".join(f"  {f}" for f in failed), err=True)
        return 1
    return 0
