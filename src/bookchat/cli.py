"""The `bookchat` command line."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from bookchat.core.config import Settings, get_settings

app = typer.Typer(
    name="bookchat",
    help="Chat with a Markdown/Docusaurus textbook.",
    no_args_is_help=True,
    add_completion=False,
)


def show_version(value: bool) -> None:
    if value:
        from bookchat import __version__

        typer.echo(f"bookchat {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Chat with a Markdown/Docusaurus textbook."""


def load_settings() -> Settings:
    """The settings, or a readable message and exit code 2 when they are invalid."""
    try:
        return get_settings()
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']).upper() or 'settings'}: {err['msg']}"
            for err in exc.errors()
        ]
        typer.echo("Invalid configuration:\n" + "\n".join(lines), err=True)
        raise typer.Exit(code=2) from None


# Beyond SHUTDOWN_TIMEOUT_SECONDS, the streams still open are cut (their partial answers are
# stored); uvicorn waits this much longer before it cancels what remains.
SHUTDOWN_MARGIN_SECONDS = 5.0


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(min=1, help="Worker processes (more than one needs QDRANT_URL)."),
    ] = 1,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Serve the HTTP API (applies migrations first when MIGRATE_ON_START=true)."""
    import uvicorn

    settings = load_settings()
    if workers > 1:
        check_several_workers(settings, reload=reload)
    if settings.migrate_on_start:
        apply_migrations(settings, "head")
    if workers > 1:
        share_metrics_between_workers()
    uvicorn.run(
        "bookchat.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        reload=reload,
        log_config=None,  # our structlog configuration handles uvicorn's loggers
        log_level=settings.log_level.lower(),
        access_log=False,  # the request middleware logs one line per request
        proxy_headers=True,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_seconds + SHUTDOWN_MARGIN_SECONDS),
    )


def check_several_workers(settings: Settings, *, reload: bool) -> None:
    """Refuse what cannot work with several processes; warn about what works worse."""
    if reload:
        typer.echo("--reload runs one process: drop --workers or --reload.", err=True)
        raise typer.Exit(code=2)
    if settings.qdrant_url is None:
        typer.echo(
            "Embedded Qdrant (QDRANT_PATH) can be opened by one process only, so it cannot "
            "serve several workers. Serve with --workers 1, or set QDRANT_URL to a Qdrant "
            "server (docker run -p 6333:6333 qdrant/qdrant, or Qdrant Cloud) and run "
            "`bookchat reindex` once against it.",
            err=True,
        )
        raise typer.Exit(code=2)
    if settings.redis_url is None:
        typer.echo(
            "Warning: without REDIS_URL every worker keeps its own rate limits and caches "
            "(a reader gets the chat limit once per worker).",
            err=True,
        )


def share_metrics_between_workers() -> None:
    """Point every worker's metrics at one folder, so /metrics adds the workers up."""
    import atexit
    import shutil
    import tempfile

    from bookchat.core.metrics import MULTIPROC_ENV

    folder = os.environ.get(MULTIPROC_ENV)
    if folder:
        # The operator's folder: last run's files would be counted again.
        for stale in Path(folder).glob("*.db"):
            stale.unlink()
        return
    folder = tempfile.mkdtemp(prefix="bookchat-metrics-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ[MULTIPROC_ENV] = folder  # inherited by the workers uvicorn starts


@app.command()
def migrate(
    revision: Annotated[
        str, typer.Argument(help="Target revision: head, an older revision id, or base.")
    ] = "head",
) -> None:
    """Apply database migrations, or go back to an older revision (creates SQLite files)."""
    from bookchat.core.logging import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format.value)
    apply_migrations(settings, revision)


