"""The ChatKit server: the SDK's `ChatKitServer` whose `respond()` is bookchat's own chat turn.

The SDK parses the protocol, routes each request type, runs the store and frames the events;
bookchat answers. `respond()` prepares the turn exactly as `POST /api/v1/chat/stream` does
(`ChatService.prepare`: limits, session, history, rewriting, retrieval, relevance floor, answer
cache, selected-text mode) and translates that stream's events (`ChatService.stream`) into
ChatKit's: the tokens become text deltas, the cited sources annotations, a failure an error
event. What the protocol offers beyond a conversation of text (attachments, dictation, widget
actions, client tools, structured input) is refused with the SDK's own error shapes.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, suppress
from typing import Any

import structlog
from chatkit.errors import CustomStreamError, ErrorCode
from chatkit.server import ChatKitServer, NonStreamingResult, StreamingResult
from chatkit.store import NotFoundError
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartAnnotationAdded,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    AttachmentsCreateReq,
    AttachmentsDeleteReq,
    ChatKitReq,
    ErrorEvent,
    FeedbackKind,
    InputTranscribeReq,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadsAddClientToolOutputReq,
    ThreadsAddStructuredInputReq,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadsCustomActionReq,
    ThreadsSyncCustomActionReq,
    ThreadStreamEvent,
    UserMessageItem,
)
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bookchat.chat.conversations import ConversationService
from bookchat.chat.limits import within
from bookchat.chat.schemas import ChatCreate
from bookchat.chat.service import ChatService
from bookchat.chat.turns import session_title
from bookchat.chatkit import ids
from bookchat.chatkit.calls import ChatKitCall, ReaderContext
from bookchat.chatkit.store import BookChatStore, cited_sources
from bookchat.core.config import Settings
from bookchat.core.db import utcnow
from bookchat.core.errors import AppError, NotFound, ValidationFailed

logger = structlog.get_logger(__name__)

# Failures a second try may get past: the model was slow, busy or down, a store was briefly
# unavailable, or a limit was hit.
RETRYABLE_CODES = frozenset(
    {"llm_timeout", "llm_unavailable", "dependency_unavailable", "rate_limited"}
)
RETRYABLE_STATUSES = frozenset({429, 503, 504})


def unsupported(request: ChatKitReq) -> str | None:
    """Why this server refuses the request, or None when it serves it."""
    match request:
        case AttachmentsCreateReq() | AttachmentsDeleteReq():
            return "Attachments are not supported yet: ask in text."
        case ThreadsCreateReq() | ThreadsAddUserMessageReq() if request.params.input.attachments:
            return "Attachments are not supported yet: ask in text."
        case InputTranscribeReq():
            return "Dictation is not supported."
        case ThreadsCustomActionReq() | ThreadsSyncCustomActionReq():
            return "Widget actions are not supported."
        case ThreadsAddClientToolOutputReq() | ThreadsAddStructuredInputReq():
            return "Client tools and structured input are not supported."
    return None


class BookChatKitServer(ChatKitServer[ReaderContext]):
    """ChatKit's protocol over bookchat's chat turn and conversation services."""

    def __init__(
        self,
        *,
        settings: Settings,
        chat: ChatService,
        conversations: ConversationService,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        self.book_store = BookChatStore(sessionmaker)
        super().__init__(self.book_store)
        self._settings = settings
        self._chat = chat
        self._conversations = conversations
        self._sessionmaker = sessionmaker

    async def handle(
        self, call: ChatKitCall, context: ReaderContext
    ) -> StreamingResult | NonStreamingResult:
        """The SDK's `process()`, with bookchat's errors: a missing (or another reader's)
        thread or item is a 404 and an unsupported request a 400, both before any stream
        opens; a refused turn is a stream of one error event, as ChatKit expects."""
        refusal = unsupported(call.request)
        if refusal is not None:
            if call.streaming:
                return StreamingResult(_events(ErrorEvent(message=refusal, allow_retry=False)))
            raise ValidationFailed(refusal)
        try:
            thread_id = getattr(call.request.params, "thread_id", None)
            if call.streaming and isinstance(thread_id, str):
                await self.store.load_thread(thread_id, context)
            result = await self.process(call.body, context)
        except NotFoundError as exc:
            raise NotFound(str(exc) or "Not found.") from None
        if isinstance(result, StreamingResult):
            return StreamingResult(_guarded(result))
        return result

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: ReaderContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        """Answer the reader's message with bookchat's chat turn, as ChatKit events."""
        if input_user_message is None:  # only tool outputs and structured input come without
            return
        question = " ".join(part.text for part in input_user_message.content).strip()
        try:
            request = ChatCreate(
                message=question,
                session_id=str(ids.session_id(thread.id)),
                selected_text=input_user_message.quoted_text,
                page_context=context.page_context,
            )
        except ValidationError:
            raise CustomStreamError("Write a question first.", allow_retry=False) from None
        question_id = ids.message_id(input_user_message.id)
        # A retry (threads.retry_after_item) answers a question that is already stored: the
        # turn stores it again, under the same id, after the answers it replaces are gone.
        with suppress(NotFoundError):
            await self.store.delete_thread_item(thread.id, input_user_message.id, context)
        try:
            async with self._sessionmaker() as db:
                turn = await self._chat.prepare(
                    db, request, context.user_id, book=context.book, question_id=question_id
                )
        except AppError as exc:
            raise CustomStreamError(
                exc.public_message, allow_retry=exc.status_code in RETRYABLE_STATUSES
            ) from None
        if thread.title is None:
            # The SDK saves a changed thread and tells the client (thread.updated).
            thread.title = session_title(question)
        reply = AssistantMessageItem(
            id=ids.item_id(turn.reply_id), thread_id=thread.id, created_at=utcnow(), content=[]
        )
        shown: list[str] = []
        events = within(self._chat.stream(turn), self._settings.stream_max_seconds)
        # aclosing: a reader who hangs up closes the chat's stream at once, which stores what
        # was shown as `partial` (chat/streaming.py).
        async with aclosing(events):
            async for name, data in events:
                if name == "start":
                    yield ThreadItemAddedEvent(item=reply)
                    yield _update(
                        reply,
                        AssistantMessageContentPartAdded(
                            content_index=0, content=AssistantMessageContent(text="")
                        ),
                    )
                elif name == "token":
                    shown.append(data["text"])
                    yield _update(
                        reply,
                        AssistantMessageContentPartTextDelta(content_index=0, delta=data["text"]),
                    )
                elif name == "done":
                    for event in _finished(reply, data["response"], data["citations"]):
                        yield event
                elif name == "error":
                    if shown:  # what was shown stays in the thread, as it is stored
                        content = AssistantMessageContent(text="".join(shown))
                        yield ThreadItemDoneEvent(
                            item=reply.model_copy(update={"content": [content]})
                        )
                    raise CustomStreamError(
                        data["message"], allow_retry=data["code"] in RETRYABLE_CODES
                    )

    async def add_feedback(
        self,
        thread_id: str,
        item_ids: list[str],
        feedback: FeedbackKind,
        context: ReaderContext,
    ) -> None:
        """ChatKit's thumbs as bookchat feedback: 1 or -1 on each answer, replacing the
        reader's earlier rating as `POST /chat/messages/{id}/feedback` does."""
        rating = 1 if feedback == "positive" else -1
        async with self._sessionmaker() as db:
            for item_id in item_ids:
                await self.store.load_item(thread_id, item_id, context)  # in this thread
                await self._conversations.give_feedback(
                    db,
                    str(ids.message_id(item_id)),
                    rating,
                    None,
                    context.user_id,
                    book=context.book.slug,
                )


def _update(reply: AssistantMessageItem, update: Any) -> ThreadItemUpdatedEvent:
    return ThreadItemUpdatedEvent(item_id=reply.id, update=update)


def _finished(
    reply: AssistantMessageItem, text: str, citations: list[dict[str, Any]]
) -> list[ThreadStreamEvent]:
    """The end of an answer: its sources as annotations, the whole text, the finished item."""
    found = cited_sources(text, citations)
    content = AssistantMessageContent(text=text, annotations=found)
    events: list[ThreadStreamEvent] = [
        _update(
            reply,
            AssistantMessageContentPartAnnotationAdded(
                content_index=0, annotation_index=i, annotation=annotation
            ),
        )
        for i, annotation in enumerate(found)
    ]
    events.append(_update(reply, AssistantMessageContentPartDone(content_index=0, content=content)))
    events.append(ThreadItemDoneEvent(item=reply.model_copy(update={"content": [content]})))
    return events


def _encode(event: BaseModel) -> bytes:
    """One event as the SDK frames it (`data: <json>` and a blank line)."""
    return b"data: " + event.model_dump_json(by_alias=True, exclude_none=True).encode() + b"\n\n"


async def _events(*events: BaseModel) -> AsyncGenerator[bytes]:
    for event in events:
        yield _encode(event)


async def _guarded(result: StreamingResult) -> AsyncGenerator[bytes]:
    """The SDK's stream, whose failures outside `respond()` (an unknown item to retry after,
    say) end it with an error event instead of a broken connection."""
    try:
        async with aclosing(result.json_events) as chunks:
            async for chunk in chunks:
                yield chunk
    except NotFoundError as exc:
        yield _encode(ErrorEvent(message=str(exc) or "Not found.", allow_retry=False))
    except Exception:
        logger.exception("chatkit.stream_failed")
        yield _encode(ErrorEvent(code=ErrorCode.STREAM_ERROR, allow_retry=True))
