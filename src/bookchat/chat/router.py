"""Chat endpoints (HTTP only: validation in, one service call, a schema out)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from bookchat.chat.conversation_schemas import FeedbackCreate, FeedbackRead, HistoryRead
from bookchat.chat.conversations import ConversationService
from bookchat.chat.schemas import ChatCreate, ChatRead
from bookchat.chat.service import ChatService, StreamEvent
from bookchat.core.deps import ContainerDep, SessionDep, SettingsDep
from bookchat.core.openapi import error_responses


def get_chat_service(container: ContainerDep) -> ChatService:
    return ChatService(
        settings=container.settings,
        model=container.providers.chat,
        retriever=container.retriever,
        sessionmaker=container.sessionmaker,
    )


ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]

router = APIRouter(tags=["chat"])


@router.post(
    "/chat",
    response_model=ChatRead,
    responses=error_responses(400, 502, 503, 504),
)
async def create_chat_message(
    payload: ChatCreate, db: SessionDep, service: ChatServiceDep
) -> ChatRead:
    """Ask a question and get one answer, grounded in the book or in the selected text."""
    return await service.answer(db, payload)


_STREAM_DOC = """Server-Sent Events, each `data:` a JSON object: `start` {session_id, message_id,
mode} → `sources` {citations} → `token` {text} (many) → `done` (the same object as `POST /chat`
returns), or `error` {code, message} at any point. A comment ping keeps proxies from closing an
idle stream."""


@router.post(
    "/chat/stream",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": _STREAM_DOC},
        **error_responses(400, 503),
    },
)
async def stream_chat_message(
    payload: ChatCreate, db: SessionDep, service: ChatServiceDep, settings: SettingsDep
) -> EventSourceResponse:
    """Ask a question and watch the answer arrive token by token (Server-Sent Events)."""
    # Validation and storing the question happen before the stream opens, so bad input is a
    # plain 400 in the error shape, not an event.
    turn = await service.prepare(db, payload)
    return EventSourceResponse(
        _as_sse(service.stream(turn)),
        ping=settings.sse_ping_seconds,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _as_sse(events: AsyncGenerator[StreamEvent]) -> AsyncIterator[ServerSentEvent]:
    # aclosing: when the response closes this generator after a failed send (the client left),
    # the service's stream is closed too, at once, and stores the partial answer.
    async with aclosing(events):
        async for name, payload in events:
            yield ServerSentEvent(event=name, data=json.dumps(payload, ensure_ascii=False))


seed_router = APIRouter(include_in_schema=False)
seed_router.add_api_route("/chat", create_chat_message, methods=["POST"], response_model=ChatRead)


# --- conversations (history, delete, feedback) ---


def get_conversation_service() -> ConversationService:
    return ConversationService()


ConversationServiceDep = Annotated[ConversationService, Depends(get_conversation_service)]


@router.get(
    "/chat/history/{session_id}",
    response_model=HistoryRead,
    responses=error_responses(400, 404),
)
async def read_chat_history(
    session_id: str,
    db: SessionDep,
    service: ConversationServiceDep,
    limit: Annotated[int, Query(ge=1, le=200, description="Messages per page.")] = 50,
    before: Annotated[
        str | None,
        Query(max_length=64, description="A message id: return the messages older than it."),
    ] = None,
) -> HistoryRead:
    """A session's messages, oldest first, a page at a time from the newest."""
    return await service.history(db, session_id, limit=limit, before=before)


@router.post(
    "/chat/messages/{message_id}/feedback",
    response_model=FeedbackRead,
    status_code=201,
    responses={
        200: {"model": FeedbackRead, "description": "Earlier feedback replaced"},
        **error_responses(400, 404),
    },
)
async def create_message_feedback(
    message_id: str,
    payload: FeedbackCreate,
    response: Response,
    db: SessionDep,
    service: ConversationServiceDep,
) -> FeedbackRead:
    """Rate an answer (1 or -1, optional comment); sending again replaces the earlier rating."""
    feedback, created = await service.give_feedback(db, message_id, payload.rating, payload.comment)
    response.status_code = 201 if created else 200
    return feedback


# Keep this route last: `/chat/{session_id}` also matches paths such as `/chat/sessions`, so a
# DELETE route on such a path registered after it would never be reached (other methods are safe).
@router.delete("/chat/{session_id}", status_code=204, responses=error_responses(404))
async def delete_chat_session(
    session_id: str, db: SessionDep, service: ConversationServiceDep
) -> Response:
    """Delete a session with its messages and their feedback."""
    await service.delete_session(db, session_id)
    return Response(status_code=204)
