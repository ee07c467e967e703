"""A seeded chat history for the insights tests, and the numbers expected of it.

`generate` builds a few thousand messages (sessions of signed-in and anonymous readers, answers
of every mode and status, cache hits, refusals in families of rewordings, feedback given inside
and outside the range) from a fixed random seed; `insert` writes them as the chat would have,
every conversation in the history's book.
The `expected_*` functions compute each insight from that list in plain Python, the slow and
obvious way, independently of the SQL under test.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from bookchat.accounts.models import User
from bookchat.books.models import Book
from bookchat.books.names import DEFAULT_BOOK
from bookchat.chat.models import ChatSession, Message, MessageFeedback, MessageRole
from bookchat.chat.refusals import question_key
from bookchat.core.db import create_engine
from bookchat.insights.service import OTHER_QUESTIONS
from tests.factories import open_db

BOOK = "https://example.org/book"
# The sections the seeded answers cite: (title, heading, url).
SECTIONS = [
    (
        "Messaging",
        "Publishers and subscribers",
        f"{BOOK}/basics/messaging#publishers-and-subscribers",
    ),
    ("Messaging", "Request and reply", f"{BOOK}/basics/messaging#request-and-reply"),
    ("Cameras", "Depth cameras", f"{BOOK}/basics/camera-guide#depth-cameras"),
    ("Cameras", None, f"{BOOK}/basics/camera-guide"),
    ("Walking", "Balance", f"{BOOK}/motion/walking#balance"),
    ("Walking", "Gait phases", f"{BOOK}/motion/walking#gait-phases"),
    ("Introduction", None, f"{BOOK}/"),
]
BALANCE = {"title": "Walking", "heading": "Balance", "url": f"{BOOK}/motion/walking#balance"}
PUBLISHERS = {
    "title": "Messaging",
    "heading": "Publishers and subscribers",
    "url": f"{BOOK}/basics/messaging#publishers-and-subscribers",
}


@dataclass(frozen=True)
class Family:
    """Rewordings of one question the book does not cover, and what the retriever found."""

    name: str
    rewordings: tuple[str, ...]
    nearest: dict[str, Any] | None
    # Refused before refusals kept a key and a nearest section (the column is NULL).
    legacy: bool = False


FAMILIES = [
    Family(
        "france",
        (
            "What is the capital of France?",
            "capital of France??",
            "The capital of France is what?",
        ),
        None,
    ),
    Family(
        "world cup",
        ("Who won the 2018 football world cup?", "2018 World Cup football: who won?"),
        None,
    ),
    # Different words, one nearest section: the same gap in the book.
    Family(
        "ostrich",
        (
            "How does an ostrich walk compared with a penguin?",
            "ostrich vs penguin gait",
            "Do penguins keep their balance like ostriches do?",
        ),
        BALANCE,
    ),
    Family(
        "bluetooth",
        ("Can a publisher send over Bluetooth?", "publishers over bluetooth low energy"),
        PUBLISHERS,
    ),
    Family("legacy", ("Legacy question about Mars?", "LEGACY QUESTION ABOUT MARS?"), None, True),
]


@dataclass
class Feedback:
    user_id: uuid.UUID | None
    rating: int
    comment: str | None
    rated_at: datetime
    id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass
class Answer:
    id: uuid.UUID
    mode: str
    status: str
    cached: bool
    latency_ms: int
    created_at: datetime
    content: str
    citations: list[dict[str, Any]]
    nearest: dict[str, Any] | None = None
    key: str | None = None
    feedback: list[Feedback] = field(default_factory=list)


@dataclass
class Turn:
    session_id: uuid.UUID
    user_id: uuid.UUID | None
    question_id: uuid.UUID
    asked_at: datetime
    question: str
    answer: Answer | None
    family: str | None = None


@dataclass
class History:
    users: list[uuid.UUID]
    sessions: dict[uuid.UUID, uuid.UUID | None]  # session id -> reader (None: anonymous)
    turns: list[Turn]
    book: str = DEFAULT_BOOK  # the book of every conversation

    def messages(self) -> int:
        return sum(1 + (t.answer is not None) for t in self.turns)


def _citation(index: int, section: tuple[str, str | None, str], cited: bool) -> dict[str, Any]:
    title, heading, url = section
    return {
        "index": index,
        "title": title,
        "section": heading or "",
        "page_url": url,
        "source_path": f"{title.lower()}.md",
        "snippet": f"About {heading or title}.",
        "score": 0.5,
        "cited": cited,
    }


def generate(seed: int = 19, *, first: date, days: int, sessions: int = 420) -> History:
    """A history over `days` days from `first` (the tests query an inner part of it)."""
    rng = random.Random(seed)
    users = [uuid.uuid4() for _ in range(30)]
    history = History(users=users, sessions={}, turns=[])
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    for _ in range(sessions):
        session_id = uuid.uuid4()
        reader = rng.choice(users) if rng.random() < 0.6 else None
        history.sessions[session_id] = reader
        at = start + timedelta(seconds=rng.uniform(0, days * 86400))
        for _ in range(rng.randint(1, 8)):
            history.turns.append(_turn(rng, session_id, reader, at, users))
            # The next question comes after this answer (at most 6 s) and some reading.
            at += timedelta(seconds=rng.uniform(10, 3 * 3600))
    return history


def _turn(
    rng: random.Random,
    session_id: uuid.UUID,
    reader: uuid.UUID | None,
    at: datetime,
    users: list[uuid.UUID],
) -> Turn:
    roll = rng.random()
    family: Family | None = None
    if roll < 0.02:
        # The model failed and nothing was stored after the question.
        return Turn(session_id, reader, uuid.uuid4(), at, f"Unanswered {rng.random()}", None)
    latency = rng.randint(40, 6000)
    citations: list[dict[str, Any]] = []
    cached = False
    status = "complete"
    nearest = None
    key = None
    if roll < 0.22:
        mode = "no_context"
        family = rng.choice(FAMILIES)
        question = rng.choice(family.rewordings)
        if not family.legacy:
            nearest = family.nearest
            key = question_key(question)
        latency = rng.randint(5, 60)
    elif roll < 0.32:
        mode = "selected_text"
        question = f"Explain this selection {rng.randint(1, 10**6)}"
        citations = [
            {
                "index": 1,
                "title": "Selected text",
                "section": "",
                "page_url": f"{BOOK}/basics/messaging",
                "source_path": None,
                "snippet": "A selection.",
                "score": None,
                "cited": True,
            }
        ]
    else:
        mode = "rag"
        question = f"Book question {rng.randint(1, 10**6)}?"
        chosen = rng.sample(SECTIONS, rng.randint(1, 4))
        cited = rng.randint(0, len(chosen))
        citations = [_citation(i + 1, s, i < cited) for i, s in enumerate(chosen)]
        status = rng.choices(["complete", "partial", "error"], [0.93, 0.03, 0.04])[0]
        if status == "error":
            citations = [dict(c, cited=False) for c in citations]
        elif status == "complete" and cited == 0:
            # The model found nothing to cite in its passages: a gap in the book, kept as the
            # chat keeps it (chat/refusals.py), its best passage the nearest section.
            family = rng.choice([f for f in FAMILIES if f.nearest is not None])
            question = rng.choice(family.rewordings)
            nearest, key = family.nearest, question_key(question)
            assert nearest is not None
            best = (nearest["title"], nearest["heading"], nearest["url"])
            citations = [_citation(1, best, False), *citations[1:]]
        elif rng.random() < 0.15:
            cached = True
            latency = rng.randint(2, 30)
    created = at + timedelta(milliseconds=latency)
    answer = Answer(
        id=uuid.uuid4(),
        mode=mode,
        status=status,
        cached=cached,
        latency_ms=latency,
        created_at=created,
        content=f"Answer to: {question}",
        citations=citations,
        nearest=nearest,
        key=key,
    )
    if status != "error" and rng.random() < 0.3:
        raters: list[uuid.UUID | None] = [reader]
        if rng.random() < 0.2:
            raters.append(rng.choice([u for u in users if u != reader]))
        for rater in raters:
            rating = rng.choice([1, 1, -1])
            answer.feedback.append(
                Feedback(
                    user_id=rater,
                    rating=rating,
                    comment=(f"comment {rng.randint(1, 10**6)}" if rating < 0 else None),
                    # Usually at once, sometimes days later (then maybe past the range's end).
                    rated_at=created + timedelta(seconds=rng.uniform(1, 4 * 86400 * rng.random())),
                )
            )
    return Turn(
        session_id,
        reader,
        uuid.uuid4(),
        at,
        question,
        answer,
        family.name if family else None,
    )


async def insert_history(database_url: str, history: History) -> None:
    """Write the history as the chat writes it: sessions, questions, answers, feedback."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(User),
                [
                    {"id": user, "email": f"reader{n}.{history.book}@example.org", "role": "user"}
                    for n, user in enumerate(history.users)
                ],
            )
            await connection.execute(
                insert(ChatSession),
                [
                    {"id": session, "book": history.book, "user_id": reader, "title": "seeded"}
                    for session, reader in history.sessions.items()
                ],
            )
            rows: list[dict[str, Any]] = []
            feedback: list[dict[str, Any]] = []
            for turn in history.turns:
                rows.append(
                    {
                        "id": turn.question_id,
                        "session_id": turn.session_id,
                        "role": MessageRole.USER,
                        "content": turn.question,
                        "status": "complete",
                        # executemany takes its columns from the first row: every row has all.
                        "mode": None,
                        "cached": False,
                        "latency_ms": None,
                        "citations": None,
                        "nearest_section": None,
                        "question_key": None,
                        "created_at": turn.asked_at,
                    }
                )
                answer = turn.answer
                if answer is None:
                    continue
                rows.append(
                    {
                        "id": answer.id,
                        "session_id": turn.session_id,
                        "role": MessageRole.ASSISTANT,
                        "content": answer.content,
                        "status": answer.status,
                        "mode": answer.mode,
                        "cached": answer.cached,
                        "latency_ms": answer.latency_ms,
                        "citations": answer.citations,
                        "nearest_section": answer.nearest,
                        "question_key": answer.key,
                        "created_at": answer.created_at,
                    }
                )
                feedback.extend(
                    {
                        "id": f.id,
                        "message_id": answer.id,
                        "user_id": f.user_id,
                        "rating": f.rating,
                        "comment": f.comment,
                        "created_at": f.rated_at,
                        "updated_at": f.rated_at,
                    }
                    for f in answer.feedback
                )
            await connection.execute(insert(Message), rows)
            await connection.execute(insert(MessageFeedback), feedback)
    finally:
        await engine.dispose()


