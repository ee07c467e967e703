"""The chat service the routes call: one message answered in one piece (`answer`), or stored
first and then answered as a stream of events (`prepare`, then `stream`).

Each job has its own module: turns.py (the shared path: limits, the session, the question, the
context and prompt, the stored answer), rewriting.py (a follow-up made standalone for search),
answer_cache.py (a first question answered before), queries.py (the SQL of sessions and
history) and streaming.py (the events and the final write a hang-up cannot interrupt).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookchat.books.service import BookConfig
from bookchat.chat import turns
from bookchat.chat.answer_cache import AnswerCache
from bookchat.chat.citations import CitedAnswer, resolve_citations
from bookchat.chat.models import MessageStatus
from bookchat.chat.schemas import ChatCreate, ChatRead
from bookchat.chat.streaming import answer_events
from bookchat.chat.turns import Turn
from bookchat.core.config import Settings
from bookchat.core.errors import AppError
from bookchat.core.sse import StreamEvent
from bookchat.providers.base import FINISHED, ChatModel, Completion, Usage
from bookchat.retrieval.service import Retriever

if TYPE_CHECKING:
    from bookchat.core.metrics import Metrics

logger = structlog.get_logger(__name__)


@dataclass(slots=True)
class ChatService:
    """Answers readers' messages; owns the transaction of every call.

    `sessionmaker` is for the stream's final write only, which outlives the request; everything
    else runs in the request's session, passed in as `db`.
    """

    settings: Settings
    model: ChatModel
    retriever: Retriever
    sessionmaker: async_sessionmaker[AsyncSession]
    cache: AnswerCache | None = None
    metrics: Metrics | None = None  # counts each stored answer by mode

    async def prepare(
        self,
        db: AsyncSession,
        request: ChatCreate,
        user_id: uuid.UUID | None = None,
        *,
        book: BookConfig,
        question_id: uuid.UUID | None = None,
    ) -> Turn:
        """Store the question in a session of `book` (under `question_id` when given), then
        gather what the answer may use."""
        return await turns.prepare_turn(
            db,
            request,
            user_id,
            settings=self.settings,
            book=book,
            model=self.model,
            retriever=self.retriever,
            cache=self.cache,
            question_id=question_id,
        )

    async def finish(
        self,
        db: AsyncSession,
        turn: Turn,
        answer: CitedAnswer,
        *,
        usage: Usage | None,
        model: str,
        status: MessageStatus = MessageStatus.COMPLETE,
        finish_reason: str | None = FINISHED,
    ) -> ChatRead:
        """Store the answer (or what there is of it) and describe it."""
        return await turns.finish_turn(
            db,
            turn,
            answer,
            usage=usage,
            model=model,
            status=status,
            finish_reason=finish_reason,
            metrics=self.metrics,
        )

    async def answer(
        self,
        db: AsyncSession,
        request: ChatCreate,
        user_id: uuid.UUID | None = None,
        *,
        book: BookConfig,
    ) -> ChatRead:
        """Answer one message in one piece."""
        turn = await self.prepare(db, request, user_id, book=book)
        canned = turns.canned_answer(turn)
        if canned is not None:
            answer = resolve_citations(canned.text, turn.prompt.sources)
            return await self.finish(db, turn, answer, usage=None, model=canned.model)
        completion = await self._complete(db, turn)
        answer = resolve_citations(completion.text, turn.prompt.sources)
        read = await self.finish(
            db,
            turn,
            answer,
            usage=completion.usage,
            model=completion.model,
            status=turns.ended(completion.finish_reason),
            finish_reason=completion.finish_reason,
        )
        await turns.remember_answer(self.cache, turn, read, answer)
        return read

    async def _complete(self, db: AsyncSession, turn: Turn) -> Completion:
        """The model's answer within the turn's deadline. On failure the answer is stored as
        the stream stores it (nothing was shown: empty, `error`, or `partial` when the turn's
        time ran out) and the error names the session, so the reader can go on in it."""
        try:
            async with asyncio.timeout_at(turn.deadline):
                return await self.model.complete(turn.prompt)
        except TimeoutError:
            error: AppError = turns.out_of_time(self.settings)
            status = MessageStatus.PARTIAL
        except AppError as exc:
            error, status = exc, MessageStatus.ERROR
        nothing = resolve_citations("", turn.prompt.sources)
        try:
            await self.finish(
                db,
                turn,
                nothing,
                usage=None,
                model=self.model.model,
                status=status,
                finish_reason=None,
            )
            stored = True
        except Exception:  # the model's error is the one to report; the question is stored
            logger.exception("chat.store_failed", status=status.value)
            stored = False
        raise turns.in_session(error, turn, stored=stored)

    async def answer_stream(
        self,
        db: AsyncSession,
        request: ChatCreate,
        user_id: uuid.UUID | None = None,
        *,
        book: BookConfig,
    ) -> AsyncGenerator[StreamEvent]:
        """Answer one message as a stream of events.

        Validation and storing the question happen now, before the stream opens, so bad input
        is a plain 400 in the error shape, not an event."""
        return self.stream(await self.prepare(db, request, user_id, book=book))

    def stream(self, turn: Turn) -> AsyncGenerator[StreamEvent]:
        """The prepared turn's answer as events: `start`, `sources`, `token`..., then `done` or
        `error` (see streaming.py)."""
        return answer_events(
            turn,
            model=self.model,
            canned=turns.canned_answer(turn),
            sessionmaker=self.sessionmaker,
            cache=self.cache,
            settings=self.settings,
            metrics=self.metrics,
        )
