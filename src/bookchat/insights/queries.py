"""The insights' SQL (docs/insights.md): every count, percentile and grouping is computed by the
database over the date range, on SQLite and PostgreSQL alike; Python only shapes the few rows
that come back (one per day, or one page).

Every query is about one book: a message, an answer and a thumb belong to their conversation's
book (`chat_sessions.book`), reached through the session join.

What is counted where:
- a question is a `user` message, on the day it was stored;
- an answer is an `assistant` message whose status is not `error` (an error row is the record
  of a failure, not something the reader read), on the day it was stored; its mode, cache flag
  and latency are its own columns;
- a reader is a signed-in account, or an anonymous conversation (nothing else tells two
  anonymous readers apart);
- a thumb is a `message_feedback` row, on the day it was given (`updated_at`: a changed rating
  counts once, as it stands, on the day it was last set).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    bindparam,
    case,
    cast,
    distinct,
    func,
    literal,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import TextClause

from bookchat.chat.models import ChatSession, Message, MessageFeedback, MessageRole, MessageStatus
from bookchat.core.db import UTCDateTime

# A SELECT of any columns.
Rows = Select[*tuple[Any, ...]]

MODES = ("rag", "selected_text", "no_context")
PERCENTILES = (0.5, 0.95)


@dataclass(frozen=True, slots=True)
class Window:
    """Half-open UTC bounds of a date range: [since, until)."""

    since: dt.datetime
    until: dt.datetime


def dialect_of(db: AsyncSession) -> str:
    return db.get_bind().dialect.name


def day_of(column: Any, dialect: str) -> ColumnElement[str]:
    """The UTC day of a timestamp column as `YYYY-MM-DD` text."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD", type_=String)
    # SQLite keeps UTC timestamps as `YYYY-MM-DD HH:MM:SS.ffffff` text (core/db.UTCDateTime).
    return func.substr(column, 1, 10, type_=String)


def _in(column: Any, window: Window) -> list[ColumnElement[bool]]:
    return [column >= window.since, column < window.until]


def _answered(window: Window) -> list[ColumnElement[bool]]:
    return [
        Message.role == MessageRole.ASSISTANT,
        Message.status != MessageStatus.ERROR,
        *_in(Message.created_at, window),
    ]


def _of_book(query: Rows, session_id: Any, book: str) -> Rows:
    """`query` kept to the rows whose session (`session_id`) is in `book`."""
    return query.join(ChatSession, ChatSession.id == session_id).where(ChatSession.book == book)


def question_counts(book: str, window: Window, dialect: str, *, by_day: bool) -> Rows:
    """Questions, conversations and readers, per day or over the whole range."""
    reader = func.coalesce(ChatSession.user_id, ChatSession.id)
    day = day_of(Message.created_at, dialect) if by_day else literal("", String)
    query = (
        select(
            day.label("day"),
            func.count().label("questions"),
            func.count(distinct(Message.session_id)).label("conversations"),
            func.count(distinct(reader)).label("readers"),
        )
        .join(ChatSession, ChatSession.id == Message.session_id)
        .where(
            ChatSession.book == book,
            Message.role == MessageRole.USER,
            *_in(Message.created_at, window),
        )
    )
    return query.group_by(day) if by_day else query


def answer_counts(book: str, window: Window, dialect: str) -> Rows:
    """Answers by mode and cache hits, per day."""
    day = day_of(Message.created_at, dialect)
    counts = [
        func.coalesce(func.sum(case((Message.mode == mode, 1), else_=0)), 0).label(mode)
        for mode in MODES
    ]
    hits = func.coalesce(func.sum(case((Message.cached.is_(True), 1), else_=0)), 0)
    query = select(day.label("day"), *counts, hits.label("cache_hits")).where(*_answered(window))
    return _of_book(query, Message.session_id, book).group_by(day)


def thumb_counts(book: str, window: Window, dialect: str) -> Rows:
    """Thumbs up and down, per day they were given."""
    day = day_of(MessageFeedback.updated_at, dialect)
    query = (
        select(
            day.label("day"),
            func.coalesce(func.sum(case((MessageFeedback.rating > 0, 1), else_=0)), 0).label("up"),
            func.coalesce(func.sum(case((MessageFeedback.rating < 0, 1), else_=0)), 0).label(
                "down"
            ),
        )
        .join(Message, Message.id == MessageFeedback.message_id)
        .where(*_in(MessageFeedback.updated_at, window))
    )
    return _of_book(query, Message.session_id, book).group_by(day)


