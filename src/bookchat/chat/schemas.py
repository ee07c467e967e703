"""Request and response bodies of the chat API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

PAGE_CONTEXT_MAX = 2048


class ChatCreate(BaseModel):
    """A reader's message. `conversation_id` is accepted as a synonym of `session_id`."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"message": "What is ROS 2?"}]},
    )

    message: str = Field(
        description="The question; 1 to MAX_MESSAGE_CHARS characters once trimmed."
    )
    session_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("session_id", "conversation_id"),
        description="Continue this session; missing, malformed or unknown ids start a new one.",
    )
    selected_text: str | None = Field(
        default=None,
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


class Citation(BaseModel):
    index: int
    title: str
    section: str | None = None
    page_url: str | None = None
    source_path: str | None = None
    snippet: str
    score: float | None = None
    cited: bool


class UsageRead(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatRead(BaseModel):
    """The answer. `mode` says how it was made: `generative` (a language model) or
    `extractive` (offline: sentences quoted from the sources)."""

    response: str
    session_id: uuid.UUID
    message_id: uuid.UUID
    timestamp: datetime
    mode: Literal["generative", "extractive"]
    context: Literal["book", "selection"]
    model: str
    citations: list[Citation]
    usage: UsageRead
    latency_ms: int
