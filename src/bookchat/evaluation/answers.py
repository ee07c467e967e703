"""Every question asked the way a reader asks it: through `ChatService.answer`, its history first
in the same conversation, its selection as the selected text; then the answer checked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookchat.books.names import DEFAULT_BOOK
from bookchat.books.service import BookConfig
from bookchat.chat.schemas import ChatCreate, ChatRead, Citation
from bookchat.chat.service import ChatService
from bookchat.content.service import ContentService
from bookchat.core.errors import AppError
from bookchat.evaluation.checks import BookText, Passage, check_answer
from bookchat.evaluation.questions import Category, Question
from bookchat.providers.extractive import ExtractiveChatModel, quoted_passages

PAGE_SIZE = 100


class QuestionFailed(AppError):
    """Asking a question of the set failed (the message names it and says why)."""


@dataclass(frozen=True, slots=True)
class AnswerResult:
    """One question's answer as the reader got it, and what the checks found."""

    id: str
    category: Category
    must_refuse: bool
    refused: bool
    mode: str
    model: str
    latency_ms: int
    shown: tuple[int, ...]
    # Answerable questions that were answered: whether a cited source is an expected page.
    expected_page_cited: bool | None
    # The same, with an expected section: whether a cited link lands on that heading.
    expected_section_cited: bool | None
    citation_problems: tuple[str, ...]
    gap: str | None
    isolation_problems: tuple[str, ...]
    response: str
    # What the answer cites, as "page > heading", in the order the reader sees the numbers.
    cited: tuple[str, ...] = ()
    # Offline answers: whether the answer quotes the book (or only points at passages).
    quotes: bool | None = None


async def book_text(content: ContentService, db: AsyncSession) -> BookText:
    """The stored passages of every document, as the chat path would hand them out."""
    pages: dict[str, list[Passage]] = {}
    offset = 0
    while True:
        page = await content.list_documents(
            db, DEFAULT_BOOK, limit=PAGE_SIZE, offset=offset, module=None
        )
        for document in page.items:
            detail = await content.get_document(db, DEFAULT_BOOK, document.id)
            pages[detail.source_path] = [
                Passage.of(chunk.text, chunk.page_url) for chunk in detail.chunks
            ]
        offset += len(page.items)
        if not page.items or offset >= page.total:
            return BookText(pages)


async def ask(
    chat: ChatService, db: AsyncSession, question: Question, served: BookConfig
) -> ChatRead:
    """The question's history, then the question, in one new conversation with `served`."""
    session_id: str | None = None
    for earlier in question.history:
        read = await chat.answer(
            db, ChatCreate(message=earlier, session_id=session_id), book=served
        )
        session_id = str(read.session_id)
    return await chat.answer(
        db,
        ChatCreate(
            message=question.question, session_id=session_id, selected_text=question.selection
        ),
        book=served,
    )


async def answer_all(
    chat: ChatService,
    sessionmaker: async_sessionmaker[AsyncSession],
    questions: Sequence[Question],
    book: BookText,
    served: BookConfig,
) -> list[AnswerResult]:
    """Ask every question of the book `served`, one after another, and check each answer."""
    results = []
    for question in questions:
        async with sessionmaker() as db:
            try:
                read = await ask(chat, db, question, served)
            except AppError as exc:
                raise QuestionFailed(f"question {question.id}: {exc.message}") from exc
        check = check_answer(read, book, selection=question.selection)
        answered_book = question.pages and not check.refused
        results.append(
            AnswerResult(
                id=question.id,
                category=question.category,
                must_refuse=question.refuse,
                refused=check.refused,
                mode=read.mode,
                model=read.model,
                latency_ms=read.latency_ms,
                shown=check.shown,
                expected_page_cited=(
                    any(c.cited and c.source_path in question.pages for c in read.citations)
                    if answered_book
                    else None
                ),
                expected_section_cited=(
                    any(_lands_on(c, question.pages, question.section) for c in read.citations)
                    if answered_book and question.section
                    else None
                ),
                citation_problems=check.citation_problems,
                gap=check.gap,
                isolation_problems=check.isolation_problems,
                response=read.response,
                cited=tuple(f"{c.source_path} > {_heading(c)}" for c in read.citations if c.cited),
                quotes=(
                    bool(quoted_passages(read.response))
                    if read.model == ExtractiveChatModel.model
                    else None
                ),
            )
        )
    return results


def _lands_on(citation: Citation, pages: Sequence[str], section: str | None) -> bool:
    """Whether the cited link lands on `section` of one of `pages` (the page's title when the
    passage sits under no heading of its own)."""
    return (
        citation.cited and citation.source_path in pages and _heading(citation).strip() == section
    )


def _heading(citation: Citation) -> str:
    return citation.section or citation.title
