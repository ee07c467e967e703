"""Chat endpoints (HTTP only: validation in, one service call, a schema out)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from sse_starlette import EventSourceResponse

from bookchat.accounts.dependencies import CurrentUser, OptionalUser
from bookchat.books.dependencies import CurrentBook
from bookchat.chat.dependencies import (
    CHAT_RATE_LIMIT,
    CHAT_TOKEN_BUDGET,
    FEEDBACK_RATE_LIMIT,
    ChatReader,
    ChatServiceDep,
    ConversationServiceDep,
)
from bookchat.chat.limits import STREAM_SLOT, within
from bookchat.chat.schemas import (
    ChatCreate,
    ChatRead,
    ConversationsExport,
    FeedbackCreate,
    FeedbackRead,
    HistoryRead,
    SessionPage,
    SessionsDeleted,
)
from bookchat.core.db import utcnow
from bookchat.core.openapi import MAX_OFFSET, error_responses
from bookchat.core.sse import event_stream
from bookchat.dependencies import SessionDep, SettingsDep

router = APIRouter(tags=["chat"])


@router.post(
    "/chat",
    response_model=ChatRead,
    responses=error_responses(400, 401, 404, 429, 502, 503, 504),
    dependencies=[CHAT_RATE_LIMIT, CHAT_TOKEN_BUDGET],
)
async def create_chat_message(
    payload: ChatCreate,
    db: SessionDep,
    service: ChatServiceDep,
    reader: ChatReader,
    book: CurrentBook,
) -> ChatRead:
    """Ask a question and get one answer, grounded in the book or in the selected text."""
    return await service.answer(db, payload, reader.id if reader else None, book=book)


_STREAM_DOC = """Server-Sent Events, each `data:` a JSON object: `start` {session_id, message_id,
mode} → `sources` {citations} → `token` {text} (many) → `done` (the same object as `POST /chat`
returns; `status` `partial` means the answer was cut, `finish_reason` says why), or `error`
{code, message, session_id, message_id} at any point (`message_id` only when the failed answer
was stored). A comment ping keeps proxies from closing an idle stream.

`sources` lists the passages found before the answer starts, without numbers: a source is
numbered when the answer first cites it. The `token` texts carry the final `[n]` markers and
together are exactly `done.response`; `done.citations` is the numbered list they refer to."""


@router.post(
    "/chat/stream",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": _STREAM_DOC},
        **error_responses(400, 401, 404, 429, 503),
    },
    dependencies=[CHAT_RATE_LIMIT, CHAT_TOKEN_BUDGET, STREAM_SLOT],
)
async def stream_chat_message(
    payload: ChatCreate,
    db: SessionDep,
    service: ChatServiceDep,
    settings: SettingsDep,
    reader: ChatReader,
    book: CurrentBook,
) -> EventSourceResponse:
    """Ask a question and watch the answer arrive token by token (Server-Sent Events)."""
    events = await service.answer_stream(db, payload, reader.id if reader else None, book=book)
    return event_stream(within(events, settings.stream_max_seconds), settings)


seed_router = APIRouter(include_in_schema=False)
seed_router.add_api_route(
    "/chat",
    create_chat_message,
    methods=["POST"],
    response_model=ChatRead,
    dependencies=[CHAT_RATE_LIMIT, CHAT_TOKEN_BUDGET],
)


# --- conversations (history, delete, feedback) ---


@router.get("/chat/sessions", response_model=SessionPage, responses=error_responses(400, 401))
async def list_chat_sessions(
    user: CurrentUser,
    db: SessionDep,
    service: ConversationServiceDep,
    book: CurrentBook,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> SessionPage:
    """The signed-in reader's conversations with this book, most recently active first."""
    return await service.list_sessions(db, user.id, book=book.slug, limit=limit, offset=offset)


@router.delete("/chat/sessions", response_model=SessionsDeleted, responses=error_responses(401))
async def delete_chat_sessions(
    user: CurrentUser, db: SessionDep, service: ConversationServiceDep, book: CurrentBook
) -> SessionsDeleted:
    """Delete all of the signed-in reader's conversations with this book, with their messages
    and feedback."""
    return await service.delete_reader_sessions(db, user.id, book=book.slug)


@router.get(
    "/chat/sessions/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "model": ConversationsExport,
            "description": "A JSON download (`Content-Disposition: attachment`).",
        },
        **error_responses(401),
    },
)
async def export_chat_sessions(
    user: CurrentUser, db: SessionDep, service: ConversationServiceDep, book: CurrentBook
) -> StreamingResponse:
    """Download the signed-in reader's conversations with this book, with their messages,
    citations and feedback, as one JSON document."""
    document = await service.export_sessions(db, user.id, book=book.slug)
    filename = f"bookchat-conversations-{utcnow():%Y-%m-%d}.json"
    return StreamingResponse(
        document,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/chat/history/{session_id}",
    response_model=HistoryRead,
    responses=error_responses(400, 401, 404),
)
async def read_chat_history(
    session_id: str,
    db: SessionDep,
    service: ConversationServiceDep,
    reader: OptionalUser,
    book: CurrentBook,
    limit: Annotated[int, Query(ge=1, le=200, description="Messages per page.")] = 50,
    before: Annotated[
        str | None,
        Query(max_length=64, description="A message id: return the messages older than it."),
    ] = None,
) -> HistoryRead:
    """A session's messages, oldest first, a page at a time from the newest."""
    return await service.history(
        db,
        session_id,
        book=book.slug,
        limit=limit,
        before=before,
        user_id=reader.id if reader else None,
    )


@router.post(
    "/chat/messages/{message_id}/feedback",
    response_model=FeedbackRead,
    status_code=201,
    dependencies=[FEEDBACK_RATE_LIMIT],
    responses={
        200: {"model": FeedbackRead, "description": "Earlier feedback replaced"},
        **error_responses(400, 401, 404, 429),
    },
)
async def create_message_feedback(
    message_id: str,
    payload: FeedbackCreate,
    response: Response,
    db: SessionDep,
    service: ConversationServiceDep,
    reader: OptionalUser,
    book: CurrentBook,
) -> FeedbackRead:
    """Rate an answer (1 or -1, optional comment); sending again replaces the earlier rating."""
    feedback, created = await service.give_feedback(
        db,
        message_id,
        payload.rating,
        payload.comment,
        reader.id if reader else None,
        book=book.slug,
    )
    response.status_code = 201 if created else 200
    return feedback


# Keep this route last: `/chat/{session_id}` also matches paths such as `/chat/sessions`, so a
# DELETE route on such a path registered after it would never be reached (other methods are safe).
@router.delete("/chat/{session_id}", status_code=204, responses=error_responses(401, 404))
async def delete_chat_session(
    session_id: str,
    db: SessionDep,
    service: ConversationServiceDep,
    reader: OptionalUser,
    book: CurrentBook,
) -> Response:
    """Delete a session with its messages and their feedback."""
    await service.delete_session(db, session_id, reader.id if reader else None, book=book.slug)
    return Response(status_code=204)
