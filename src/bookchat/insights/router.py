"""Insights endpoints (admin only): what a book's readers ask, where they need help, what they
disliked; `/api/v1/books/{book}/insights/...` for one book, `/api/v1/insights/...` for the
default book."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from bookchat.accounts.dependencies import AdminDep
from bookchat.books.dependencies import CurrentBook
from bookchat.books.names import DEFAULT_BOOK
from bookchat.core.openapi import error_responses
from bookchat.dependencies import SessionDep
from bookchat.insights.dependencies import DateRangeDep, InsightsServiceDep, Limit, Offset
from bookchat.insights.schemas import LowRatedPage, SectionPage, SummaryRead, UnansweredPage

router = APIRouter(
    prefix="/insights",
    tags=["insights"],
    dependencies=[AdminDep],
    responses=error_responses(400, 401, 403, 404),
)


@router.get("/summary", response_model=SummaryRead)
async def read_summary(
    db: SessionDep, service: InsightsServiceDep, book: CurrentBook, period: DateRangeDep
) -> SummaryRead:
    """Totals and a per-day series: questions, conversations, readers, answers, thumbs, latency."""
    return await service.summary(db, book.slug, period)


@router.get("/unanswered", response_model=UnansweredPage)
async def list_unanswered(
    db: SessionDep,
    service: InsightsServiceDep,
    book: CurrentBook,
    period: DateRangeDep,
    limit: Limit = 20,
    offset: Offset = 0,
) -> UnansweredPage:
    """Questions the book did not cover, rewordings grouped, most asked first."""
    return await service.unanswered(db, book.slug, period, limit=limit, offset=offset)


@router.get("/sections", response_model=SectionPage)
async def list_sections(
    db: SessionDep,
    service: InsightsServiceDep,
    book: CurrentBook,
    period: DateRangeDep,
    limit: Limit = 20,
    offset: Offset = 0,
) -> SectionPage:
    """The book sections answers cite most."""
    return await service.sections(db, book.slug, period, limit=limit, offset=offset)


@router.get("/low-rated", response_model=LowRatedPage)
async def list_low_rated(
    db: SessionDep,
    service: InsightsServiceDep,
    book: CurrentBook,
    period: DateRangeDep,
    limit: Limit = 20,
    offset: Offset = 0,
) -> LowRatedPage:
    """Answers readers gave a thumbs down, newest first, with their question and comment."""
    return await service.low_rated(db, book.slug, period, limit=limit, offset=offset)


@router.get(
    "/questions.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "The questions as CSV."}},
)
async def export_questions(
    service: InsightsServiceDep, book: CurrentBook, period: DateRangeDep
) -> StreamingResponse:
    """The range's questions as a CSV download (mode, section, rating; no emails or ids)."""
    # The default book's name is as it was; another book's names the book.
    prefix = "questions" if book.slug == DEFAULT_BOOK else f"questions-{book.slug}"
    filename = f"{prefix}-{period.start.isoformat()}-{period.end.isoformat()}.csv"
    return StreamingResponse(
        service.questions_csv(book.slug, period),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
