"""The insights' answers (docs/insights.md): the admin page is built against these shapes."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, Field


class AnswerCounts(BaseModel):
    """Answers by mode."""

    rag: int = 0
    selected_text: int = 0
    no_context: int = 0


class Latency(BaseModel):
    """Answer latency percentiles in milliseconds; null without answers."""

    p50: int | None = None
    p95: int | None = None


class Totals(BaseModel):
    questions: int = 0
    conversations: int = 0
    readers: int = 0
    answers: AnswerCounts = Field(default_factory=AnswerCounts)
    cache_hits: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    latency_ms: Latency = Field(default_factory=Latency)


class DayTotals(Totals):
    date: dt.date


class SummaryRead(BaseModel):
    start: dt.date
    end: dt.date
    totals: Totals
    days: list[DayTotals]


class SectionRef(BaseModel):
    """A book section: page title, heading (null for the page's top) and URL with anchor."""

    title: str
    heading: str | None = None
    url: str


class UnansweredRead(BaseModel):
    question: str
    count: int
    # Of `count`, the questions a model was given passages for and cited none of (the
    # others the relevance gate refused).
    uncited: int = 0
    # How many different questions (by their words) the group holds: rewordings in other words
    # near one section share its group; `others` are the latest of them but `question`, newest
    # first (at most `service.OTHER_QUESTIONS`).
    questions: int = 1
    others: list[str] = Field(default_factory=list)
    last_asked_at: dt.datetime
    session_id: uuid.UUID
    section: SectionRef | None = None


class UnansweredPage(BaseModel):
    items: list[UnansweredRead]
    total: int
    limit: int
    offset: int


class SectionCount(SectionRef):
    count: int


class SectionPage(BaseModel):
    items: list[SectionCount]
    total: int
    limit: int
    offset: int


class LowRatedRead(BaseModel):
    message_id: uuid.UUID
    session_id: uuid.UUID
    question: str
    answer: str
    citations: list[dict[str, Any]]
    comment: str | None = None
    rated_at: dt.datetime


class LowRatedPage(BaseModel):
    items: list[LowRatedRead]
    total: int
    limit: int
    offset: int
