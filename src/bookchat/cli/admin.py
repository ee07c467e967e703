"""`bookchat create-admin` and `link-identity`: admin accounts and how they sign in."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from bookchat.cli.common import app, cli_settings, run_async

if TYPE_CHECKING:
    from bookchat.core.config import Settings


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

    settings = cli_settings()
    address = _email_or_exit(email)
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


@app.command(name="link-identity")
def link_identity(
    email: Annotated[
        str, typer.Argument(help="The local account's email address.", show_default=False)
    ],
    identity: Annotated[
        str,
        typer.Argument(
            help="The Better-Auth user id (the `sub` of its tokens).", show_default=False
        ),
    ],
) -> None:
    """Let a Better-Auth identity sign in as an existing account (admins included)."""
    settings = cli_settings()
    address = _email_or_exit(email)
    run_async(_link_identity(settings, address, identity))


async def _link_identity(settings: Settings, email: str, identity: str) -> int:
    from bookchat.accounts.identities import link_identity
    from bookchat.core.db import create_engine, create_sessionmaker

    # A refusal is a LinkRefused (an AppError): run_async prints it and exits 1.
    engine = create_engine(settings.database_url.get_secret_value())
    try:
        async with create_sessionmaker(engine)() as db:
            result = await link_identity(db, email, identity)
    finally:
        await engine.dispose()
    role = result.user.role.value
    if result.changed:
        typer.echo(f"{email} ({role}) now signs in as the identity {identity}.")
    else:
        typer.echo(f"{email} ({role}) is already linked to the identity {identity}.")
    return 0


def _email_or_exit(email: str) -> str:
    """The normalised address, or exit 2 with the reason it is not one."""
    from bookchat.accounts.schemas import valid_email

    try:
        return valid_email(email)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=2) from None