async def add_book(database_url: str, slug: str, base_url: str) -> None:
    """A book besides the default one, stored directly (the books service is not what these
    tests are about)."""
    async with open_db(database_url) as db:
        db.add(Book(slug=slug, title=f"Book {slug}", base_url=base_url, cors_origins=[]))
        await db.commit()


# --- what the insights should say, computed the obvious way ------------------------------------


def _within(at: datetime, start: date, end: date) -> bool:
    return start <= at.date() <= end


def percentile(values: Iterable[int], p: float) -> int | None:
    """Linear interpolation between the closest ranks (PostgreSQL's percentile_cont)."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = p * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (position - low) * (ordered[high] - ordered[low]))


def _answers(history: History, start: date, end: date) -> list[Answer]:
    return [
        t.answer
        for t in history.turns
        if t.answer is not None
        and t.answer.status != "error"
        and _within(t.answer.created_at, start, end)
    ]


def _totals(turns: list[Turn], answers: list[Answer], thumbs: list[int]) -> dict[str, Any]:
    return {
        "questions": len(turns),
        "conversations": len({t.session_id for t in turns}),
        "readers": len({t.user_id or t.session_id for t in turns}),
        "answers": {
            mode: sum(a.mode == mode for a in answers)
            for mode in ("rag", "selected_text", "no_context")
        },
        "cache_hits": sum(a.cached for a in answers),
        "thumbs_up": sum(r > 0 for r in thumbs),
        "thumbs_down": sum(r < 0 for r in thumbs),
        "latency_ms": {
            "p50": percentile((a.latency_ms for a in answers), 0.5),
            "p95": percentile((a.latency_ms for a in answers), 0.95),
        },
    }


def _ratings(history: History, start: date, end: date) -> list[tuple[datetime, int]]:
    return [
        (f.rated_at, f.rating)
        for t in history.turns
        if t.answer is not None
        for f in t.answer.feedback
        if _within(f.rated_at, start, end)
    ]


def expected_summary(history: History, start: date, end: date) -> dict[str, Any]:
    questions = [t for t in history.turns if _within(t.asked_at, start, end)]
    answers = _answers(history, start, end)
    ratings = _ratings(history, start, end)
    days = []
    day = start
    while day <= end:
        days.append(
            {
                "date": day.isoformat(),
                **_totals(
                    [t for t in questions if t.asked_at.date() == day],
                    [a for a in answers if a.created_at.date() == day],
                    [r for at, r in ratings if at.date() == day],
                ),
            }
        )
        day += timedelta(days=1)
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "totals": _totals(questions, answers, [r for _, r in ratings]),
        "days": days,
    }


def expected_sections(history: History, start: date, end: date) -> list[dict[str, Any]]:
    """Sections by how many rag answers of the range cite them, most first, then by URL."""
    citing: dict[str, set[uuid.UUID]] = defaultdict(set)
    named: dict[str, tuple[str, str | None]] = {}
    for turn in history.turns:
        answer = turn.answer
        if answer is None or answer.mode != "rag" or not _within(answer.created_at, start, end):
            continue
        for citation in answer.citations:
            if citation["cited"]:
                citing[citation["page_url"]].add(answer.id)
                named[citation["page_url"]] = (citation["title"], citation["section"] or None)
    ordered = sorted(citing, key=lambda url: (-len(citing[url]), url))
    return [
        {"title": named[url][0], "heading": named[url][1], "url": url, "count": len(citing[url])}
        for url in ordered
    ]


def expected_unanswered(history: History, start: date, end: date) -> list[dict[str, Any]]:
    """One entry per family of rewordings left unanswered in the range (refused, or answered
    citing no passage): most asked first, then the most recent; the latest example's question
    and conversation."""
    refused: dict[str, list[Turn]] = defaultdict(list)
    for turn in history.turns:
        answer = turn.answer
        if (
            answer is not None
            and (answer.mode == "no_context" or (answer.mode == "rag" and answer.key))
            and _within(answer.created_at, start, end)
        ):
            assert turn.family is not None
            refused[turn.family].append(turn)
    groups: list[dict[str, Any]] = []
    for turns in refused.values():
        newest = sorted(turns, key=lambda t: t.answer.created_at if t.answer else t.asked_at)[::-1]
        latest = newest[0]
        assert latest.answer is not None
        # Its different questions (by their words; by their text when refused before keys were
        # kept), each at its latest asking, newest first.
        different: dict[str, str] = {}
        for turn in newest:
            assert turn.answer is not None
            different.setdefault(turn.answer.key or turn.question.lower(), turn.question)
        groups.append(
            {
                "question": latest.question,
                "count": len(turns),
                "uncited": sum(t.answer is not None and t.answer.mode == "rag" for t in turns),
                "questions": len(different),
                "others": list(different.values())[1 : 1 + OTHER_QUESTIONS],
                "last_asked_at": latest.answer.created_at,
                "session_id": str(latest.session_id),
                "section": latest.answer.nearest,
            }
        )
    groups.sort(key=lambda g: (-g["count"], -g["last_asked_at"].timestamp()))
    return groups


def expected_low_rated(history: History, start: date, end: date) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for turn in history.turns:
        answer = turn.answer
        if answer is None:
            continue
        for f in answer.feedback:
            if f.rating < 0 and _within(f.rated_at, start, end):
                rows.append(
                    {
                        "message_id": str(answer.id),
                        "session_id": str(turn.session_id),
                        "question": turn.question,
                        "answer": answer.content,
                        "citations": answer.citations,
                        "comment": f.comment,
                        "rated_at": f.rated_at,
                    }
                )
    rows.sort(key=lambda r: r["rated_at"], reverse=True)
    return rows
