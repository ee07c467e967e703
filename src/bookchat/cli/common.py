"""The `bookchat` Typer app and what its commands share: settings, logging, running a coroutine."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from bookchat.core.config import Settings

# Every command imports only what it runs (`bookchat --help` needs Typer alone): the settings,
# SQLAlchemy and the rest are imported inside the functions that use them, and
# tests/test_startup.py checks that no command's import graph grows back.

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
    from pydantic import ValidationError

    from bookchat.core.config import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']).upper() or 'settings'}: {err['msg']}"
            for err in exc.errors()
        ]
        typer.echo("Invalid configuration:\n" + "\n".join(lines), err=True)
        raise typer.Exit(code=2) from None


def run_async(work: Coroutine[Any, Any, int]) -> None:
    """Run a command's coroutine; known operational problems become one line and exit 1."""
    from sqlalchemy.exc import SQLAlchemyError

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
