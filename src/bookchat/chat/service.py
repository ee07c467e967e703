"""The chat flow (DESIGN.md section 7): validate, resolve the session, store the question,
gather context, ask the model, store and return the answer.

`prepare` does everything up to the model call; `answer` and `stream` only differ in how the
model's text is delivered, and both end in `finish`.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass

import anyio
import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookchat.chat import prompts
from bookchat.chat.answer_cache import AnswerCache, CachedAnswer
from bookchat.chat.citations import resolve_citations
from bookchat.chat.models import ChatSession, Message, MessageRole, MessageStatus
from bookchat.chat.schemas import ChatCreate, ChatMode, ChatRead, UsageRead
from bookchat.core.config import Settings
from bookchat.core.db import utcnow
from bookchat.core.errors import AppError, NotFound, ValidationFailed
from bookchat.core.sse import StreamEvent
from bookchat.providers.base import ChatMessage, ChatModel, ChatPrompt, Source, Usage
from bookchat.retrieval.service import Retriever

logger = structlog.get_logger(__name__)

TITLE_CHARS = 80
SELECTION_TITLE = "Selected text"
NO_MODEL = "none"
REWRITE_MAX_TOKENS = 64
# One event of the answer stream: its name and its JSON payload.


def parse_session_id(raw: str | None) -> uuid.UUID | None:
    """A session id as a UUID, or None when it is missing or malformed."""
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


@dataclass(slots=True)
class Turn:
    """A question that is stored and ready to be answered."""

    session_id: uuid.UUID
    question_id: uuid.UUID
    reply_id: uuid.UUID
    mode: ChatMode
    prompt: ChatPrompt
    search_query: str | None
    history: int
    started: float
    # First turns are cacheable: the key to store the answer under, or the answer found there.
    cache_key: str | None = None
    cached: CachedAnswer | None = None


@dataclass(slots=True)
class ChatService:
    """Answers readers' messages; owns the transaction of every call."""

    settings: Settings
    model: ChatModel
    retriever: Retriever
    sessionmaker: async_sessionmaker[AsyncSession]
    cache: AnswerCache | None = None

    def check_limits(self, request: ChatCreate) -> None:
        """Limits that come from settings, so they cannot live in the static schema."""
        for field, value, limit in (
            ("message", request.message, self.settings.max_message_chars),
            ("selected_text", request.selected_text, self.settings.max_selected_text_chars),
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

    # --- the shared path ----------------------------------------------------------------------

    async def prepare(
        self, db: AsyncSession, request: ChatCreate, user_id: uuid.UUID | None = None
    ) -> Turn:
        """Store the question, then gather what the answer may use."""
        self.check_limits(request)
        started = time.perf_counter()
        session, is_new = await self._resolve_session(db, request, user_id)
        structlog.contextvars.bind_contextvars(session_id=str(session.id))
        history = [] if is_new or request.selected_text else await self._history(db, session.id)
        question = Message(
            id=uuid.uuid4(),
            session_id=session.id,
            role=MessageRole.USER,
            content=request.message,
            selected_text=request.selected_text,
            page_context=request.page_context,
        )
        db.add(question)
        session.updated_at = utcnow()
        # Committed before anything can fail: a failing model never loses what the reader wrote.
        await db.commit()

        cache_key: str | None = None
        cached: CachedAnswer | None = None
        if request.selected_text:
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
            messages = prompts.selection_messages(
                title=self.settings.book_title,
                question=request.message,
                selection=request.selected_text,
            )
        else:
            search_query = await self._search_query(request.message, history)
            # Only a first question (no history) means the same thing in every session.
            if self.cache is not None and not history:
                cache_key = await self.cache.key(request.message, request.page_context)
                cached = await self.cache.get(cache_key)
            sources = (
                cached.sources
                if cached is not None
                else await self.retriever.retrieve(
                    search_query,
                    limit=self.settings.retrieval_top_k,
                    page_context=request.page_context,
                )
            )
            mode = "rag" if sources else "no_context"
            messages = prompts.book_messages(
                title=self.settings.book_title,
                question=request.message,
                sources=sources,
                history=history,
                history_token_budget=self.settings.history_token_budget,
            )
        return Turn(
            session_id=session.id,
            question_id=question.id,
            reply_id=uuid.uuid4(),
            mode=mode,
            prompt=ChatPrompt(
                messages=messages,
                question=request.message,
                sources=sources,
                temperature=self.settings.llm_temperature,
                max_tokens=self.settings.llm_max_tokens,
            ),
            search_query=search_query,
            history=len(history),
            started=started,
            cache_key=None if request.selected_text else cache_key,
            cached=None if request.selected_text else cached,
        )

    async def finish(
        self,
        db: AsyncSession,
        turn: Turn,
        text: str,
        *,
        usage: Usage | None,
        model: str,
        status: MessageStatus = MessageStatus.COMPLETE,
    ) -> ChatRead:
        """Store the answer (or what there is of it) and describe it."""
        text, citations = resolve_citations(text, turn.prompt.sources)
        usage = usage or Usage()
        latency_ms = round((time.perf_counter() - turn.started) * 1000)
        reply = Message(
            id=turn.reply_id,
            session_id=turn.session_id,
            role=MessageRole.ASSISTANT,
            content=text,
            status=status,
            mode=turn.mode,
            model=model,
            citations=[c.model_dump(mode="json") for c in citations],
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            latency_ms=latency_ms,
            cached=turn.cached is not None,
        )
        db.add(reply)
        if turn.search_query is not None:
            await db.execute(
                update(Message)
                .where(Message.id == turn.question_id)
                .values(search_query=turn.search_query)
            )
        await db.commit()
        logger.info(
            "chat.answered",
            mode=turn.mode,
            status=status.value,
            sources=len(turn.prompt.sources),
            history=turn.history,
            latency_ms=latency_ms,
        )
        return ChatRead(
            response=text,
            session_id=turn.session_id,
            message_id=reply.id,
            timestamp=reply.created_at,
            mode=turn.mode,
            model=model,
            citations=citations,
            usage=UsageRead(
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                total_tokens=usage.total_tokens,
            ),
            latency_ms=latency_ms,
            cached=turn.cached is not None,
        )

    def not_covered(self) -> str:
        return prompts.NOT_COVERED_ANSWER.format(title=self.settings.book_title)

    # --- delivery -----------------------------------------------------------------------------

    async def answer(
        self, db: AsyncSession, request: ChatCreate, user_id: uuid.UUID | None = None
    ) -> ChatRead:
        """Answer one message in one piece."""
        turn = await self.prepare(db, request, user_id)
        if turn.mode == "no_context":
            # Nothing in the book to answer from: no model call, no invented answer.
            return await self.finish(db, turn, self.not_covered(), usage=None, model=NO_MODEL)
        if turn.cached is not None:
            return await self.finish(
                db, turn, turn.cached.text, usage=None, model=turn.cached.model
            )
        completion = await self.model.complete(turn.prompt)
        read = await self.finish(
            db, turn, completion.text, usage=completion.usage, model=completion.model
        )
        await self._remember(turn, completion.text, completion.model)
        return read

    async def _remember(self, turn: Turn, text: str, model: str) -> None:
        """Keep a fresh first-turn answer from the book for the next reader who asks the same."""
        if self.cache is not None and turn.cached is None and turn.mode == "rag":
            await self.cache.put(turn.cache_key, text, model, turn.prompt.sources)

    async def stream(self, turn: Turn) -> AsyncGenerator[StreamEvent]:
        """The answer as events: `start`, `sources`, `token`..., then `done` or `error`.

        A client that goes away cancels this generator (or closes it at a yield): the model call
        is abandoned with it and what was produced is stored as `partial`. A model failure
        sends `error` and stores what was produced with status `error`.
        """
        _, pending_citations = resolve_citations("", turn.prompt.sources)
        parts: list[str] = []
        usage: Usage | None = None
        model = self.model.model if turn.mode != "no_context" else NO_MODEL
        if turn.cached is not None:
            model = turn.cached.model
        try:
            # Every yield until the answer is stored sits in this block: a client can hang up
            # at any of them (cancellation mid-await, or `aclose()` at a yield).
            yield (
                "start",
                {
                    "session_id": str(turn.session_id),
                    "message_id": str(turn.reply_id),
                    "mode": turn.mode,
                },
            )
            yield "sources", {"citations": [c.model_dump(mode="json") for c in pending_citations]}
            canned = self.not_covered() if turn.mode == "no_context" else None
            if turn.cached is not None:
                canned = turn.cached.text
            if canned is not None:
                for piece in re.findall(r"\S+\s*", canned):
                    parts.append(piece)
                    yield "token", {"text": piece}
            else:
                # aclosing: a reader who hangs up closes the model's stream at once (its HTTP
                # call is cancelled) instead of whenever the generator is collected.
                async with aclosing(self.model.stream(turn.prompt)) as pieces:
                    async for item in pieces:
                        if isinstance(item, Usage):
                            usage = item
                            continue
                        parts.append(item)
                        yield "token", {"text": item}
        except (asyncio.CancelledError, GeneratorExit):
            await self._store(turn, "".join(parts), usage, model, MessageStatus.PARTIAL)
            raise
        except AppError as exc:
            await self._store(turn, "".join(parts), usage, model, MessageStatus.ERROR)
            yield "error", {"code": exc.code, "message": exc.message}
            return
        read = await self._store(turn, "".join(parts), usage, model, MessageStatus.COMPLETE)
        if read is not None:
            await self._remember(turn, "".join(parts), model)
        if read is None:
            yield (
                "error",
                {
                    "code": "dependency_unavailable",
                    "message": "The answer could not be saved; try again shortly.",
                },
            )
            return
        yield "done", read.model_dump(mode="json")

    async def _store(
        self,
        turn: Turn,
        text: str,
        usage: Usage | None,
        model: str,
        status: MessageStatus,
    ) -> ChatRead | None:
        """`finish` in a session of its own (a stream outlives its request's session).

        The write cannot be cancelled halfway: a reader who hangs up while the answer is being
        written (the last token has gone, the commit has not) would otherwise lose it. The
        write runs as its own task; a cancellation of this one waits for it, then goes on.
        """
        write = asyncio.ensure_future(self._write(turn, text, usage, model, status))
        interrupted = False
        # anyio's shield stops anyio scopes from re-cancelling at every await; asyncio's
        # shield covers a plain Task.cancel(), which anyio's shield does not.
        with anyio.CancelScope(shield=True):
            while not write.done():
                try:
                    await asyncio.shield(write)
                except asyncio.CancelledError:
                    interrupted = True
        if interrupted:
            raise asyncio.CancelledError
        return write.result()

    async def _write(
        self,
        turn: Turn,
        text: str,
        usage: Usage | None,
        model: str,
        status: MessageStatus,
    ) -> ChatRead | None:
        try:
            async with self.sessionmaker() as db:
                return await self.finish(db, turn, text, usage=usage, model=model, status=status)
        except Exception:  # the stream reports it; the reader's question is already stored
            logger.exception("chat.store_failed", status=status.value)
            return None

    # --- steps ------------------------------------------------------------------------------

    async def _resolve_session(
        self, db: AsyncSession, request: ChatCreate, user_id: uuid.UUID | None
    ) -> tuple[ChatSession, bool]:
        """The requested session; a missing, malformed or unknown id starts a new one.

        Another reader's session answers 404; an anonymous session becomes the signed-in
        reader's the first time they write to it."""
        session_id = parse_session_id(request.session_id)
        if session_id is not None:
            existing = await db.get(ChatSession, session_id)
            if existing is not None:
                if not existing.visible_to(user_id):
                    raise NotFound("No chat session with this id.")
                if existing.user_id is None and user_id is not None:
                    existing.user_id = user_id
                return existing, False
        session = ChatSession(id=uuid.uuid4(), user_id=user_id, title=_title(request.message))
        db.add(session)
        return session, True

    async def _history(self, db: AsyncSession, session_id: uuid.UUID) -> list[ChatMessage]:
        """The session's last `HISTORY_MESSAGES` complete messages, oldest first."""
        if self.settings.history_messages == 0:
            return []
        rows = await db.execute(
            select(Message.role, Message.content)
            .where(
                Message.session_id == session_id,
                Message.status == MessageStatus.COMPLETE,
                Message.role.in_([MessageRole.USER, MessageRole.ASSISTANT]),
            )
            .order_by(Message.created_at.desc(), Message.id.desc())
            .limit(self.settings.history_messages)
        )
        return [ChatMessage(role=role.value, content=content) for role, content in rows][::-1]

    async def _search_query(self, question: str, history: list[ChatMessage]) -> str:
        """A follow-up made standalone for retrieval: rewritten by the language model when there
        is one, else (or if that fails) the previous question joined to this one."""
        if not history:
            return question
        if self.model.mode == "generative":
            prompt = ChatPrompt(
                messages=prompts.rewrite_messages(
                    title=self.settings.book_title, question=question, history=history
                ),
                question=question,
                temperature=0.0,
                max_tokens=REWRITE_MAX_TOKENS,
            )
            try:
                rewritten = (await self.model.complete(prompt)).text.strip().strip('"').strip()
            except AppError as exc:
                logger.warning("chat.rewrite_failed", code=exc.code)
            else:
                if rewritten:
                    return rewritten.splitlines()[0]
        previous = next((m.content for m in reversed(history) if m.role == "user"), "")
        return f"{previous} {question}".strip()


def _title(message: str) -> str:
    title = " ".join(message.split())
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1].rstrip() + "…"
