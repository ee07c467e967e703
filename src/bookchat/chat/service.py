"""The chat flow (DESIGN.md section 7): validate, resolve the session, store the question,
gather context, ask the model, store and return the answer."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bookchat.chat import prompts
from bookchat.chat.citations import resolve_citations
from bookchat.chat.models import ChatSession, Message, MessageRole, MessageStatus
from bookchat.chat.schemas import ChatCreate, ChatRead, UsageRead
from bookchat.core.config import Settings
from bookchat.core.db import utcnow
from bookchat.core.errors import ValidationFailed
from bookchat.providers.base import ChatMessage, ChatModel, ChatPrompt, Source
from bookchat.retrieval.service import Retriever

logger = structlog.get_logger(__name__)

TITLE_CHARS = 80
SELECTION_TITLE = "Selected text"


def parse_session_id(raw: str | None) -> uuid.UUID | None:
    """A session id as a UUID, or None when it is missing or malformed."""
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


@dataclass(slots=True)
class ChatService:
    """Answers readers' messages; owns the transaction of every call."""

    settings: Settings
    model: ChatModel
    retriever: Retriever

    def check_limits(self, request: ChatCreate) -> None:
        """Limits that come from settings, so they cannot live in the static schema."""
        limit = self.settings.max_message_chars
        if len(request.message) > limit:
            raise ValidationFailed(
                f"message is longer than {limit} characters",
                details=[
                    {
                        "loc": ["body", "message"],
                        "msg": f"at most {limit} characters",
                        "type": "string_too_long",
                    }
                ],
            )
        limit = self.settings.max_selected_text_chars
        if request.selected_text is not None and len(request.selected_text) > limit:
            raise ValidationFailed(
                f"selected_text is longer than {limit} characters; select a shorter passage",
                details=[
                    {
                        "loc": ["body", "selected_text"],
                        "msg": f"at most {limit} characters",
                        "type": "string_too_long",
                    }
                ],
            )

    async def answer(self, db: AsyncSession, request: ChatCreate) -> ChatRead:
        """Answer one message, storing the question before the model is asked."""
        self.check_limits(request)
        started = time.perf_counter()
        session, is_new = await self._resolve_session(db, request)
        structlog.contextvars.bind_contextvars(session_id=str(session.id))
        history = [] if is_new or request.selected_text else await self._history(db, session.id)

        db.add(
            Message(
                session_id=session.id,
                role=MessageRole.USER,
                content=request.message,
                selected_text=request.selected_text,
                page_context=request.page_context,
            )
        )
        session.updated_at = utcnow()
        # Committed before the model is called: a failing model never loses what the reader wrote.
        await db.commit()

        prompt, context = await self._prompt(request, history)
        completion = await self.model.complete(prompt)
        text, citations = resolve_citations(completion.text, prompt.sources)
        latency_ms = round((time.perf_counter() - started) * 1000)

        reply = Message(
            session_id=session.id,
            role=MessageRole.ASSISTANT,
            content=text,
            status=MessageStatus.COMPLETE,
            mode=self.model.mode,
            model=completion.model,
            citations=[c.model_dump(mode="json") for c in citations],
            prompt_tokens=completion.usage.prompt_tokens,
            completion_tokens=completion.usage.completion_tokens,
            latency_ms=latency_ms,
        )
        db.add(reply)
        await db.commit()
        logger.info(
            "chat.answered",
            mode=self.model.mode,
            context=context,
            sources=len(prompt.sources),
            history=len(history),
            latency_ms=latency_ms,
        )
        return ChatRead(
            response=text,
            session_id=session.id,
            message_id=reply.id,
            timestamp=reply.created_at,
            mode=self.model.mode,
            context=context,
            model=completion.model,
            citations=citations,
            usage=UsageRead(
                prompt_tokens=completion.usage.prompt_tokens,
                completion_tokens=completion.usage.completion_tokens,
                total_tokens=completion.usage.total_tokens,
            ),
            latency_ms=latency_ms,
        )

    async def _resolve_session(
        self, db: AsyncSession, request: ChatCreate
    ) -> tuple[ChatSession, bool]:
        """The requested session; a missing, malformed or unknown id starts a new one."""
        session_id = parse_session_id(request.session_id)
        if session_id is not None:
            existing = await db.get(ChatSession, session_id)
            if existing is not None:
                return existing, False
        session = ChatSession(id=uuid.uuid4(), title=_title(request.message))
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

    async def _prompt(
        self, request: ChatCreate, history: list[ChatMessage]
    ) -> tuple[ChatPrompt, str]:
        settings = self.settings
        if request.selected_text:
            source = Source(
                index=1,
                title=SELECTION_TITLE,
                text=request.selected_text,
                page_url=request.page_context,
            )
            messages = prompts.selection_messages(
                title=settings.book_title, question=request.message, selection=source.text
            )
            sources: list[Source] = [source]
            context = "selection"
        else:
            sources = await self.retriever.retrieve(
                request.message, limit=settings.retrieval_top_k, page_context=request.page_context
            )
            messages = prompts.book_messages(
                title=settings.book_title,
                question=request.message,
                sources=sources,
                history=history,
                history_token_budget=settings.history_token_budget,
            )
            context = "book"
        prompt = ChatPrompt(
            messages=messages,
            question=request.message,
            sources=sources,
            temperature=settings.llm_temperature,
            max_tokens=settings.llm_max_tokens,
        )
        return prompt, context


def _title(message: str) -> str:
    title = " ".join(message.split())
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1].rstrip() + "…"
