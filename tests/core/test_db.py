"""Database URLs as operators paste them, and timestamps that stay UTC on every dialect."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine

from bookchat.chat.models import ChatSession
from bookchat.core.db import (
    DatabaseTimeouts,
    create_engine,
    create_sessionmaker,
    postgres_timeouts,
    resolve_database_url,
)
from tests.factories import open_db, stored


class TestResolveDatabaseUrl:
    def test_neon_url_pasted_as_is(self) -> None:
        target = resolve_database_url(
            "postgresql://alex:pw@ep-cool-rain-123.eu-central-1.aws.neon.tech/neondb"
            "?sslmode=require&channel_binding=require"
        )
        assert target.url.drivername == "postgresql+asyncpg"
        assert target.url.host == "ep-cool-rain-123.eu-central-1.aws.neon.tech"
        assert dict(target.url.query) == {}
        assert target.connect_args == {"ssl": "require"}

    def test_pooler_host_turns_statement_caches_off(self) -> None:
        target = resolve_database_url(
            "postgresql://alex:pw@ep-cool-rain-123-pooler.eu-central-1.aws.neon.tech/neondb"
            "?sslmode=require"
        )
        assert target.connect_args["statement_cache_size"] == 0
        assert target.url.query["prepared_statement_cache_size"] == "0"
        name_func = target.connect_args["prepared_statement_name_func"]
        assert name_func() != name_func()

    @pytest.mark.parametrize(
        "raw", ["postgres://u@h/db", "postgresql://u@h/db", "postgresql+asyncpg://u@h/db"]
    )
    def test_postgres_schemes_use_asyncpg(self, raw: str) -> None:
        target = resolve_database_url(raw)
        assert target.url.drivername == "postgresql+asyncpg"
        assert target.connect_args == {}

    def test_sqlite_uses_aiosqlite(self) -> None:
        assert resolve_database_url("sqlite:///./x.db").url.drivername == "sqlite+aiosqlite"

    def test_display_hides_the_password(self) -> None:
        assert "pw" not in resolve_database_url("postgresql://u:pw@h/db").display


class TestTimeouts:
    def test_a_direct_host_also_bounds_statements_on_the_server(self) -> None:
        target = resolve_database_url("postgresql://u@ep-cool-rain-123.neon.tech/db")
        args = postgres_timeouts(target, DatabaseTimeouts(connect=2, command=1.5, pool=1))
        assert (args["timeout"], args["command_timeout"]) == (2, 1.5)
        # The server's bound comes a second later: the client's is the one readers meet.
        assert args["server_settings"] == {"statement_timeout": "2500"}

    def test_a_pooler_host_gets_no_startup_options(self) -> None:
        # PgBouncer in transaction mode refuses startup parameters: the connection would fail.
        target = resolve_database_url("postgresql://u@ep-cool-rain-123-pooler.neon.tech/db")
        args = postgres_timeouts(target, DatabaseTimeouts(connect=2, command=1.5, pool=1))
        assert "server_settings" not in args
        assert args["command_timeout"] == 1.5

    async def test_a_statement_past_the_bound_fails_and_the_engine_goes_on(
        self, postgres_url: str
    ) -> None:
        engine = create_engine(postgres_url, timeouts=DatabaseTimeouts(command=0.5))
        try:
            async with engine.connect() as connection:
                shown = (await connection.execute(text("SHOW statement_timeout"))).scalar()
            with pytest.raises(TimeoutError):
                async with engine.connect() as connection:
                    await connection.execute(text("SELECT pg_sleep(3)"))
            async with engine.connect() as connection:
                after = (await connection.execute(text("SELECT 1"))).scalar()
        finally:
            await engine.dispose()
        assert shown == "1500ms"
        assert after == 1


class TestUTCDateTime:
    async def test_round_trip_is_aware_utc(self, database_url: str) -> None:
        moment = datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=5)))
        async with open_db(database_url) as db:
            db.add(ChatSession(title="t", created_at=moment, updated_at=moment))
            await db.commit()
        (saved,) = await stored(database_url, ChatSession)
        assert saved.created_at == moment
        assert saved.created_at.tzinfo is not None
        assert saved.created_at.utcoffset() == timedelta(0)
        assert saved.created_at.astimezone(UTC).hour == 7

    async def test_naive_datetimes_are_refused(self, sqlite_url: str) -> None:
        async with open_db(sqlite_url) as db:
            naive = datetime(2026, 3, 1, 12, 30)
            db.add(ChatSession(title="t", created_at=naive, updated_at=naive))
            with pytest.raises(Exception, match="naive datetime"):
                await db.commit()


class TestSQLiteWriter:
    """Concurrent writers on SQLite queue in-process instead of in SQLite's busy handler."""

    @staticmethod
    def impatient(engine: AsyncEngine) -> None:
        # SQLite's own wait for its write lock off: any in-process contention that reached
        # SQLite would fail at once with "database is locked" instead of waiting.
        @event.listens_for(engine.sync_engine, "connect")
        def no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=0")
            cursor.close()

    async def test_concurrent_write_transactions_all_commit(self, sqlite_url: str) -> None:
        engine = create_engine(sqlite_url)
        self.impatient(engine)
        sessions = create_sessionmaker(engine)

        async def write(n: int) -> None:
            async with sessions() as db:
                db.add(ChatSession(title=f"reader {n}"))
                await db.flush()  # the write transaction is open...
                await asyncio.sleep(0.01)  # ...while the other writers get their turn
                db.add(ChatSession(title=f"reader {n} again"))
                await db.commit()

        try:
            await asyncio.gather(*(write(n) for n in range(16)))
        finally:
            await engine.dispose()
        assert len(await stored(sqlite_url, ChatSession)) == 32

    async def test_reads_go_on_while_a_write_is_open(self, sqlite_url: str) -> None:
        engine = create_engine(sqlite_url)
        sessions = create_sessionmaker(engine)
        try:
            async with sessions() as writer, sessions() as reader:
                writer.add(ChatSession(title="not yet committed"))
                await writer.flush()
                # Another connection reads the last committed state without waiting.
                assert (await reader.scalars(select(ChatSession))).all() == []
                await writer.commit()
                assert len((await reader.scalars(select(ChatSession))).all()) == 1
        finally:
            await engine.dispose()

    async def test_a_failed_write_gives_the_turn_to_the_next(self, sqlite_url: str) -> None:
        engine = create_engine(sqlite_url)
        self.impatient(engine)
        sessions = create_sessionmaker(engine)
        try:
            async with sessions() as db:
                moment = datetime(2026, 3, 1, 12, 30)  # naive: the flush fails mid-write
                db.add(ChatSession(title="x", created_at=moment, updated_at=moment))
                with pytest.raises(Exception, match="naive datetime"):
                    await db.commit()
            async with sessions() as db:
                db.add(ChatSession(title="next"))
                await db.commit()
        finally:
            await engine.dispose()
        assert [s.title for s in await stored(sqlite_url, ChatSession)] == ["next"]

    async def test_a_writer_waiting_on_itself_fails_instead_of_hanging(
        self, sqlite_url: str
    ) -> None:
        engine = create_engine(sqlite_url, sqlite_write_wait=0.2)
        sessions = create_sessionmaker(engine)
        try:
            async with sessions() as first, sessions() as second:
                first.add(ChatSession(title="holds the write slot"))
                await first.flush()
                second.add(ChatSession(title="waits for it in the same task"))
                with pytest.raises(PoolTimeoutError, match="write slot"):
                    await second.flush()
                await first.commit()
        finally:
            await engine.dispose()
        assert [s.title for s in await stored(sqlite_url, ChatSession)] == ["holds the write slot"]

    async def test_a_cancelled_writer_gives_the_turn_to_the_next(self, sqlite_url: str) -> None:
        engine = create_engine(sqlite_url, sqlite_write_wait=2)
        sessions = create_sessionmaker(engine)
        holding = asyncio.Event()

        async def abandoned() -> None:
            async with sessions() as db:
                db.add(ChatSession(title="never committed"))
                await db.flush()
                holding.set()
                await asyncio.sleep(60)  # the reader hung up: this task is cancelled here

        try:
            task = asyncio.create_task(abandoned())
            await holding.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            async with sessions() as db:
                db.add(ChatSession(title="next"))
                await db.commit()
        finally:
            await engine.dispose()
        assert [s.title for s in await stored(sqlite_url, ChatSession)] == ["next"]
