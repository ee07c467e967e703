"""Database URLs as operators paste them, and timestamps that stay UTC on every dialect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from bookchat.chat.models import ChatSession
from bookchat.core.db import resolve_database_url
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
