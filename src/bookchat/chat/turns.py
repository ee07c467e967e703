"""A turn of the chat (DESIGN.md section 7): the path every answer shares, however it is delivered.

`prepare_turn` validates, resolves the session, stores the question and gathers what the answer
may use; `finish_turn` stores the answer (or what there is of it) and describes it. In between,
the one-piece answer (service.py) and the stream (streaming.py) only differ in how the model's
text arrives.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from bookchat.books.service import BookConfig
from bookchat.chat import prompts, queries, refusals
from bookchat.chat.answer_cache import AnswerCache, CachedAnswer
from bookchat.chat.citations import CitedAnswer
from bookchat.chat.models import ChatSession, Message, MessageRole, MessageStatus
from bookchat.chat.rewriting import leans_on_conversation, standalone_query
from bookchat.chat.schemas import ChatCreate, ChatMode, ChatRead, UsageRead
from bookchat.core.budget import charged_as
from bookchat.core.config import Settings
from bookchat.core.db import utcnow
from bookchat.core.errors import AppError, LLMTimeout, NotFound, ValidationFailed
from bookchat.providers.base import (
    FINISHED,
    SELECTION_TITLE,
    ChatMessage,
    ChatModel,
    ChatPrompt,
    Source,
    Usage,
)
from bookchat.providers.budgeted import admit_prompt
from bookchat.retrieval.service import Retriever

if TYPE_CHECKING:
    from bookchat.core.metrics import Metrics

logger = structlog.get_logger(__name__)

TITLE_CHARS = 80
# The model stored with an answer that no model wrote (the book does not cover the question).
NO_MODEL = "none"


@dataclass(slots=True)
class Turn:
    """A question that is stored and ready to be answered."""

    session_id: uuid.UUID
    question_id: uuid.UUID
    reply_id: uuid.UUID
    book: BookConfig
    mode: ChatMode
    prompt: ChatPrompt
    search_query: str | None
    history: int
    started: float
    # When the turn's time is up (event loop clock): the rewrite and the answer share it.
    deadline: float
    # First turns are cacheable: the key to store the answer under, or the answer found there.
    cache_key: str | None = None
    cached: CachedAnswer | None = None
    # Whether the question's row already holds `search_query` (a first question is searched as
    # asked, so it is known before the question is stored: no UPDATE with the answer).
    search_query_stored: bool = False
    # A refused question's nearest passage below the relevance floor (for the insights).
    nearest: Source | None = None


@dataclass(frozen=True, slots=True)
class CannedAnswer:
    """An answer given without asking the model, and the model name stored with it."""

    text: str
    model: str


def check_limits(settings: Settings, request: ChatCreate) -> None:
    """Limits that come from settings, so they cannot live in the static schema."""
    for field, value, limit in (
        ("message", request.message, settings.max_message_chars),
        ("selected_text", request.selected_text, settings.max_selected_text_chars),
    ):
        if value is not None and len(value) > limit:
            hint = "; select a shorter passage" if field == "selected_text" else ""
            raise ValidationFailed(
                f"{field} is longer than {limit} characters{hint}",
                details=[
                    {
                        "loc": ["body", field],
                        "msg": f"at most {limit} characters",
                        "type": "string_too_long",
                    }
                ],
            )


async def prepare_turn(
    db: AsyncSession,
    request: ChatCreate,
    user_id: uuid.UUID | None,
    *,
    settings: Settings,
    book: BookConfig,
    model: ChatModel,
    retriever: Retriever,
    cache: AnswerCache | None,
    question_id: uuid.UUID | None = None,
) -> Turn:
    """Store the question in a session of `book`, then gather what the answer may use.

    `question_id` is the id to store the question under, for a client that named its message
    before sending it (ChatKit); a new one by default."""
    check_limits(settings, request)
    started = time.perf_counter()
    deadline = asyncio.get_running_loop().time() + settings.chat_turn_timeout_seconds
    session, is_new = await _resolve_session(db, request, user_id, book.slug)
    structlog.contextvars.bind_contextvars(session_id=str(session.id))
    history: list[ChatMessage] = (
        []
        if is_new or request.selected_text or settings.history_messages == 0
        else await queries.recent_history(db, session.id, settings.history_messages)
    )
    # Without history and selection the question is searched as the reader wrote it.
    asked_as_is = not history and not request.selected_text
    question = Message(
        id=question_id or uuid.uuid4(),
        session_id=session.id,
        role=MessageRole.USER,
        content=request.message,
        selected_text=request.selected_text,
        page_context=request.page_context,
        search_query=request.message if asked_as_is else None,
    )
    db.add(question)
    session.updated_at = utcnow()
    # Committed before anything can fail: a failing model never loses what the reader wrote.
    await db.commit()

    cache_key: str | None = None
    cached: CachedAnswer | None = None
    # The same prompt for a model that takes the sources as documents and cites them itself
    # (built only for such a model).
    document_messages: list[ChatMessage] | None = None
    nearest: Source | None = None
    if request.selected_text:
        # The selection alone: no retrieval, no history.
        mode: ChatMode = "selected_text"
        search_query = None
        sources = [
            Source(
                index=1,
                title=SELECTION_TITLE,
                text=request.selected_text,
                page_url=request.page_context,
            )
        ]
        layout = partial(
            prompts.selection_messages,
            title=book.title,
            persona=book.persona,
            question=request.message,
            selection=request.selected_text,
        )
        messages = layout()
        if model.takes_documents:
            document_messages = layout(as_documents=True)
    elif (
        history
        and not leans_on_conversation(request.message)
        and await retriever.covers(request.message, book=book.slug) is False
    ):
        # A follow-up is judged on its own words too: a switch to a topic the book does not
        # cover is refused, not carried by the previous question (and costs no model call).
        search_query = request.message
        sources = []
        mode = "no_context"
        messages = []
        nearest = await retriever.nearest(request.message, book=book.slug)
    else:
        with charged_as("rewrite"):
            search_query = await standalone_query(
                model,
                title=book.title,
                question=request.message,
                history=history,
                deadline=deadline,
            )
        # Only a first question (no history) means the same thing in every session.
        if cache is not None and not history:
            cache_key = await cache.key(request.message, request.page_context, book.slug)
            cached = await cache.get(cache_key)
        sources = (
            cached.sources
            if cached is not None
            else await retriever.retrieve(
                search_query,
                book=book.slug,
                limit=settings.retrieval_top_k,
                page_context=request.page_context,
                # A follow-up's own words are searched too: the rewrite may have lost them.
                message=request.message if history else None,
            )
        )
        mode = "rag" if sources else "no_context"
        if not sources:
            nearest = await retriever.nearest(search_query, book=book.slug)
        layout = partial(
            prompts.book_messages,
            title=book.title,
            persona=book.persona,
            question=request.message,
            sources=sources,
            history=history,
            history_token_budget=settings.history_token_budget,
        )
        messages = layout()
        if model.takes_documents:
            document_messages = layout(as_documents=True)
    prompt = ChatPrompt(
        messages=messages,
        question=request.message,
        sources=sources,
        temperature=settings.llm_temperature,
        max_tokens=settings.llm_max_tokens,
        document_messages=document_messages,
    )
    if mode != "no_context" and cached is None:
        # The budget must cover this question before a stream opens (a 429, not an event).
        await admit_prompt(prompt)
    return Turn(
        session_id=session.id,
        question_id=question.id,
        reply_id=uuid.uuid4(),
        book=book,
        mode=mode,
        prompt=prompt,
        search_query=search_query,
        search_query_stored=asked_as_is and search_query == request.message,
        history=len(history),
        started=started,
        deadline=deadline,
        cache_key=cache_key,
        cached=cached,
        nearest=nearest,
    )


def not_covered(book_title: str) -> str:
    """The answer when the book has nothing relevant to the question."""
    return prompts.NOT_COVERED_ANSWER.format(title=book_title)


def ended(finish_reason: str | None) -> MessageStatus:
    """An answer's status from how it ended: whole only when the model said it finished."""
    return MessageStatus.COMPLETE if finish_reason == FINISHED else MessageStatus.PARTIAL