def latency_percentiles(book: str, window: Window, dialect: str, *, by_day: bool) -> Rows:
    """The answers' latency percentiles (`PERCENTILES`), per day or over the whole range.

    PostgreSQL's `percentile_cont`: linear interpolation between the two closest ranks. SQLite
    has no percentile function; the same definition is computed with window functions: rank
    each latency (0-based, `rn`) among the group's `n`, and interpolate between ranks
    floor(p * (n - 1)) and the next one."""
    latency = Message.latency_ms
    answered = [*_answered(window), latency.is_not(None)]
    day = day_of(Message.created_at, dialect) if by_day else literal("", String)
    if dialect == "postgresql":
        query = select(
            day.label("day"),
            *(
                func.percentile_cont(p).within_group(latency).label(f"p{i}")
                for i, p in enumerate(PERCENTILES)
            ),
        ).where(*answered)
        query = _of_book(query, Message.session_id, book)
        return query.group_by(day) if by_day else query
    partition = [day] if by_day else None
    ranked = _of_book(
        select(
            day.label("day"),
            latency.label("v"),
            (func.row_number().over(partition_by=partition, order_by=latency) - 1).label("rn"),
            func.count().over(partition_by=partition).label("n"),
        ).where(*answered),
        Message.session_id,
        book,
    ).subquery()

    def interpolated(p: float) -> ColumnElement[float]:
        position = p * (ranked.c.n - 1)
        low = cast(position, Integer)  # positive: truncation is floor
        at_low = func.max(case((ranked.c.rn == low, ranked.c.v)))
        at_high = func.max(case((ranked.c.rn == low + 1, ranked.c.v)))
        return at_low + (position - low) * (func.coalesce(at_high, at_low) - at_low)

    return select(
        ranked.c.day,
        *(interpolated(p).label(f"p{i}") for i, p in enumerate(PERCENTILES)),
    ).group_by(ranked.c.day, ranked.c.n)


def question_before(answer: Any) -> Any:
    """The text of the question an answer replies to: the session's last user message stored
    before it (a turn stores its question, then its answer)."""
    asked = aliased(Message, name="asked")
    return (
        select(asked.content)
        .where(
            asked.session_id == answer.session_id,
            asked.role == MessageRole.USER,
            asked.created_at <= answer.created_at,
        )
        .order_by(asked.created_at.desc(), asked.id.desc())
        .limit(1)
        .correlate(answer)
        .scalar_subquery()
    )


def unanswered_groups(book: str, window: Window) -> Any:
    """The answers of the range that left their question unanswered, with the question: the
    refused ones (`no_context`) and the `rag` ones whose model cited no passage (the chat keeps
    a question key on those alone, chat/refusals.py). Each has its group key: its nearest
    section's URL when there is one, else the question's normalized words, else (answers
    refused before those were kept) the question lower-cased; `asked`, which question it is
    (its normalized words, else its text lower-cased: rewordings in the same words are one);
    and `uncited`, 1 for the second kind."""
    answer = aliased(Message, name="answer")
    question = question_before(answer)
    url = answer.nearest_section["url"].as_string()
    asked = func.coalesce(
        literal("k:") + answer.question_key,
        literal("q:") + func.lower(func.coalesce(question, "")),
    )
    key = func.coalesce(literal("s:") + url, asked)
    refused = select(
        answer.id,
        answer.session_id,
        answer.created_at,
        answer.nearest_section,
        func.coalesce(question, "").label("question"),
        key.label("key"),
        asked.label("asked"),
        case((answer.mode == "rag", 1), else_=0).label("uncited"),
    ).where(
        answer.role == MessageRole.ASSISTANT,
        # Two index scans: refusals by mode (with those refused before keys were kept), and
        # the partial index of the answers that keep a key.
        or_(answer.mode == "no_context", answer.question_key.is_not(None)),
        *_in(answer.created_at, window),
    )
    return _of_book(refused, answer.session_id, book).subquery("refused")


