"""What readers ask, for admins: the insights of one book over a date range (docs/insights.md).

Every number comes from SQL (queries.py); this module asks the queries, shapes their rows into
the schemas, and streams the CSV export from a session of its own (the download outlives the
request's handler).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookchat.chat.models import MessageRole
from bookchat.insights import queries
from bookchat.insights.queries import Window
from bookchat.insights.schemas import (
    AnswerCounts,
    DayTotals,
    Latency,
    LowRatedPage,
    LowRatedRead,
    SectionCount,
    SectionPage,
    SectionRef,
    SummaryRead,
    Totals,
    UnansweredPage,
    UnansweredRead,
)

CSV_COLUMNS = (
    "asked_at",
    "question",
    "mode",
    "section_title",
    "section_heading",
    "section_url",
    "rating",
    "cached",
    "latency_ms",
    "reader",
)
# How many of a group's other questions an unanswered group lists besides its latest example.
OTHER_QUESTIONS = 3
# Rows fetched from the database at a time, and written to the client per chunk.
CSV_BATCH_ROWS = 500
# A spreadsheet runs a cell that starts with one of these as a formula: readers' text is
# prefixed with an apostrophe so that it stays text (OWASP's advice on CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
READER_HASH_HEX = 16


@dataclass(frozen=True, slots=True)
class DateRange:
    """UTC days from `start` to `end`, both included."""

    start: dt.date
    end: dt.date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def window(self) -> Window:
        since = dt.datetime.combine(self.start, dt.time(), tzinfo=dt.UTC)
        return Window(since=since, until=since + dt.timedelta(days=self.days))

    def dates(self) -> Iterator[dt.date]:
        for offset in range(self.days):
            yield self.start + dt.timedelta(days=offset)


@dataclass(slots=True)
class InsightsService:
    """The insights' queries; request-scoped reads use the request's session, the CSV export
    the sessionmaker."""

    sessionmaker: async_sessionmaker[AsyncSession]
    reader_salt: SecretStr | None = None

    async def summary(self, db: AsyncSession, book: str, period: DateRange) -> SummaryRead:
        """Totals and one entry per day of the range (zeros on quiet days), oldest first."""
        scope = (book, period.window(), queries.dialect_of(db))
        per_day = queries.by_day(
            (await db.execute(queries.question_counts(*scope, by_day=True))).all()
        )
        overall = (await db.execute(queries.question_counts(*scope, by_day=False))).one()
        answers = queries.by_day((await db.execute(queries.answer_counts(*scope))).all())
        thumbs = queries.by_day((await db.execute(queries.thumb_counts(*scope))).all())
        latency = queries.by_day(
            (await db.execute(queries.latency_percentiles(*scope, by_day=True))).all()
        )
        latency_all = (
            await db.execute(queries.latency_percentiles(*scope, by_day=False))
        ).one_or_none()
        await db.rollback()  # a read: end the transaction now, not when the session closes

        days = []
        for date in period.dates():
            key = date.isoformat()
            days.append(
                DayTotals(
                    date=date,
                    **_totals(
                        per_day.get(key), answers.get(key), thumbs.get(key), latency.get(key)
                    ),
                )
            )
        totals = Totals(
            questions=overall.questions,
            conversations=overall.conversations,
            readers=overall.readers,
            answers=AnswerCounts(
                **{mode: sum(getattr(d.answers, mode) for d in days) for mode in queries.MODES}
            ),
            cache_hits=sum(d.cache_hits for d in days),
            thumbs_up=sum(d.thumbs_up for d in days),
            thumbs_down=sum(d.thumbs_down for d in days),
            latency_ms=_latency(latency_all),
        )
        return SummaryRead(start=period.start, end=period.end, totals=totals, days=days)

    async def unanswered(
        self, db: AsyncSession, book: str, period: DateRange, *, limit: int, offset: int
    ) -> UnansweredPage:
        """Refused questions grouped so that rewordings land together, most asked first."""
        items_query, total_query = queries.unanswered_page(
            book, period.window(), limit=limit, offset=offset, examples=1 + OTHER_QUESTIONS
        )
        rows = (await db.execute(items_query)).all()
        total = int(await db.scalar(total_query) or 0)
        await db.rollback()
        items: list[UnansweredRead] = []
        for row in rows:  # a group's latest example, then its other questions
            if row.example > 1:
                items[-1].others.append(row.question)
                continue
            items.append(
                UnansweredRead(
                    question=row.question,
                    count=row.n,
                    uncited=int(row.uncited_n or 0),
                    questions=row.questions,
                    last_asked_at=row.created_at,
                    session_id=row.session_id,
                    section=_section(row.nearest_section),
                )
            )
        return UnansweredPage(items=items, total=total, limit=limit, offset=offset)

    async def sections(
        self, db: AsyncSession, book: str, period: DateRange, *, limit: int, offset: int
    ) -> SectionPage:
        """The sections answers cite most (how many answers cite each)."""
        items_query, total_query = queries.section_page(
            book, period.window(), queries.dialect_of(db), limit=limit, offset=offset
        )
        rows = (await db.execute(items_query)).all()
        total = int(await db.scalar(total_query) or 0)
        await db.rollback()
        items = [
            SectionCount(
                title=row.title or "", heading=row.heading or None, url=row.url, count=row.n
            )
            for row in rows
        ]
        return SectionPage(items=items, total=total, limit=limit, offset=offset)

    async def low_rated(
        self, db: AsyncSession, book: str, period: DateRange, *, limit: int, offset: int
    ) -> LowRatedPage:
        """Answers readers gave a thumbs down, newest rating first."""
        items_query, total_query = queries.low_rated_page(
            book, period.window(), limit=limit, offset=offset
        )
        rows = (await db.execute(items_query)).all()
        total = int(await db.scalar(total_query) or 0)
        await db.rollback()
        items = [
            LowRatedRead(
                message_id=row.message_id,
                session_id=row.session_id,
                question=row.question,
                answer=row.answer,
                citations=row.citations or [],
                comment=row.comment,
                rated_at=row.rated_at,
            )
            for row in rows
        ]
        return LowRatedPage(items=items, total=total, limit=limit, offset=offset)

    async def questions_csv(self, book: str, period: DateRange) -> AsyncIterator[str]:
        """The book's questions of the range as CSV text, header first, in chunks of
        `CSV_BATCH_ROWS` rows, read from the database as they are written (never the whole
        export in memory)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        yield _drain(buffer)
        async with self.sessionmaker() as db:
            query = queries.question_rows(book, period.window(), queries.dialect_of(db))
            result = await db.stream(query.execution_options(yield_per=CSV_BATCH_ROWS))
            async for batch in result.partitions():
                for row in batch:
                    writer.writerow(self._csv_row(row))
                yield _drain(buffer)

    def _csv_row(self, row: Any) -> list[str]:
        reader = self.reader_hash(row.user_id, row.session_id)
        if row.answer_role != MessageRole.ASSISTANT:
            # No answer was stored (the next message, if any, is the reader's next question).
            return [row.asked_at.isoformat(), _text_cell(row.question), *[""] * 7, reader]
        title, heading, url = _row_section(row)
        return [
            row.asked_at.isoformat(),
            _text_cell(row.question),
            row.mode or "",
            _text_cell(title),
            _text_cell(heading),
            url,
            "" if row.rating is None else str(int(row.rating)),
            "true" if row.cached else "false",
            "" if row.latency_ms is None else str(row.latency_ms),
            reader,
        ]

    def reader_hash(self, user_id: uuid.UUID | None, session_id: uuid.UUID) -> str:
        """A reader as the export shows them: HMAC-SHA256 of their account id (or, anonymous,
        their conversation's) under `INSIGHTS_READER_SALT`; empty without a salt."""
        if self.reader_salt is None:
            return ""
        reader = f"user:{user_id}" if user_id is not None else f"session:{session_id}"
        digest = hmac.new(
            self.reader_salt.get_secret_value().encode(), reader.encode(), hashlib.sha256
        )
        return digest.hexdigest()[:READER_HASH_HEX]