def apply_migrations(settings: Settings, revision: str) -> None:
    """Move the database to `revision` (up, or down to an older one); a failure is one line
    and exit code 1."""
    from bookchat.core.db import resolve_database_url
    from bookchat.core.migrations import migrate_to

    raw = settings.database_url.get_secret_value()
    target = resolve_database_url(raw)
    try:
        reached = migrate_to(raw, revision)
    except Exception as exc:  # a CLI user needs the reason, not a traceback
        typer.echo(f"Migration failed on {target.display}: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"Database at {target.display} is at revision {reached or 'base (empty)'}.")


def run_async(work: Coroutine[Any, Any, int]) -> None:
    """Run a command's coroutine; known operational problems become one line and exit 1."""
    from bookchat.core.errors import AppError

    try:
        code = asyncio.run(work)
    except AppError as exc:  # configuration, a store or vendor outage, a bad input file
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from None
    except BrokenPipeError:
        # The reader of our output left (`bookchat search ... | head`): nothing to report, and
        # nothing more to write (the exit's own flush would fail on the closed pipe too).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(code=0) from None
    except (OSError, SQLAlchemyError) as exc:
        typer.echo(
            f"The database is unavailable or not migrated ({type(exc).__name__}); "
            "check DATABASE_URL and run `bookchat migrate`.",
            err=True,
        )
        raise typer.Exit(code=1) from None
    if code:
        raise typer.Exit(code=code)


def cli_settings() -> Settings:
    """Settings for a command: quiet logs (warnings only) unless LOG_LEVEL says DEBUG."""
    from bookchat.core.logging import configure_logging

    settings = load_settings()
    level = "DEBUG" if settings.log_level == "DEBUG" else "WARNING"
    configure_logging(level, settings.log_format.value)
    return settings


@app.command()
def ingest(
    path: Annotated[
        Path | None,
        typer.Argument(help="Docs folder (default: BOOK_DOCS_DIR).", show_default=False),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="Site URL of the docs (default: BOOK_BASE_URL).")
    ] = None,
    prune: Annotated[
        bool, typer.Option(help="Delete stored documents whose files are gone.")
    ] = False,
    if_empty: Annotated[
        bool, typer.Option(help="Do nothing when the book already has documents.")
    ] = False,
) -> None:
    """Ingest a Docusaurus/Markdown docs folder (unchanged pages are skipped)."""
    settings = cli_settings()
    folder = path or Path(settings.book_docs_dir)
    if not folder.is_dir():
        typer.echo(f"{folder} is not a folder.", err=True)
        raise typer.Exit(code=2)
    run_async(_ingest(settings, folder, base_url or settings.book_base_url, prune, if_empty))


async def _ingest(
    settings: Settings, folder: Path, base_url: str, prune: bool, if_empty: bool
) -> int:
    from rich.console import Console
    from rich.progress import Progress
    from sqlalchemy import func, select

    from bookchat.container import open_container
    from bookchat.content.loader import LoaderError, load_folder
    from bookchat.content.models import Document

    console = Console(stderr=True)
    async with open_container(settings) as container:
        if if_empty:
            async with container.sessionmaker() as db:
                stored = await db.scalar(select(func.count()).select_from(Document)) or 0
            if stored:
                # The database is the source of truth: make sure the index still matches it.
                readded, deleted = await container.ingestor.reconcile()
                repaired = f" (index repaired: {readded} chunks re-added, {deleted} removed)"
                console.print(
                    f"The book already has {stored} documents; nothing to ingest"
                    f"{repaired if readded or deleted else ''}."
                )
                return 0
        try:
            documents = await asyncio.to_thread(load_folder, folder, base_url)
        except LoaderError as exc:
            console.print(f"[red]{exc}[/red]")
            return 1
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"Ingesting {folder}", total=len(documents))

            def advance(source_path: str, outcome: str) -> None:
                if outcome != "removed":
                    progress.update(task, advance=1, description=f"{outcome:9} {source_path}")

            report = await container.ingestor.ingest(
                documents, prune=prune, progress=advance, reconcile=True
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
) -> None:
    """Search the book and print the best passages with their page URLs."""
    run_async(_search(cli_settings(), query, limit, module))


async def _search(settings: Settings, query: str, limit: int, module: str | None) -> int:
    from bookchat.container import open_container

    async with open_container(settings) as container:
        hits = await container.retriever.search(query, limit=limit, module=module)
    if not hits:
        typer.echo("No passage matches. Has the book been ingested? (bookchat ingest)")
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
) -> None:
    """Ask the book a question, as a reader would, and print the answer with its sources."""
    run_async(_ask(cli_settings(), question, session, selection))


