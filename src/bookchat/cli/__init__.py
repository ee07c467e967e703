"""The `bookchat` command line: one Typer app, its commands grouped by what they work on."""

from __future__ import annotations

from bookchat.cli.common import app

# Importing a module registers its commands, in the order `bookchat --help` lists them.
# isort: off
from bookchat.cli import server  # noqa: F401  serve, migrate
from bookchat.cli import book  # noqa: F401  ingest, reindex, search, ask, eval
from bookchat.cli import books  # noqa: F401  books add, list, remove
from bookchat.cli import admin  # noqa: F401  create-admin, link-identity
from bookchat.cli import conversations  # noqa: F401  purge
# isort: on

__all__ = ["app"]
