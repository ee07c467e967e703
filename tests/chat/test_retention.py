"""Retention: `bookchat purge` and the service under it delete exactly the conversations last
active before the cutoff, with their messages and feedback, in batches; on SQLite and
PostgreSQL, over conversations of several readers and anonymous ones at various ages."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from bookchat.accounts.service import create_user
from bookchat.chat.models import ChatSession, Message, MessageFeedback, MessageRole
from bookchat.chat.retention import (
    Deleted,
    delete_sessions,
    inactive_since,
    purge_conversations,
    retention_cutoff,
)
from bookchat.cli import app
from bookchat.core.db import create_engine, create_sessionmaker, utcnow
from tests.factories import count, open_db, stored

NOW = utcnow()
CUTOFF = retention_cutoff(30, now=NOW)
runner = CliRunner()


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


async def conversation(
    db: AsyncSession,
    user_id: uuid.UUID | None,
    *,
    updated: datetime,
    messages: list[datetime],
    rated_by: tuple[uuid.UUID | None, ...] = (),
) -> uuid.UUID:
    """A stored conversation: questions and answers at `messages`, the last answer rated by
    each of `rated_by`."""
    session = ChatSession(
        user_id=user_id,
        title="a question",
        created_at=min([updated, *messages]),
        updated_at=updated,
    )
    db.add(session)
    await db.flush()
    answer: Message | None = None
    for number, at in enumerate(messages):
        role = MessageRole.USER if number % 2 == 0 else MessageRole.ASSISTANT
        message = Message(
            session_id=session.id,
            role=role,
            content=f"message {number}",
            mode="rag" if role is MessageRole.ASSISTANT else None,
            created_at=at,
        )
        db.add(message)
        answer = message if role is MessageRole.ASSISTANT else answer
    await db.flush()
    for reader in rated_by:
        assert answer is not None
        db.add(MessageFeedback(message_id=answer.id, user_id=reader, rating=-1, comment="no"))
    await db.commit()
    return session.id


@dataclass
class Seeded:
    old: list[uuid.UUID] = field(default_factory=list)  # in the order seeded
    kept: list[uuid.UUID] = field(default_factory=list)

    @property
    def everything(self) -> set[uuid.UUID]:
        return {*self.old, *self.kept}


async def seed(database_url: str) -> Seeded:
    """Conversations of two readers and anonymous ones, on both sides of a 30-day cutoff."""
    seeded = Seeded()
    async with open_db(database_url) as db:
        alice = (await create_user(db, email="alice@example.org", password=None)).id
        bob = (await create_user(db, email="bob@example.org", password=None)).id
        for user, updated, messages, rated_by in [
            (alice, ago(90), [ago(90), ago(90)], (alice,)),
            (alice, ago(31), [ago(31), ago(31)], (alice, None)),
            (bob, ago(45), [ago(45), ago(45)], (bob,)),
            (None, ago(60), [ago(60), ago(60)], ()),
            (bob, ago(100), [], ()),  # a conversation without messages
        ]:
            seeded.old.append(
                await conversation(db, user, updated=updated, messages=messages, rated_by=rated_by)
            )
        for user, updated, messages, rated_by in [
            (alice, ago(1), [ago(1), ago(1)], (alice,)),
            # Its question is old, its answer arrived after the cutoff: still active.
            (bob, ago(40), [ago(40), ago(29)], (bob,)),
            # Just inside the window.
            (bob, ago(29.99), [ago(31), ago(31)], ()),
            (None, ago(2), [ago(2), ago(2)], ()),
        ]:
            seeded.kept.append(
                await conversation(db, user, updated=updated, messages=messages, rated_by=rated_by)
            )
    return seeded


async def remaining(database_url: str) -> tuple[set[uuid.UUID], set[uuid.UUID], int]:
    """Session ids left, the sessions their messages belong to, and the feedback rows left."""
    sessions = {s.id for s in await stored(database_url, ChatSession)}
    of_messages = {m.session_id for m in await stored(database_url, Message)}
    return sessions, of_messages, await count(database_url, MessageFeedback)


class TestPurge:
    async def test_deletes_exactly_the_old_conversations_in_batches(
        self, database_url: str
    ) -> None:
        seeded = await seed(database_url)
        engine = create_engine(database_url)
        sessionmaker = create_sessionmaker(engine)
        try:
            counted = await purge_conversations(sessionmaker, CUTOFF, dry_run=True)
            untouched = await remaining(database_url)
            deleted = await purge_conversations(sessionmaker, CUTOFF, batch_size=2)
            left = await remaining(database_url)
            again = await purge_conversations(sessionmaker, CUTOFF, batch_size=2)
        finally:
            await engine.dispose()

        assert counted == Deleted(sessions=5, messages=8, feedback=4, batches=0)
        assert untouched[0] == seeded.everything
        assert deleted == Deleted(sessions=5, messages=8, feedback=4, batches=3)
        sessions, of_messages, feedback = left
        assert sessions == set(seeded.kept)
        assert of_messages == set(seeded.kept)  # no message left without its conversation
        assert feedback == 2  # the ratings on the two kept conversations that had one
        assert again == Deleted()

    async def test_a_conversation_active_again_since_it_was_picked_is_kept(
        self, database_url: str
    ) -> None:
        seeded = await seed(database_url)
        revived = seeded.old[0]  # 90 days old, a question and an answer
        async with open_db(database_url) as db:
            # Picked as old, then the reader asked a new question in it before the delete.
            db.add(Message(session_id=revived, role=MessageRole.USER, content="again"))
            await db.commit()
            deleted = await delete_sessions(db, [revived], inactive_since(CUTOFF))
            await db.commit()

        assert deleted.sessions == deleted.messages == deleted.feedback == 0
        assert await count(database_url, Message, session_id=revived) == 3

    async def test_on_postgresql_a_conversation_being_written_is_skipped_not_waited_for(
        self, clean_postgres_url: str
    ) -> None:
        seeded = await seed(clean_postgres_url)
        busy = seeded.old[0]
        engine = create_engine(clean_postgres_url)
        try:
            async with engine.connect() as turn:
                # Another transaction holds the session's row, as a turn storing a question does.
                await turn.execute(
                    update(ChatSession).where(ChatSession.id == busy).values(title="busy")
                )
                async with asyncio.timeout(10):  # it must not wait for the lock
                    deleted = await purge_conversations(create_sessionmaker(engine), CUTOFF)
                await turn.rollback()
            again = await purge_conversations(create_sessionmaker(engine), CUTOFF)
        finally:
            await engine.dispose()

        assert deleted.sessions == 4
        assert again.sessions == 1  # the next run takes it
        assert (await remaining(clean_postgres_url))[0] == set(seeded.kept)


class TestPurgeCommand:
    @pytest.fixture
    def seeded_sqlite(
        self, sqlite_url: str, fresh_settings: None, monkeypatch: pytest.MonkeyPatch
    ) -> tuple[str, Seeded]:
        monkeypatch.setenv("DATABASE_URL", sqlite_url)
        return sqlite_url, asyncio.run(seed(sqlite_url))

    def test_uses_the_setting_and_says_what_it_deleted(
        self, seeded_sqlite: tuple[str, Seeded], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        url, seeded = seeded_sqlite
        monkeypatch.setenv("CONVERSATION_RETENTION_DAYS", "30")
        dry = runner.invoke(app, ["purge", "--dry-run"])
        done = runner.invoke(app, ["purge", "--batch-size", "3"])
        again = runner.invoke(app, ["purge"])

        assert dry.exit_code == done.exit_code == again.exit_code == 0, dry.output + done.output
        assert "Would delete 5 conversations (8 messages, 4 ratings)" in dry.output
        assert "nothing deleted (--dry-run)" in dry.output
        assert "Deleted 5 conversations (8 messages, 4 ratings)" in done.output
        assert "last active more than 30 days ago (before " in done.output
        assert "UTC), in 2 batches." in done.output
        assert "Deleted 0 conversations" in again.output
        assert asyncio.run(remaining(url))[0] == set(seeded.kept)

    def test_days_overrides_the_setting(
        self, seeded_sqlite: tuple[str, Seeded], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        url, _ = seeded_sqlite
        monkeypatch.setenv("CONVERSATION_RETENTION_DAYS", "3650")
        done = runner.invoke(app, ["purge", "--days", "35"])

        assert done.exit_code == 0, done.output
        # 90, 45, 60 and 100 days old; the one last active 31 days ago is kept this time.
        assert "Deleted 4 conversations (6 messages, 2 ratings)" in done.output
        assert len(asyncio.run(remaining(url))[0]) == 5

    def test_with_retention_off_it_deletes_nothing_and_says_so(
        self, seeded_sqlite: tuple[str, Seeded]
    ) -> None:
        url, seeded = seeded_sqlite
        done = runner.invoke(app, ["purge"])

        assert done.exit_code == 0, done.output
        assert "CONVERSATION_RETENTION_DAYS is not set" in done.output
        assert "nothing deleted" in done.output
        assert asyncio.run(remaining(url))[0] == seeded.everything

    @pytest.mark.parametrize("days", ["0", "-3", "soon"])
    def test_a_bad_number_of_days_is_a_usage_error(
        self, seeded_sqlite: tuple[str, Seeded], days: str
    ) -> None:
        url, seeded = seeded_sqlite
        done = runner.invoke(app, ["purge", "--days", days])

        assert done.exit_code == 2
        assert "--days" in done.output
        assert asyncio.run(remaining(url))[0] == seeded.everything

    def test_a_bad_setting_is_named(
        self, seeded_sqlite: tuple[str, Seeded], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CONVERSATION_RETENTION_DAYS", "0")
        done = runner.invoke(app, ["purge"])

        assert done.exit_code == 2
        assert "CONVERSATION_RETENTION_DAYS" in done.output