async def _ask(
    settings: Settings, question: str, session: str | None, selection: str | None
) -> int:
    from bookchat.chat.schemas import ChatCreate
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
        read = await container.chat.answer(db, request)
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
) -> None:
    """Measure retrieval (hit@1, hit@k, MRR; BM25, dense, hybrid) in a scratch store."""
    if not docs.is_dir():
        typer.echo(f"{docs} is not a folder.", err=True)
        raise typer.Exit(code=2)
    run_async(_evaluate(cli_settings(), questions, docs, base_url, k, output))


async def _evaluate(
    settings: Settings, questions_file: Path, docs: Path, base_url: str, k: int, output: Path | None
) -> int:
    import json
    import tempfile
    from dataclasses import asdict

    from bookchat.container import open_container
    from bookchat.content.loader import load_folder
    from bookchat.core.migrations import upgrade
    from bookchat.retrieval.evaluation import evaluate, load_questions, modes_for

    questions = load_questions(questions_file)
    with tempfile.TemporaryDirectory(prefix="bookchat-eval-") as scratch:
        url = f"sqlite+aiosqlite:///{scratch}/eval.db"
        await asyncio.to_thread(upgrade, url)
        scratch_settings = settings.model_copy(
            update={
                "database_url": SecretStr(url),
                "qdrant_url": None,
                "qdrant_path": f"{scratch}/qdrant",
                "qdrant_collection": "eval",
            }
        )
        async with open_container(scratch_settings) as container:
            documents = await asyncio.to_thread(load_folder, docs, base_url)
            report = await container.ingestor.ingest(documents)
            embedder = container.providers.embedder
            typer.echo(
                f"Ingested {len(documents)} documents, {report.chunks} chunks in "
                f"{report.seconds:.2f} s; {len(questions)} questions; "
                f"embedder: {embedder.name if embedder else 'none'}"
            )
            results = [
                await evaluate(container.retriever, questions, mode=mode, k=k)
                for mode in modes_for(container.retriever)
            ]
    typer.echo(
        f"{'mode':8} {'hit@1':>7} {'hit@' + str(k):>7} {'MRR':>7}   "
        "relevance floor: answerable refused, off-topic refused"
    )
    for s in results:
        typer.echo(
            f"{s.mode:8} {s.hit_at_1:7.3f} {s.hit_at_k:7.3f} {s.mrr:7.3f}   "
            f"{s.refused_answerable}/{s.questions}, {s.refused_off_topic}/{s.off_topic}"
        )
    if output is not None:
        text = json.dumps([asdict(s) for s in results], indent=2) + "\n"
        await asyncio.to_thread(output.write_text, text)
    return 0


@app.command(name="create-admin")
def create_admin(
    email: Annotated[str, typer.Argument(help="The admin's email address.", show_default=False)],
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the password from one line of stdin (no prompt)."
        ),
    ] = False,
) -> None:
    """Create an admin account, or make an existing account an admin (and set its password)."""
    from bookchat.accounts.passwords import password_problem
    from bookchat.accounts.schemas import valid_email

    settings = cli_settings()
    try:
        address = valid_email(email)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=2) from None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt(
            "Password (empty keeps an existing account's password)",
            default="",
            show_default=False,
            hide_input=True,
            confirmation_prompt=True,
        )
    problem = password_problem(password, address) if password else None
    if problem is not None:
        typer.echo(f"Weak password: {problem}", err=True)
        raise typer.Exit(code=1)
    run_async(_create_admin(settings, address, password or None))


async def _create_admin(settings: Settings, email: str, password: str | None) -> int:
    from bookchat.accounts.service import ensure_admin
    from bookchat.core.db import create_engine, create_sessionmaker

    # The database only: opening the container would lock embedded Qdrant while a server runs.
    # A weak or missing password is a ValidationFailed: run_async prints it and exits 1.
    engine = create_engine(settings.database_url.get_secret_value())
    try:
        async with create_sessionmaker(engine)() as db:
            result = await ensure_admin(db, email, password)
    finally:
        await engine.dispose()
    if result.created:
        typer.echo(f"Created the admin account {email}.")
    elif result.was_admin:
        change = "password updated" if result.password_set else "nothing changed"
        typer.echo(f"{email} is already an admin; {change}.")
    else:
        change = " and its password updated" if result.password_set else ""
        typer.echo(f"{email} is now an admin{change}.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    app()
