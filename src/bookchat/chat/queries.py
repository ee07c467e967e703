"""The SQL of chat sessions and their messages, shared by the chat turn and the conversation
endpoints.

A session's messages are in one order, (created_at, id): the turn reads its history in it and
the history pages walk back through it, so both always agree on which message came first.
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bookchat.chat.models import ChatSession, Message, MessageFeedback, MessageRole, MessageStatus
from bookchat.core.ids import parse_uuid
from bookchat.providers.base import ChatMessage

# The session's order, newest first; `_older_than` walks back through the same key.
_NEWEST_FIRST = (Message.created_at.desc(), Message.id.desc())


def _older_than(cursor: Message) -> ColumnElement[bool]:
    """Messages before `cursor` in the session's order (a keyset on (created_at, id))."""
    return or_(
        Message.created_at < cursor.created_at,
        and_(Message.created_at == cursor.created_at, Message.id < cursor.id),
    )


async def find_session(db: AsyncSession, raw_id: str | None) -> ChatSession | None:
    """The session with this id as a reader sent it; None when missing, malformed or unknown."""
    session_id = parse_uuid(raw_id)
    return await db.get(ChatSession, session_id) if session_id is not None else None


async def find_message(db: AsyncSession, raw_id: str | None) -> Message | None:
    """The message with this id as a reader sent it; None when missing, malformed or unknown."""
    message_id = parse_uuid(raw_id)
    return await db.get(Message, message_id) if message_id is not None else None


async def recent_history(db: AsyncSession, session_id: uuid.UUID, limit: int) -> list[ChatMessage]:
    """The session's last `limit` complete questions and answers, oldest first."""
    rows = await db.execute(
        select(Message.role, Message.content)
        .where(
            Message.session_id == session_id,
            Message.status == MessageStatus.COMPLETE,
            Message.role.in_([MessageRole.USER, MessageRole.ASSISTANT]),
        )
        .order_by(*_NEWEST_FIRST)
        .limit(limit)
    )
    return [ChatMessage(role=role.value, content=content) for role, content in rows][::-1]


async def history_page(
    db: AsyncSession, session_id: uuid.UUID, *, limit: int, before: Message | None
) -> tuple[list[Message], bool]:
    """The newest `limit` messages of the session older than `before`, oldest first, and
    whether older ones remain."""
    query = select(Message).where(Message.session_id == session_id)
    if before is not None:
        query = query.where(_older_than(before))
    rows = list(await db.scalars(query.order_by(*_NEWEST_FIRST).limit(limit + 1)))
    return rows[:limit][::-1], len(rows) > limit


def feedback_by(user_id: uuid.UUID | None) -> ColumnElement[bool]:
    """Feedback given by this reader; anonymous readers count as one reader."""
    if user_id is None:
        return MessageFeedback.user_id.is_(None)
    return MessageFeedback.user_id == user_id


async def own_ratings(
    db: AsyncSession, message_ids: list[uuid.UUID], user_id: uuid.UUID | None
) -> dict[uuid.UUID, MessageFeedback]:
    """The reader's feedback on these messages, by message id (anonymous readers share one
    row per answer; should two exist, the oldest, as `ConversationService` updates it)."""
    rows = await db.scalars(
        select(MessageFeedback)
        .where(MessageFeedback.message_id.in_(message_ids), feedback_by(user_id))
        .order_by(MessageFeedback.created_at.desc(), MessageFeedback.id.desc())
    )
    return {row.message_id: row for row in rows}  # the oldest wins: it comes last


async def reader_sessions(
    db: AsyncSession, user_id: uuid.UUID, *, book: str, limit: int, offset: int
) -> tuple[list[tuple[ChatSession, int]], int]:
    """A page of the reader's sessions with `book` and their message counts, most recently
    active first, and how many such sessions the reader has in all."""
    theirs = (ChatSession.user_id == user_id) & (ChatSession.book == book)
    counts = (
        select(Message.session_id, func.count().label("n")).group_by(Message.session_id).subquery()
    )
    rows = await db.execute(
        select(ChatSession, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.session_id == ChatSession.id)
        .where(theirs)
        .order_by(ChatSession.updated_at.desc(), ChatSession.id.desc())
        .limit(limit)
        .offset(offset)
    )
    total = await db.scalar(select(func.count()).select_from(ChatSession).where(theirs))
    return [(session, count) for session, count in rows], total or 0
