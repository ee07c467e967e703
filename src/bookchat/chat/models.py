"""Chat sessions, their messages, and readers' feedback on answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bookchat.books.models import book_column
from bookchat.core.db import Base, UTCDateTime, new_id, portable_enum, utcnow


class MessageRole(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"


class MessageStatus(StrEnum):
    COMPLETE = "complete"
    PARTIAL = "partial"
    ERROR = "error"


class ChatSession(Base):
    __tablename__ = "chat_sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    book: Mapped[str] = book_column()
    # NULL for an anonymous session; deleting the account keeps its sessions, anonymous.
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    title: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    messages: Mapped[list[Message]] = relationship(
        back_populates="session", cascade="all, delete-orphan", passive_deletes=True
    )

    def visible_to(self, user_id: uuid.UUID | None) -> bool:
        """Anonymous sessions are reachable by their id alone; a reader's only by that reader."""
        return self.user_id is None or self.user_id == user_id


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_session_id_created_at", "session_id", "created_at"),
        # The insights' date ranges: questions and answers by time (on PostgreSQL covering what
        # the summary counts, so it reads the index alone), answers of one mode by time.
        Index(
            "ix_messages_role_created_at",
            "role",
            "created_at",
            postgresql_include=["session_id", "status", "mode", "cached", "latency_ms"],
        ),
        Index("ix_messages_mode_created_at", "mode", "created_at"),
        # The answers that left their question unanswered and keep its key (chat/refusals.py),
        # by time: the refused ones and the few that cite no passage.
        Index(
            "ix_messages_question_key_created_at",
            "created_at",
            postgresql_where=text("question_key IS NOT NULL"),
            sqlite_where=text("question_key IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    session_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("chat_sessions.id", ondelete="CASCADE")
    )
    role: Mapped[MessageRole] = mapped_column(portable_enum(MessageRole, "message_role"))
    content: Mapped[str] = mapped_column(Text)
    status: Mapped[MessageStatus] = mapped_column(
        portable_enum(MessageStatus, "message_status"), default=MessageStatus.COMPLETE
    )
    # How the answer ended, in the model's words: `stop` (whole), `length` (cut at the token
    # limit), `content_filter`; NULL when nothing said it ended (see `status`) and on questions.
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    mode: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(200))
    citations: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    selected_text: Mapped[str | None] = mapped_column(Text)
    # The standalone query retrieval ran with (a follow-up rewritten from the history).
    search_query: Mapped[str | None] = mapped_column(Text)
    page_context: Mapped[str | None] = mapped_column(String(2048))
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    # Served from the answer cache (the same first question asked before), not generated anew.
    cached: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # On an answer that left its question unanswered only (chat/refusals.py: refused, or a
    # whole `rag` answer citing no passage), for the insights, never shown: the nearest book
    # section and the question's words as rewordings share them.
    nearest_section: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    question_key: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    session: Mapped[ChatSession] = relationship(back_populates="messages")


class MessageFeedback(Base):
    """A reader's thumbs up (1) or down (-1) on an answer; one per message per reader."""

    __tablename__ = "message_feedback"
    __table_args__ = (
        # NULLs are distinct in a unique constraint: anonymous feedback (user_id NULL) is kept to
        # one row per message by ConversationService, not by this constraint.
        UniqueConstraint("message_id", "user_id"),
        CheckConstraint("rating IN (-1, 1)", name="rating"),
        # The insights' thumbs by the day they were given, and the low-rated list.
        Index("ix_message_feedback_updated_at", "updated_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    message_id: Mapped[uuid.UUID] = mapped_column(
        # The unique (message_id, user_id) constraint's index serves lookups by message.
        Uuid,
        ForeignKey("messages.id", ondelete="CASCADE"),
    )
    # NULL means an anonymous reader; a deleted account takes its feedback with it.
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE")
    )
    rating: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
