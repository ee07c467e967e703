"""The `bookchat` command line."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError

from bookchat.core.config import Settings, get_settings

app = typer.Typer(
    name="bookchat",
    help="Chat with a Markdown/Docusaurus textbook.",
    no_args_is_help=True,
    add_completion=False,
)


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


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    settings = load_settings()
    uvicorn.run(
        "bookchat.main:create_app",
        factory=True,
        host=host,
        port=port,
        reload=reload,
        log_config=None,  # our structlog configuration handles uvicorn's loggers
        log_level=settings.log_level.lower(),
        access_log=False,  # the request middleware logs one line per request
        proxy_headers=True,
    )


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations (creates the SQLite file on first use)."""
    from bookchat.core.db import resolve_database_url
    from bookchat.core.logging import configure_logging
    from bookchat.core.migrations import upgrade

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format.value)
    raw = settings.database_url.get_secret_value()
    target = resolve_database_url(raw)
    try:
        upgrade(raw, revision)
    except Exception as exc:  # a CLI user needs the reason, not a traceback
        typer.echo(f"Migration failed on {target.display}: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"Database at {target.display} is at revision {revision}.")


if __name__ == "__main__":  # pragma: no cover
    app()