def _totals(questions: Any, answers: Any, thumbs: Any, latency: Any) -> dict[str, Any]:
    return {
        "questions": questions.questions if questions else 0,
        "conversations": questions.conversations if questions else 0,
        "readers": questions.readers if questions else 0,
        "answers": AnswerCounts(
            **{mode: int(getattr(answers, mode)) if answers else 0 for mode in queries.MODES}
        ),
        "cache_hits": int(answers.cache_hits) if answers else 0,
        "thumbs_up": int(thumbs.up) if thumbs else 0,
        "thumbs_down": int(thumbs.down) if thumbs else 0,
        "latency_ms": _latency(latency),
    }


def _latency(row: Any) -> Latency:
    if row is None or row.p0 is None:
        return Latency()
    return Latency(p50=round(float(row.p0)), p95=round(float(row.p1)))


def _section(stored: dict[str, Any] | None) -> SectionRef | None:
    if not stored or not stored.get("url"):
        return None
    return SectionRef(
        title=stored.get("title") or "", heading=stored.get("heading") or None, url=stored["url"]
    )


def _row_section(row: Any) -> tuple[str, str, str]:
    """A CSV row's section: a rag answer's first source when it is cited, a refused one's
    nearest section; else none."""
    first = row.first_source
    if row.mode == "rag" and isinstance(first, dict) and first.get("cited") is True:
        return first.get("title") or "", first.get("section") or "", first.get("page_url") or ""
    nearest = row.nearest_section
    if row.mode == "no_context" and isinstance(nearest, dict):
        return nearest.get("title") or "", nearest.get("heading") or "", nearest.get("url") or ""
    return "", "", ""


def _text_cell(value: str | None) -> str:
    if not value:
        return ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _drain(buffer: io.StringIO) -> str:
    chunk = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return chunk