def out_of_time(settings: Settings) -> LLMTimeout:
    """The error of a turn whose deadline (`CHAT_TURN_TIMEOUT_SECONDS`) passed."""
    return LLMTimeout(
        f"The answer took longer than the {settings.chat_turn_timeout_seconds:g} seconds "
        "a question may take; try again."
    )


def where_stored(turn: Turn, *, stored: bool) -> dict[str, str]:
    """Where a failed turn left its rows: the session that holds the question (a reader whose
    first question failed goes on in it) and the failed answer's id when it was stored."""
    where = {"session_id": str(turn.session_id)}
    if stored:
        where["message_id"] = str(turn.reply_id)
    return where


def in_session(exc: AppError, turn: Turn, *, stored: bool) -> AppError:
    """The error with `where_stored` added to its details."""
    exc.details = [*exc.details, where_stored(turn, stored=stored)]
    return exc


def canned_answer(turn: Turn) -> CannedAnswer | None:
    """The answer when no model is to be asked: the book does not cover the question (nothing
    invented), or the same first question was answered before (the cached answer)."""
    if turn.mode == "no_context":
        return CannedAnswer(text=not_covered(turn.book.title), model=NO_MODEL)
    if turn.cached is not None:
        return CannedAnswer(text=turn.cached.text, model=turn.cached.model)
    return None


