"""Migrations build the schema the models describe, on SQLite and PostgreSQL, and undo it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from bookchat.core.db import Base, create_engine
from bookchat.core.migrations import (
    alembic_config,
    declared_head,
    downgrade,
    stored_revisions,
    upgrade,
)


async def inspect_database(url: str, fn: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            result = await connection.run_sync(fn)
    finally:
        await engine.dispose()
    return result


def drift(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_upgrade_matches_the_models_and_downgrade_removes_everything(
    empty_database: str,
) -> None:
    await asyncio.to_thread(upgrade, empty_database)

    assert await inspect_database(empty_database, drift) == []
    tables = await inspect_database(empty_database, table_names)
    assert {"chat_sessions", "messages"} <= tables

    await asyncio.to_thread(downgrade, empty_database, "base")
    assert await inspect_database(empty_database, table_names) == {"alembic_version"}

    # And back up again: migrations are repeatable.
    await asyncio.to_thread(upgrade, empty_database)
    assert await inspect_database(empty_database, drift) == []


def test_one_head_and_dated_file_names() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1
    for revision in script.walk_revisions():
        name = Path(revision.path).name
        assert name[:8].isdigit(), f"{name} should start with its date"


def test_the_declared_head_is_alembics() -> None:
    """`bookchat migrate` and the server's start skip Alembic when the database is at the head
    the files declare: it must be the head Alembic computes."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert declared_head() == script.get_current_head()


async def test_stored_revisions_are_what_alembic_recorded(empty_database: str) -> None:
    engine = create_engine(empty_database)
    try:
        before = await stored_revisions(engine)
        await asyncio.to_thread(upgrade, empty_database)
        after = await stored_revisions(engine)
    finally:
        await engine.dispose()
    assert before == ()
    assert after == (declared_head(),)
