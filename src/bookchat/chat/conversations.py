"""Managing conversations after the fact: reading a session's history, deleting a session, and
readers' feedback on answers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bookchat.books.names import DEFAULT_BOOK
from bookchat.chat import queries, retention
from bookchat.chat.models import ChatSession, Message, MessageFeedback, MessageRole
from bookchat.chat.schemas import (
    Citation,
    ConversationExport,
    ConversationsExport,
    FeedbackExport,
    FeedbackRead,
    HistoryMessage,
    HistoryRead,
    MessageExport,
    MessageRead,
    OwnRating,
    SessionPage,
    SessionRead,
    SessionsDeleted,
    UsageRead,
)
from bookchat.core.db import utcnow
from bookchat.core.errors import NotFound, ValidationFailed

if TYPE_CHECKING:
    from bookchat.core.metrics import Metrics

logger = structlog.get_logger(__name__)

# Conversations read per query while exporting: a page's messages are held in memory at once.
EXPORT_PAGE = 50


@dataclass(slots=True)
class ConversationService:
    """History, deletion and feedback; owns the transaction of every call."""

    metrics: Metrics | None = None  # counts readers' ratings (up, down)

    async def history(
        self,
        db: AsyncSession,
        session_id: str,
        *,
        book: str = DEFAULT_BOOK,
        limit: int,
        before: str | None,
        user_id: uuid.UUID | None = None,
    ) -> HistoryRead:
        """The newest `limit` messages older than `before` (a message id), oldest first."""
        if limit < 1:
            raise ValidationFailed("limit must be at least 1.")
        session = await self._session(db, session_id, user_id, book)
        cursor = await self._cursor(db, session.id, before) if before is not None else None
        page, has_more = await queries.history_page(db, session.id, limit=limit, before=cursor)
        answers = [m.id for m in page if m.role == MessageRole.ASSISTANT]
        own = await queries.own_ratings(db, answers, user_id) if answers else {}
        return HistoryRead(
            session_id=session.id,
            title=session.title,
            messages=[_history_message(m, own.get(m.id)) for m in page],
            has_more=has_more,
            next_before=page[0].id if has_more else None,
        )

    async def delete_session(
        self,
        db: AsyncSession,
        session_id: str,
        user_id: uuid.UUID | None = None,
        *,
        book: str = DEFAULT_BOOK,
    ) -> None:
        """Delete a session; the database cascades to its messages and their feedback."""
        session = await self._session(db, session_id, user_id, book)
        await db.delete(session)
        await db.commit()
        logger.info("chat.session_deleted", session_id=str(session.id))

    async def delete_reader_sessions(
        self, db: AsyncSession, user_id: uuid.UUID, *, book: str = DEFAULT_BOOK
    ) -> SessionsDeleted:
        """Delete every conversation of this reader with `book`, with their messages and
        feedback (deleting the account deletes those with every book)."""
        deleted = await retention.delete_reader_sessions(db, user_id, book=book)
        logger.info("chat.reader_sessions_deleted", sessions=deleted.sessions)
        return SessionsDeleted(deleted=deleted.sessions)

    async def export_sessions(
        self, db: AsyncSession, user_id: uuid.UUID, *, book: str = DEFAULT_BOOK
    ) -> AsyncIterator[bytes]:
        """The reader's conversations with `book` as one JSON document (`ConversationsExport`),
        written a page of conversations at a time. The first page is read now, so a database
        failure is an error response rather than a cut download."""
        first = await _export_page(db, user_id, book, after=None)
        head = ConversationsExport(exported_at=utcnow(), user_id=user_id, conversations=[])
        # The document up to its list's `[`; the conversations follow, then `]}`.
        opening = head.model_dump_json().removesuffix("]}")

        async def document() -> AsyncIterator[bytes]:
            page, count = first, 0
            yield opening.encode()
            while page:
                for conversation in page:
                    yield (b"," if count else b"") + conversation.model_dump_json().encode()
                    count += 1
                last = page[-1]
                page = await _export_page(db, user_id, book, after=(last.created_at, last.id))
            yield b"]}"
            logger.info("chat.sessions_exported", sessions=count)

        return document()

    async def give_feedback(
        self,
        db: AsyncSession,
        message_id: str,
        rating: int,
        comment: str | None,
        user_id: uuid.UUID | None = None,
        *,
        book: str = DEFAULT_BOOK,
    ) -> tuple[FeedbackRead, bool]:
        """Record a reader's rating of an answer; True when created, False when it replaced
        the reader's earlier feedback (anonymous readers count as one reader)."""
        message = await self._message(db, message_id)
        session = await db.get(ChatSession, message.session_id)
        if session is None or not session.visible_to(user_id) or session.book != book:
            raise NotFound("No message with this id.")
        if message.role != MessageRole.ASSISTANT:
            raise ValidationFailed("Feedback can only be given on an assistant's answer.")
        target = message.id  # read now: a rollback expires `message`
        try:
            feedback, created = await self._save_feedback(
                db, target, rating, comment, user_id, book
            )
        except IntegrityError:
            # Another request inserted this reader's feedback first: update that row instead.
            await db.rollback()
            if await db.get(Message, target) is None:  # or the answer was deleted meanwhile
                raise NotFound("No message with this id.") from None
            feedback, created = await self._save_feedback(
                db, target, rating, comment, user_id, book
            )
        logger.info("chat.feedback", rating=rating, created=created)
        return FeedbackRead.model_validate(feedback), created

    async def _save_feedback(
        self,
        db: AsyncSession,
        message_id: uuid.UUID,
        rating: int,
        comment: str | None,
        user_id: uuid.UUID | None,
        book: str,
    ) -> tuple[MessageFeedback, bool]:
        # Oldest first: should two anonymous rows ever exist, the same one keeps being updated.
        feedback = await db.scalar(
            select(MessageFeedback)
            .where(MessageFeedback.message_id == message_id, queries.feedback_by(user_id))
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
            self.metrics.feedback.labels(book, "up" if rating > 0 else "down").inc()
        return feedback, created

    async def list_sessions(
        self,
        db: AsyncSession,
        user_id: uuid.UUID,
        *,
        book: str = DEFAULT_BOOK,
        limit: int,
        offset: int,
    ) -> SessionPage:
        """A reader's sessions with `book`, most recently active first."""
        rows, total = await queries.reader_sessions(
            db, user_id, book=book, limit=limit, offset=offset
        )
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
        self, db: AsyncSession, raw_id: str, user_id: uuid.UUID | None, book: str
    ) -> ChatSession:
        session = await queries.find_session(db, raw_id)
        # Another reader's session, or another book's, answers exactly like a missing one: ids
        # are not secrets to probe for.
        if session is None or not session.visible_to(user_id) or session.book != book:
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


