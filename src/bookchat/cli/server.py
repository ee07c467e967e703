"""`bookchat serve` and `bookchat migrate`: running the service and its schema."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bookchat.cli.common import app, load_settings

if TYPE_CHECKING:
    from bookchat.core.config import Settings

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

    from bookchat.cli.http_protocol import DeadlineHttpToolsProtocol

    settings = load_settings()
    proxies = forwarded_allow_ips(settings)
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
        http=DeadlineHttpToolsProtocol,  # uvicorn's httptools protocol, with read deadlines
        proxy_headers=True,
        forwarded_allow_ips=proxies,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_seconds + SHUTDOWN_MARGIN_SECONDS),
    )


def forwarded_allow_ips(settings: Settings) -> list[str]:
    """TRUSTED_PROXIES for uvicorn, so the server and the app believe the same proxies.

    uvicorn otherwise trusts X-Forwarded-For from 127.0.0.1 (or FORWARDED_ALLOW_IPS) and
    rewrites the client address before the app sees it: a local client could pick any address
    and with it a fresh rate-limit quota. An empty list trusts nobody. Entries are given as
    networks, the form in which uvicorn and `client_ip` read them alike.
    """
    from bookchat.core.ratelimit import parse_trusted_proxies

    try:
        networks = parse_trusted_proxies(tuple(settings.trusted_proxies))
    except ValueError as exc:
        typer.echo(f"Invalid configuration:\n  {exc}", err=True)
        raise typer.Exit(code=2) from None
    return [str(network) for network in networks]


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
