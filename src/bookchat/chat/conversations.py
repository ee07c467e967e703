"""Managing conversations after the fact: reading a session's history, deleting a session, and
readers' feedback on answers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bookchat.chat import queries
from bookchat.chat.models import ChatSession, Message, MessageFeedback, MessageRole
from bookchat.chat.schemas import (
    Citation,
    FeedbackRead,
    HistoryRead,
    MessageRead,
    SessionPage,
    SessionRead,
    UsageRead,
)
from bookchat.core.db import utcnow
from bookchat.core.errors import NotFound, ValidationFailed

if TYPE_CHECKING:
    from bookchat.core.metrics import Metrics

logger = structlog.get_logger(__name__)


@dataclass(slots=True)
class ConversationService:
    """History, deletion and feedback; owns the transaction of every call."""

    metrics: Metrics | None = None  # counts readers' ratings (up, down)

    async def history(
        self,
        db: AsyncSession,
        session_id: str,
        *,
        limit: int,
        before: str | None,
        user_id: uuid.UUID | None = None,
    ) -> HistoryRead:
        """The newest `limit` messages older than `before` (a message id), oldest first."""
        if limit < 1:
            raise ValidationFailed("limit must be at least 1.")
        session = await self._session(db, session_id, user_id)
        cursor = await self._cursor(db, session.id, before) if before is not None else None
        page, has_more = await queries.history_page(db, session.id, limit=limit, before=cursor)
        return HistoryRead(
            session_id=session.id,
            title=session.title,
            messages=[_message_read(m) for m in page],
            has_more=has_more,
            next_before=page[0].id if has_more else None,
        )

    async def delete_session(
        self, db: AsyncSession, session_id: str, user_id: uuid.UUID | None = None
    ) -> None:
        """Delete a session; the database cascades to its messages and their feedback."""
        session = await self._session(db, session_id, user_id)
        await db.delete(session)
        await db.commit()
        logger.info("chat.session_deleted", session_id=str(session.id))

    async def give_feedback(
        self,
        db: AsyncSession,
        message_id: str,
        rating: int,
        comment: str | None,
        user_id: uuid.UUID | None = None,
    ) -> tuple[FeedbackRead, bool]:
        """Record a reader's rating of an answer; True when created, False when it replaced
        the reader's earlier feedback (anonymous readers count as one reader)."""
        message = await self._message(db, message_id)
        session = await db.get(ChatSession, message.session_id)
        if session is None or not session.visible_to(user_id):
            raise NotFound("No message with this id.")
        if message.role != MessageRole.ASSISTANT:
            raise ValidationFailed("Feedback can only be given on an assistant's answer.")
        target = message.id  # read now: a rollback expires `message`
        try:
            feedback, created = await self._save_feedback(db, target, rating, comment, user_id)
        except IntegrityError:
            # Another request inserted this reader's feedback first: update that row instead.
            await db.rollback()
            if await db.get(Message, target) is None:  # or the answer was deleted meanwhile
                raise NotFound("No message with this id.") from None
            feedback, created = await self._save_feedback(db, target, rating, comment, user_id)
        logger.info("chat.feedback", rating=rating, created=created)
        return FeedbackRead.model_validate(feedback), created

    async def _save_feedback(
        self,
        db: AsyncSession,
        message_id: uuid.UUID,
        rating: int,
        comment: str | None,
        user_id: uuid.UUID | None,
    ) -> tuple[MessageFeedback, bool]:
        reader = (
            MessageFeedback.user_id.is_(None)
            if user_id is None
            else MessageFeedback.user_id == user_id
        )
        # Oldest first: should two anonymous rows ever exist, the same one keeps being updated.
        feedback = await db.scalar(
            select(MessageFeedback)
            .where(MessageFeedback.message_id == message_id, reader)
            .order_by(MessageFeedback.created_at, MessageFeedback.id)
            .limit(1)
        )
        created = feedback is None
        # A new rating, or a changed one, is a thumb; the same one sent again is not.
        changed = feedback is None or feedback.rating != rating
        if feedback is None:
            feedback = MessageFeedback(
                message_id=message_id, user_id=user_id, rating=rating, comment=comment
            )
            db.add(feedback)
        else:
            feedback.rating = rating
            feedback.comment = comment
            # Set explicitly: resending the same rating changes no column, so onupdate would not.
            feedback.updated_at = utcnow()
        await db.commit()
        if changed and self.metrics is not None:
            self.metrics.feedback.labels("up" if rating > 0 else "down").inc()
        return feedback, created

    async def list_sessions(
        self, db: AsyncSession, user_id: uuid.UUID, *, limit: int, offset: int
    ) -> SessionPage:
        """A reader's sessions, most recently active first."""
        rows, total = await queries.reader_sessions(db, user_id, limit=limit, offset=offset)
        return SessionPage(
            items=[
                SessionRead(
                    id=session.id,
                    title=session.title,
                    created_at=session.created_at,
                    updated_at=session.updated_at,
                    message_count=count,
                )
                for session, count in rows
            ],
            total=total,
            limit=limit,
            offset=offset,
        )

    async def _session(
        self, db: AsyncSession, raw_id: str, user_id: uuid.UUID | None
    ) -> ChatSession:
        session = await queries.find_session(db, raw_id)
        # Another reader's session answers exactly like a missing one: ids are not secrets
        # to probe for.
        if session is None or not session.visible_to(user_id):
            raise NotFound("No chat session with this id.")
        return session

    async def _message(self, db: AsyncSession, raw_id: str) -> Message:
        message = await queries.find_message(db, raw_id)
        if message is None:
            raise NotFound("No message with this id.")
        return message

    async def _cursor(self, db: AsyncSession, session_id: uuid.UUID, raw_id: str) -> Message:
        cursor = await queries.find_message(db, raw_id)
        if cursor is None or cursor.session_id != session_id:
            raise ValidationFailed(
                "before must be the id of a message of this session.",
                details=[
                    {
                        "loc": ["query", "before"],
                        "msg": "not a message of this session",
                        "type": "value_error",
                    }
                ],
            )
        return cursor


def _message_read(message: Message) -> MessageRead:
    usage = None
    if message.prompt_tokens is not None and message.completion_tokens is not None:
        usage = UsageRead(
            prompt_tokens=message.prompt_tokens,
            completion_tokens=message.completion_tokens,
            total_tokens=message.prompt_tokens + message.completion_tokens,
        )
    return MessageRead(
        id=message.id,
        role=message.role,
        content=message.content,
        status=message.status,
        finish_reason=message.finish_reason,
        mode=message.mode,
        model=message.model,
        citations=[Citation.model_validate(c) for c in message.citations or []],
        selected_text=message.selected_text,
        page_context=message.page_context,
        usage=usage,
        latency_ms=message.latency_ms,
        created_at=message.created_at,
    )
