"""`POST /chatkit`: the ChatKit protocol (HTTP only: the parsed request in, the SDK's result
out)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from bookchat.books.dependencies import CurrentBook
from bookchat.chat.dependencies import ChatReader
from bookchat.chat.schemas import PAGE_CONTEXT_MAX
from bookchat.chatkit.calls import ReaderContext
from bookchat.chatkit.dependencies import ChatKitCallDep, chatkit_server
from bookchat.core.openapi import error_responses
from bookchat.core.sse import encoded_event_stream
from bookchat.dependencies import ContainerDep, SettingsDep

router = APIRouter(tags=["chatkit"])

_DOC = """One ChatKit request (`{"type": "threads.create", "params": {...}}`, see OpenAI's
ChatKit protocol). Requests that answer a message (`threads.create`,
`threads.add_user_message`, `threads.retry_after_item`) stream `text/event-stream` ChatKit
events; the others (`threads.list`, `threads.get_by_id`, `threads.update`, `threads.delete`,
`items.list`, `items.feedback`) answer JSON."""


@router.post(
    "/chatkit",
    response_class=Response,
    responses={
        200: {
            "content": {"text/event-stream": {}, "application/json": {}},
            "description": _DOC,
        },
        **error_responses(400, 401, 404, 429, 503),
    },
)
async def process_chatkit_request(
    call: ChatKitCallDep,
    container: ContainerDep,
    reader: ChatReader,
    settings: SettingsDep,
    book: CurrentBook,
) -> Response:
    """ChatKit's backend protocol over this book's chat: threads are chat sessions."""
    from chatkit.server import StreamingResult  # loaded with the server, on the first call

    server = chatkit_server(container)
    page = call.request.metadata.get("page_context")
    context = ReaderContext(
        user_id=reader.id if reader else None,
        book=book,
        page_context=page if isinstance(page, str) and len(page) <= PAGE_CONTEXT_MAX else None,
    )
    result = await server.handle(call, context)
    if isinstance(result, StreamingResult):
        return encoded_event_stream(result.json_events, settings)
    return Response(result.json, media_type="application/json")