async def finish_turn(
    db: AsyncSession,
    turn: Turn,
    answer: CitedAnswer,
    *,
    usage: Usage | None,
    model: str,
    status: MessageStatus = MessageStatus.COMPLETE,
    finish_reason: str | None = FINISHED,
    metrics: Metrics | None = None,
) -> ChatRead:
    """Store the answer (or what there is of it), as the reader sees it, and describe it;
    `metrics` counts it once it is stored (every way of answering ends here)."""
    usage = usage or Usage()
    latency_ms = round((time.perf_counter() - turn.started) * 1000)
    reply = Message(
        id=turn.reply_id,
        session_id=turn.session_id,
        role=MessageRole.ASSISTANT,
        content=answer.text,
        status=status,
        finish_reason=finish_reason,
        mode=turn.mode,
        model=model,
        citations=[c.model_dump(mode="json") for c in answer.citations],
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        latency_ms=latency_ms,
        cached=turn.cached is not None,
    )
    if turn.mode == "no_context":
        reply.nearest_section = refusals.nearest_section(turn.nearest)
        reply.question_key = refusals.question_key(turn.prompt.question)
    elif refusals.cites_nothing(turn.mode, status, answer.citations):
        # The model found nothing in the passages to cite: for the insights, the book did not
        # answer this question either, and its best passage is the section nearest to it.
        reply.nearest_section = refusals.nearest_section(turn.prompt.sources[0])
        reply.question_key = refusals.question_key(turn.prompt.question)
    db.add(reply)
    if turn.search_query is not None and not turn.search_query_stored:
        await db.execute(
            update(Message)
            .where(Message.id == turn.question_id)
            .values(search_query=turn.search_query)
        )
    await db.commit()
    if metrics is not None:
        cached = "true" if turn.cached is not None else "false"
        metrics.answers.labels(turn.book.slug, turn.mode, status.value, cached).inc()
    logger.info(
        "chat.answered",
        mode=turn.mode,
        status=status.value,
        finish_reason=finish_reason,
        sources=len(turn.prompt.sources),
        history=turn.history,
        latency_ms=latency_ms,
    )
    return ChatRead(
        response=answer.text,
        session_id=turn.session_id,
        message_id=reply.id,
        timestamp=reply.created_at,
        mode=turn.mode,
        model=model,
        citations=answer.citations,
        usage=UsageRead(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
        ),
        latency_ms=latency_ms,
        cached=turn.cached is not None,
        status=status,
        finish_reason=finish_reason,
    )


async def remember_answer(
    cache: AnswerCache | None, turn: Turn, read: ChatRead, answer: CitedAnswer
) -> None:
    """Keep a fresh, whole first-turn answer from the book for the next reader who asks the
    same; an answer cut short is never kept (it would be replayed as whole).

    It is kept as the reader saw it, with its sources under the same numbers: renumbering it
    again when it is replayed changes nothing, so the replay shows the same citations."""
    if (
        cache is not None
        and turn.cached is None
        and turn.mode == "rag"
        and read.status is MessageStatus.COMPLETE
    ):
        await cache.put(turn.cache_key, answer.text, read.model, answer.sources)


async def _resolve_session(
    db: AsyncSession, request: ChatCreate, user_id: uuid.UUID | None, book: str
) -> tuple[ChatSession, bool]:
    """The requested session of `book`; a missing, malformed or unknown id starts a new one.

    Another reader's session, or another book's, answers 404; an anonymous session becomes the
    signed-in reader's the first time they write to it."""
    existing = await queries.find_session(db, request.session_id)
    if existing is not None:
        if not existing.visible_to(user_id) or existing.book != book:
            raise NotFound("No chat session with this id.")
        if existing.user_id is None and user_id is not None:
            existing.user_id = user_id
        return existing, False
    session = ChatSession(
        id=uuid.uuid4(), book=book, user_id=user_id, title=session_title(request.message)
    )
    db.add(session)
    return session, True


def session_title(message: str) -> str:
    """A conversation's title: its first message on one line, cut to `TITLE_CHARS`."""
    title = " ".join(message.split())
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1].rstrip() + "…"
