"""Applying Alembic migrations from code (`bookchat migrate`, `make run`, the tests)."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncEngine

# Alembic is imported where a migration runs or the revision graph is needed: importing it loads
# every dialect's DDL module, the Mako templates and Pygments, which is most of the time of a
# `bookchat migrate` (or a server start) that finds the database already at head.

logger = structlog.get_logger(__name__)

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def migrations_dir() -> Path:
    """The migrations folder: inside an installed wheel, or at the root of a checkout."""
    for candidate in (_PACKAGE_DIR / "_migrations", _PACKAGE_DIR.parent.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("the Alembic migrations folder is missing from this installation")


def alembic_config(database_url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    # `%` would be read as interpolation by configparser.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logging"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database to `revision` (creates a SQLite file's folder first)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(database_url), revision)


def migrate_to(database_url: str, revision: str = "head") -> str | None:
    """Move the database to `revision`, up or down (`base` empties it); the revision it ends at.

    Alembic's upgrade to an older revision does nothing, silently: a target that is an ancestor
    of the database's revision is a downgrade.
    """
    target = declared_head() if revision == "head" else revision
    stored = asyncio.run(_stored_revisions(database_url))
    if target is not None and stored == (target,):
        # Already there: Alembic and its environment (every model) would load to do nothing.
        return target
    current = asyncio.run(_read_revision(database_url))
    if current is not None and revision != current and _is_older(revision, current):
        downgrade(database_url, revision)
    else:
        upgrade(database_url, revision)
    return asyncio.run(_read_revision(database_url))


def _is_older(revision: str, current: str) -> bool:
    from alembic.script import ScriptDirectory

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
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    from alembic.migration import MigrationContext

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


def declared_head() -> str | None:
    """The one head revision the migration files declare, read from their `revision` and
    `down_revision` assignments without importing them or Alembic; None when that cannot tell
    (several heads, a value that is not a literal), and Alembic must be asked."""
    parents: dict[str, tuple[str, ...]] = {}
    for path in (migrations_dir() / "versions").glob("*.py"):
        declared: dict[str, object] = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            target: ast.expr
            if isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            else:
                continue
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                try:
                    declared[target.id] = ast.literal_eval(value)
                except ValueError:
                    return None
        revision, down = declared.get("revision"), declared.get("down_revision")
        if not isinstance(revision, str) or not isinstance(down, str | tuple | type(None)):
            return None
        parents[revision] = (down,) if isinstance(down, str) else tuple(down or ())
    heads = parents.keys() - {parent for found in parents.values() for parent in found}
    return next(iter(heads)) if len(heads) == 1 else None


async def stored_revisions(engine: AsyncEngine) -> tuple[str, ...]:
    """The revisions recorded in the database's `alembic_version` table (none before the first
    migration), read with plain SQL."""
    from sqlalchemy import inspect, text

    def read(connection: Connection) -> tuple[str, ...]:
        if not inspect(connection).has_table("alembic_version"):
            return ()
        rows = connection.execute(text("SELECT version_num FROM alembic_version"))
        return tuple(sorted(str(row[0]) for row in rows))

    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def _stored_revisions(database_url: str) -> tuple[str, ...]:
    from bookchat.core.db import create_engine

    engine = create_engine(database_url)
    try:
        return await stored_revisions(engine)
    finally:
        await engine.dispose()


async def warn_if_not_migrated(engine: AsyncEngine) -> None:
    """Log one clear line at startup when the schema is behind or the database is down."""
    try:
        head = declared_head()
        if head is not None and await stored_revisions(engine) == (head,):
            return  # at head, known without loading Alembic
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