def _history_message(message: Message, feedback: MessageFeedback | None) -> HistoryMessage:
    own = None
    if feedback is not None:
        own = OwnRating.model_validate(feedback, from_attributes=True)
    return HistoryMessage(**dict(_message_read(message)), own_feedback=own)


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


async def _export_page(
    db: AsyncSession, user_id: uuid.UUID, book: str, *, after: tuple[datetime, uuid.UUID] | None
) -> list[ConversationExport]:
    """The reader's next `EXPORT_PAGE` conversations after `after` (created_at, id), oldest
    first, with their messages and feedback. The read transaction ends here, so a reader who
    downloads slowly holds no database connection between pages."""
    query = select(ChatSession).where(ChatSession.user_id == user_id, ChatSession.book == book)
    if after is not None:
        created, last_id = after
        query = query.where(
            or_(
                ChatSession.created_at > created,
                and_(ChatSession.created_at == created, ChatSession.id > last_id),
            )
        )
    sessions = list(
        await db.scalars(query.order_by(ChatSession.created_at, ChatSession.id).limit(EXPORT_PAGE))
    )
    ids = [session.id for session in sessions]
    messages = list(
        await db.scalars(
            select(Message)
            .where(Message.session_id.in_(ids))
            .order_by(Message.created_at, Message.id)
        )
    )
    ratings = await db.scalars(
        select(MessageFeedback)
        .where(MessageFeedback.message_id.in_([m.id for m in messages]))
        .order_by(MessageFeedback.created_at, MessageFeedback.id)
    )
    feedback: dict[uuid.UUID, list[FeedbackExport]] = {}
    for rating in ratings:
        feedback.setdefault(rating.message_id, []).append(FeedbackExport.model_validate(rating))
    by_session: dict[uuid.UUID, list[MessageExport]] = {session_id: [] for session_id in ids}
    for message in messages:
        by_session[message.session_id].append(
            # dict(model): its fields, nested models as they are (validated once already).
            MessageExport.model_validate(
                {**dict(_message_read(message)), "feedback": feedback.get(message.id, [])}
            )
        )
    page = [
        ConversationExport(
            id=session.id,
            title=session.title,
            created_at=session.created_at,
            updated_at=session.updated_at,
            messages=by_session[session.id],
        )
        for session in sessions
    ]
    await db.rollback()
    return page
