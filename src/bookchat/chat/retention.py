"""Retention: conversations deleted with their messages and feedback, a batch at a time.

`purge_conversations` deletes the conversations nobody has touched for a number of days
(`CONVERSATION_RETENTION_DAYS`, `bookchat purge`); `delete_reader_sessions` deletes every
conversation of one reader (`DELETE /api/v1/chat/sessions`). Both pick a batch of session ids,
then delete the batch's feedback, messages and sessions in one short transaction, so neither
dialect holds its locks for long and a large purge never waits on one huge statement.

Each delete re-checks why a session was picked (still stale, still the reader's): a reader who
writes to an old conversation between the pick and the delete keeps it. On PostgreSQL the
picked sessions are also locked (`FOR UPDATE SKIP LOCKED`), so a turn that is writing to one
at that moment is skipped rather than waited for, and two purges never pick the same rows; on
SQLite the first delete takes the file's write lock, after which nothing else can write.

Imports stay light (SQLAlchemy and the chat tables): `bookchat purge` loads no web stack.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import ColumnElement, CursorResult, Select, and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookchat.books.names import DEFAULT_BOOK
from bookchat.chat.models import ChatSession, Message, MessageFeedback
from bookchat.core.db import utcnow

logger = structlog.get_logger(__name__)

# Sessions per transaction: small enough that a batch's deletes take milliseconds, large
# enough that a purge of a year of conversations is a few hundred transactions.
BATCH_SIZE = 500


@dataclass(frozen=True, slots=True)
class Deleted:
    """What a deletion removed (or, for a dry run, would remove)."""

    sessions: int = 0
    messages: int = 0
    feedback: int = 0
    batches: int = 0

    def __add__(self, other: Deleted) -> Deleted:
        return Deleted(
            sessions=self.sessions + other.sessions,
            messages=self.messages + other.messages,
            feedback=self.feedback + other.feedback,
            batches=self.batches + other.batches,
        )


def retention_cutoff(days: int, now: datetime | None = None) -> datetime:
    """The instant before which a conversation's last activity makes it old."""
    return (now or utcnow()) - timedelta(days=days)


def inactive_since(cutoff: datetime) -> ColumnElement[bool]:
    """Sessions whose last activity is before `cutoff`: not updated since (a question updates
    its session) and without any message since (an answer is stored after its question)."""
    newer_message = (
        select(Message.id)
        .where(Message.session_id == ChatSession.id, Message.created_at >= cutoff)
        .exists()
    )
    return and_(ChatSession.updated_at < cutoff, ~newer_message)


async def purge_conversations(
    sessionmaker: async_sessionmaker[AsyncSession],
    cutoff: datetime,
    *,
    batch_size: int = BATCH_SIZE,
    dry_run: bool = False,
) -> Deleted:
    """Delete every conversation last active before `cutoff`, with its messages and feedback,
    `batch_size` sessions per transaction; with `dry_run`, count them and delete nothing.
    Running it again deletes nothing more."""
    old = inactive_since(cutoff)
    if dry_run:
        async with sessionmaker() as db:
            found = await _count(db, old)
        logger.info("chat.purge_counted", cutoff=cutoff.isoformat(), sessions=found.sessions)
        return found
    deleted = await _in_batches(sessionmaker, old, batch_size)
    logger.info(
        "chat.purged",
        cutoff=cutoff.isoformat(),
        sessions=deleted.sessions,
        messages=deleted.messages,
        feedback=deleted.feedback,
        batches=deleted.batches,
    )
    return deleted


async def delete_reader_sessions(
    db: AsyncSession, user_id: uuid.UUID, *, book: str = DEFAULT_BOOK, batch_size: int = BATCH_SIZE
) -> Deleted:
    """Delete every conversation of this reader with `book` (and nobody else's), with its
    messages and their feedback, `batch_size` sessions per committed transaction."""
    theirs = (ChatSession.user_id == user_id) & (ChatSession.book == book)
    deleted = Deleted()
    # Waits for a turn that is writing to one of them (skipping it would leave it behind).
    while batch := await _deletable_batch(db, theirs, batch_size, skip_locked=False):
        deleted += await delete_sessions(db, batch, theirs)
        await db.commit()
    return deleted


async def _in_batches(
    sessionmaker: async_sessionmaker[AsyncSession], which: ColumnElement[bool], batch_size: int
) -> Deleted:
    deleted = Deleted()
    while True:
        async with sessionmaker() as db:
            batch = await _deletable_batch(db, which, batch_size, skip_locked=True)
            if not batch:
                return deleted
            done = await delete_sessions(db, batch, which)
            await db.commit()
        deleted += done
        logger.debug("chat.purge_batch", sessions=done.sessions, messages=done.messages)


async def _deletable_batch(
    db: AsyncSession, which: ColumnElement[bool], batch_size: int, *, skip_locked: bool
) -> list[uuid.UUID]:
    """Up to `batch_size` ids of sessions matching `which`, oldest activity first, locked on
    PostgreSQL (`skip_locked`: leaving out those another transaction holds; SQLite ignores
    the lock)."""
    query = (
        select(ChatSession.id)
        .where(which)
        .order_by(ChatSession.updated_at, ChatSession.id)
        .limit(batch_size)
        .with_for_update(of=ChatSession, skip_locked=skip_locked)
    )
    return list(await db.scalars(query))


async def delete_sessions(
    db: AsyncSession, ids: list[uuid.UUID], still: ColumnElement[bool]
) -> Deleted:
    """Delete the sessions of `ids` that still match `still`, feedback first, then messages,
    then the sessions (no reliance on cascades); the caller commits."""
    chosen = and_(ChatSession.id.in_(ids), still)
    sessions = select(ChatSession.id).where(chosen)
    messages = select(Message.id).where(Message.session_id.in_(sessions))
    feedback = await _delete(
        db, delete(MessageFeedback).where(MessageFeedback.message_id.in_(messages))
    )
    removed = await _delete(db, delete(Message).where(Message.session_id.in_(sessions)))
    gone = await _delete(db, delete(ChatSession).where(chosen))
    return Deleted(sessions=gone, messages=removed, feedback=feedback, batches=1)


async def _delete(db: AsyncSession, statement: Any) -> int:
    # Plain SQL deletes: no ORM objects are loaded or synchronised.
    result = await db.execute(statement, execution_options={"synchronize_session": False})
    return cast(CursorResult[Any], result).rowcount


async def _count(db: AsyncSession, which: ColumnElement[bool]) -> Deleted:
    sessions = select(ChatSession.id).where(which)
    messages = select(Message.id).where(Message.session_id.in_(sessions))
    return Deleted(
        sessions=await _scalar_count(
            db, select(func.count()).select_from(ChatSession).where(which)
        ),
        messages=await _scalar_count(
            db, select(func.count()).select_from(Message).where(Message.session_id.in_(sessions))
        ),
        feedback=await _scalar_count(
            db,
            select(func.count())
            .select_from(MessageFeedback)
            .where(MessageFeedback.message_id.in_(messages)),
        ),
    )


async def _scalar_count(db: AsyncSession, query: Select[int]) -> int:
    return int(await db.scalar(query) or 0)
