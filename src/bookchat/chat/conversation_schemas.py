"""Bodies of the conversation endpoints: history, and feedback on answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bookchat.chat.models import MessageRole, MessageStatus
from bookchat.chat.schemas import Citation, UsageRead

FEEDBACK_COMMENT_MAX = 2000


class MessageRead(BaseModel):
    """One stored message. `usage` and `latency_ms` are set on assistant messages only."""

    id: uuid.UUID
    role: MessageRole
    content: str
    status: MessageStatus
    mode: str | None
    model: str | None
    citations: list[Citation]
    selected_text: str | None
    page_context: str | None
    usage: UsageRead | None
    latency_ms: int | None
    created_at: datetime


class HistoryRead(BaseModel):
    """A page of a session's messages, oldest first.

    Pages run backwards in time: pass `next_before` as `before` to get the older page; it is
    null on the page that holds the session's first message."""

    session_id: uuid.UUID
    title: str | None
    messages: list[MessageRead]
    has_more: bool
    next_before: uuid.UUID | None


class FeedbackCreate(BaseModel):
    """A rating of an answer: 1 (helpful) or -1 (not helpful), with an optional comment.

    Sending feedback again for the same answer replaces the earlier rating and comment."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"rating": -1, "comment": "The link is broken."}]},
    )

    rating: Literal[1, -1]
    comment: str | None = Field(default=None, max_length=FEEDBACK_COMMENT_MAX)

    @field_validator("rating", mode="before")
    @classmethod
    def _integer_only(cls, value: Any) -> Any:
        # Pydantic would take `true` or `1.0` for the literal 1; a rating is the number itself.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("rating must be 1 or -1")
        return value

    @field_validator("comment")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


class FeedbackRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    message_id: uuid.UUID
    rating: Literal[1, -1]
    comment: str | None
    created_at: datetime
    updated_at: datetime


class SessionRead(BaseModel):
    id: uuid.UUID
    title: str | None
    created_at: datetime
    updated_at: datetime
    message_count: int


class SessionPage(BaseModel):
    """A reader's sessions, most recently active first."""

    items: list[SessionRead]
    total: int
    limit: int
    offset: int