def unanswered_page(
    book: str, window: Window, *, limit: int, offset: int, examples: int
) -> tuple[Rows, Rows]:
    """One page of groups (most asked first, then most recent), and the number of groups.

    Each group comes as up to `examples` rows, one per different question of the group (the
    latest asking of each, newest first; `example` numbers them from 1, the group's latest
    example), each with the group's totals: `n` times asked, `uncited_n` of them answered
    citing nothing, `questions` different questions."""
    refused = unanswered_groups(book, window)
    newest_first = (refused.c.created_at.desc(), refused.c.id.desc())
    ranked = select(
        refused,
        func.row_number()
        .over(partition_by=(refused.c.key, refused.c.asked), order_by=newest_first)
        .label("latest_of_question"),
        func.count().over(partition_by=refused.c.key).label("n"),
        func.sum(refused.c.uncited).over(partition_by=refused.c.key).label("uncited_n"),
    ).subquery("ranked")
    # One row per different question of a group, its latest asking: the group's own latest
    # asking is the first of them. A CTE, read twice (the page's groups, then their rows):
    # PostgreSQL computes it once, where a subquery read twice was planned, once its prepared
    # statement went generic, as a nested loop that computed it again for each group of the
    # page (5.5 s instead of 0.5 s for a year of 300,000 messages).
    questions = (
        select(
            ranked,
            func.row_number()
            .over(
                partition_by=ranked.c.key,
                order_by=(ranked.c.created_at.desc(), ranked.c.id.desc()),
            )
            .label("example"),
            func.count().over(partition_by=ranked.c.key).label("questions"),
            func.max(ranked.c.created_at).over(partition_by=ranked.c.key).label("last_at"),
        )
        .where(ranked.c.latest_of_question == 1)
        .cte("questions")
    )
    page = (
        select(questions.c.key)
        .where(questions.c.example == 1)
        .order_by(questions.c.n.desc(), questions.c.last_at.desc(), questions.c.key)
        .limit(limit)
        .offset(offset)
        .subquery("page")
    )
    items = (
        select(questions)
        .join(page, page.c.key == questions.c.key)
        .where(questions.c.example <= examples)
        .order_by(
            questions.c.n.desc(), questions.c.last_at.desc(), questions.c.key, questions.c.example
        )
    )
    total = select(func.count(distinct(refused.c.key)))
    return items, total


_CITED = {
    # Every cited source of the `rag` answers of the book and range, one row per (answer,
    # source). On PostgreSQL the column is `json` (text): read once as `jsonb`, each field is
    # then a lookup, not a parse of the whole list (half the time).
    "postgresql": """
        SELECT m.id AS answer_id, e.value ->> 'page_url' AS url, e.value ->> 'title' AS title,
               e.value ->> 'section' AS heading
        FROM messages AS m
        JOIN chat_sessions AS s ON s.id = m.session_id
        CROSS JOIN LATERAL jsonb_array_elements(
            CASE WHEN json_typeof(m.citations) = 'array' THEN m.citations::jsonb
                 ELSE '[]'::jsonb END
        ) AS e(value)
        WHERE m.role = 'assistant' AND m.mode = 'rag' AND s.book = :book
          AND m.created_at >= :since AND m.created_at < :until
          AND e.value ->> 'cited' = 'true' AND coalesce(e.value ->> 'page_url', '') <> ''
    """,
    "sqlite": """
        SELECT m.id AS answer_id, json_extract(e.value, '$.page_url') AS url,
               json_extract(e.value, '$.title') AS title,
               json_extract(e.value, '$.section') AS heading
        FROM messages AS m
        JOIN chat_sessions AS s ON s.id = m.session_id,
             json_each(CASE WHEN json_type(m.citations) = 'array' THEN m.citations ELSE '[]' END)
             AS e
        WHERE m.role = 'assistant' AND m.mode = 'rag' AND s.book = :book
          AND m.created_at >= :since AND m.created_at < :until
          AND json_extract(e.value, '$.cited') = 1
          AND coalesce(json_extract(e.value, '$.page_url'), '') <> ''
    """,
}


def _windowed(sql: str, book: str, window: Window, **params: Any) -> TextClause:
    return text(sql).bindparams(
        bindparam("book", book, type_=String()),
        bindparam("since", window.since, type_=UTCDateTime()),
        bindparam("until", window.until, type_=UTCDateTime()),
        *(bindparam(name, value) for name, value in params.items()),
    )


