"""`bookchat purge`: conversations past their retention deleted from the database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from bookchat.cli.common import app, cli_settings, run_async

if TYPE_CHECKING:
    from bookchat.core.config import Settings

# Exit 0 with this when retention is off and no --days is given, so the same cron line can be
# installed everywhere and only deletes where CONVERSATION_RETENTION_DAYS is set.
RETENTION_OFF = (
    "CONVERSATION_RETENTION_DAYS is not set and --days was not given: nothing deleted "
    "(conversations are kept until deleted)."
)


@app.command(name="purge")
def purge(
    days: Annotated[
        int | None,
        typer.Option(
            "--days",
            min=1,
            max=36_500,
            help="Delete conversations inactive for more than this many days "
            "(default: CONVERSATION_RETENTION_DAYS).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", min=1, max=10_000, help="Conversations per transaction."),
    ] = 500,
) -> None:
    """Delete old conversations with their messages and feedback, in batches."""
    settings = cli_settings()
    days = days if days is not None else settings.conversation_retention_days
    if days is None:
        typer.echo(RETENTION_OFF)
        return
    run_async(_purge(settings, days, dry_run=dry_run, batch_size=batch_size))


async def _purge(settings: Settings, days: int, *, dry_run: bool, batch_size: int) -> int:
    from bookchat.chat.retention import purge_conversations, retention_cutoff
    from bookchat.core.db import create_engine, create_sessionmaker

    # The database only: opening the container would lock embedded Qdrant while a server runs.
    cutoff = retention_cutoff(days)
    engine = create_engine(settings.database_url.get_secret_value())
    try:
        found = await purge_conversations(
            create_sessionmaker(engine), cutoff, batch_size=batch_size, dry_run=dry_run
        )
    finally:
        await engine.dispose()
    what = (
        f"{found.sessions} conversations ({found.messages} messages, {found.feedback} ratings) "
        f"last active more than {days} days ago (before {cutoff:%Y-%m-%d %H:%M} UTC)"
    )
    if dry_run:
        typer.echo(f"Would delete {what}; nothing deleted (--dry-run).")
    else:
        batches = "batch" if found.batches == 1 else "batches"
        typer.echo(f"Deleted {what}, in {found.batches} {batches}.")
    return 0
