"""Request and response bodies of the chat API: asking, and the conversation endpoints (history,
sessions, feedback on answers)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from bookchat.chat.models import MessageRole, MessageStatus
from bookchat.core.errors import VISIBLE_TEXT_PATTERN

PAGE_CONTEXT_MAX = 2048
FEEDBACK_COMMENT_MAX = 2000


class ChatCreate(BaseModel):
    """A reader's message. `conversation_id` is accepted as a synonym of `session_id`."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"message": "What is ROS 2?"}]},
    )

    message: str = Field(
        min_length=1,
        # At least one visible character; the length limit (MAX_MESSAGE_CHARS, 2000 by default)
        # applies once trimmed and comes from settings, so the schema states the default.
        pattern=VISIBLE_TEXT_PATTERN,
        json_schema_extra={"maxLength": 2000},
        description="The question: 1 to MAX_MESSAGE_CHARS (2000) characters once trimmed.",
    )
    session_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("session_id", "conversation_id"),
        description="Continue this session; missing, malformed or unknown ids start a new one.",
    )
    selected_text: str | None = Field(
        default=None,
        json_schema_extra={"maxLength": 20_000},
        description="Text the reader selected: the answer then comes from this text alone.",
    )
    page_context: str | None = Field(
        default=None,
        max_length=PAGE_CONTEXT_MAX,
        description="The URL or path of the page the reader is on.",
    )

    @field_validator("message")
    @classmethod
    def _trimmed_not_empty(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("message must not be empty")
        return value

    @field_validator("selected_text", "page_context", "session_id")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


class Passage(BaseModel):
    """A passage of the book an answer may draw on."""

    title: str
    section: str | None = None
    page_url: str | None = None
    source_path: str | None = None
    snippet: str
    score: float | None = None


class Citation(Passage):
    """A source of the answer under the number the reader sees: cited sources are `[1]..[n]`
    in the order the answer first uses them (`cited`: true), the others follow."""

    index: int
    cited: bool


class UsageRead(BaseModel):
    """Tokens the answer used. `prompt_tokens` includes the prompt tokens the vendor read from
    its prompt cache (`cache_read_tokens`) or wrote to it (`cache_write_tokens`); those two
    are reported for the answer just given, and are 0 in history."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


ChatMode = Literal["rag", "selected_text", "no_context"]


class ChatRead(BaseModel):
    """The answer. `mode`: `rag` (from retrieved book passages), `selected_text` (from the
    reader's selection alone) or `no_context` (nothing relevant in the book: no model was
    asked). `model` names what wrote it; `extractive` means the offline answerer, which quotes
    sentences of the sources instead of calling a language model."""

    response: str
    session_id: uuid.UUID
    message_id: uuid.UUID
    timestamp: datetime
    mode: ChatMode
    model: str
    citations: list[Citation]
    usage: UsageRead
    latency_ms: int
    cached: bool = Field(
        default=False,
        description="Served from the answer cache: the same first question was answered before.",
    )
    status: MessageStatus = Field(
        default=MessageStatus.COMPLETE,
        description="`complete`: the whole answer. `partial`: the answer stopped before its end "
        "(see `finish_reason`); show it as cut.",
    )
    finish_reason: str | None = Field(
        default="stop",
        description="How the answer ended: `stop` (whole), `length` (cut at the answer length "
        "limit), `content_filter` (cut by the model vendor's filter), or null (the model's "
        "stream ended without saying it was over).",
    )


# --- conversations (history, sessions, feedback) ---


class OwnRating(BaseModel):
    """The asking reader's rating of an answer (anonymous readers count as one reader)."""

    rating: Literal[1, -1]
    comment: str | None


class MessageRead(BaseModel):
    """One stored message. `usage`, `latency_ms` and `finish_reason` are set on assistant
    messages only. An assistant message's `status` is `complete`, `partial` (it stopped before
    its end: the reader left, the turn's time ran out, or see `finish_reason`) or `error`."""

    id: uuid.UUID
    role: MessageRole
    content: str
    status: MessageStatus
    finish_reason: str | None = None
    mode: str | None
    model: str | None
    citations: list[Citation]
    selected_text: str | None
    page_context: str | None
    usage: UsageRead | None
    latency_ms: int | None
    created_at: datetime


class HistoryMessage(MessageRead):
    """A message in a history page, with the asking reader's own rating of it (an answer they
    rated), so a second device shows the thumb they pressed."""

    own_feedback: OwnRating | None = None


class HistoryRead(BaseModel):
    """A page of a session's messages, oldest first.

    Pages run backwards in time: pass `next_before` as `before` to get the older page; it is
    null on the page that holds the session's first message."""

    session_id: uuid.UUID
    title: str | None
    messages: list[HistoryMessage]
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


# --- a reader's own data (bulk delete, export) ---


class SessionsDeleted(BaseModel):
    """How many of the reader's conversations were deleted (with their messages and feedback)."""

    deleted: int


class FeedbackExport(BaseModel):
    """A rating stored on an answer (the reader's own, or given anonymously before the
    conversation became theirs)."""

    model_config = ConfigDict(from_attributes=True)

    rating: Literal[1, -1]
    comment: str | None
    created_at: datetime
    updated_at: datetime


class MessageExport(MessageRead):
    """A message as `GET /chat/history` shows it, with the feedback stored on it."""

    feedback: list[FeedbackExport]


class ConversationExport(BaseModel):
    id: uuid.UUID
    title: str | None
    created_at: datetime
    updated_at: datetime
    messages: list[MessageExport]


class ConversationsExport(BaseModel):
    """Everything stored of the reader's conversations, oldest conversation first, each with
    its messages oldest first."""

    exported_at: datetime
    user_id: uuid.UUID
    conversations: list[ConversationExport]