def section_page(
    book: str, window: Window, dialect: str, *, limit: int, offset: int
) -> tuple[TextClause, TextClause]:
    """The most cited sections (how many answers cite each), and how many sections were cited."""
    cited = _CITED["postgresql" if dialect == "postgresql" else "sqlite"]
    items = f"""
        WITH cited AS ({cited})
        SELECT url, max(title) AS title, max(heading) AS heading,
               count(DISTINCT answer_id) AS n
        FROM cited GROUP BY url ORDER BY n DESC, url LIMIT :limit OFFSET :offset
    """  # noqa: S608 (no value is formatted in: the fragment is one of two constants)
    total = f"WITH cited AS ({cited}) SELECT count(DISTINCT url) FROM cited"  # noqa: S608
    return (
        _windowed(items, book, window, limit=limit, offset=offset),
        _windowed(total, book, window),
    )


def low_rated_page(book: str, window: Window, *, limit: int, offset: int) -> tuple[Rows, Rows]:
    """Thumbs-down of the book and range, newest first, with the answer and its question."""
    answer = aliased(Message, name="answer")

    def rated(query: Rows) -> Rows:
        query = query.join(answer, answer.id == MessageFeedback.message_id)
        return _of_book(query, answer.session_id, book).where(
            MessageFeedback.rating < 0, *_in(MessageFeedback.updated_at, window)
        )

    items = (
        rated(
            select(
                MessageFeedback.message_id,
                answer.session_id,
                func.coalesce(question_before(answer), "").label("question"),
                answer.content.label("answer"),
                answer.citations,
                MessageFeedback.comment,
                MessageFeedback.updated_at.label("rated_at"),
            )
        )
        .order_by(MessageFeedback.updated_at.desc(), MessageFeedback.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return items, rated(select(func.count()).select_from(MessageFeedback))


def question_rows(book: str, window: Window, dialect: str) -> Rows:
    """Every question of the book and range, oldest first, with the message that follows it in
    its session (its answer when `answer_role` is `assistant`): mode, first source, nearest
    section, rating (the sum of its thumbs), cache flag, latency; and who asked (for the
    reader's keyed hash)."""
    question = aliased(Message, name="question")
    following = aliased(Message, name="following")
    after_question = (
        following.session_id == question.session_id,
        following.created_at > question.created_at,
    )
    if dialect == "postgresql":
        # One index scan per question finds the next message and reads its row. A join on
        # `id = (correlated subquery)` instead made PostgreSQL hash every answer of the table.
        answer: Any = (
            select(
                following.id,
                following.role,
                following.mode,
                following.citations,
                following.nearest_section,
                following.cached,
                following.latency_ms,
            )
            .where(*after_question)
            .order_by(following.created_at, following.id)
            .limit(1)
            .lateral("answer")
        )
        joined = (answer, true())
        columns = answer.c
    else:
        # SQLite has no LATERAL; it looks the next message's id up, then the row by its key.
        next_message = (
            select(following.id)
            .where(*after_question)
            .order_by(following.created_at, following.id)
            .limit(1)
            .correlate(question)
            .scalar_subquery()
        )
        answer = aliased(Message, name="answer")
        joined = (answer, answer.id == next_message)
        columns = answer
    rating = (
        select(func.sum(MessageFeedback.rating))
        .where(MessageFeedback.message_id == columns.id)
        .scalar_subquery()
    )
    return (
        select(
            question.created_at.label("asked_at"),
            question.content.label("question"),
            columns.role.label("answer_role"),
            columns.mode,
            # Only the first source (a rag answer's first cited one, when it cites any: sources
            # are numbered in order of first use), not the whole list with its snippets.
            columns.citations[0].label("first_source"),
            columns.nearest_section,
            rating.label("rating"),
            columns.cached,
            columns.latency_ms,
            ChatSession.user_id,
            ChatSession.id.label("session_id"),
        )
        .join(ChatSession, ChatSession.id == question.session_id)
        .outerjoin(*joined)
        .where(
            ChatSession.book == book,
            question.role == MessageRole.USER,
            *_in(question.created_at, window),
        )
        .order_by(question.created_at, question.id)
    )


def by_day(rows: Sequence[Any]) -> dict[str, Any]:
    return {row.day: row for row in rows}
