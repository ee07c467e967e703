"""Applying Alembic migrations from code (`bookchat migrate`, `make run`, the tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

logger = structlog.get_logger(__name__)

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def migrations_dir() -> Path:
    """The migrations folder: inside an installed wheel, or at the root of a checkout."""
    for candidate in (_PACKAGE_DIR / "_migrations", _PACKAGE_DIR.parent.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("the Alembic migrations folder is missing from this installation")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    # `%` would be read as interpolation by configparser.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logging"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database to `revision` (creates a SQLite file's folder first)."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def migrate_to(database_url: str, revision: str = "head") -> str | None:
    """Move the database to `revision`, up or down (`base` empties it); the revision it ends at.

    Alembic's upgrade to an older revision does nothing, silently: a target that is an ancestor
    of the database's revision is a downgrade.
    """
    current = asyncio.run(_read_revision(database_url))
    if current is not None and current == (head_revision() if revision == "head" else revision):
        # Already there: Alembic's environment would load every model to do nothing.
        return current
    if current is not None and revision != current and _is_older(revision, current):
        downgrade(database_url, revision)
    else:
        upgrade(database_url, revision)
    return asyncio.run(_read_revision(database_url))


def _is_older(revision: str, current: str) -> bool:
    if revision == "base":
        return True
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    target = script.get_revision(revision)  # raises for an unknown revision
    if target is None or target.revision == current:
        return False
    return any(r.revision == target.revision for r in script.iterate_revisions(current, "base"))


async def _read_revision(database_url: str) -> str | None:
    from bookchat.core.db import create_engine  # local: db imports nothing from here, keep it so

    engine = create_engine(database_url)
    try:
        return await current_revision(engine)
    finally:
        await engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None for an empty database)."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def warn_if_not_migrated(engine: AsyncEngine) -> None:
    """Log one clear line at startup when the schema is behind or the database is down."""
    try:
        current = await current_revision(engine)
    except Exception as exc:  # startup goes on; readiness reports the outage
        logger.warning("database.unreachable_at_startup", error_type=type(exc).__name__)
        return
    head = head_revision()
    if current != head:
        logger.warning(
            "database.not_migrated",
            current=current,
            head=head,
            hint="run `bookchat migrate` (make run does it for you)",
        )
