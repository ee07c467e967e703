"""How the ChatKit route reaches its server, and the limits of the chat routes for its turns.

One route serves every ChatKit request, so the limits cannot sit on the route as they do on
`/chat/stream`: a request that asks for an answer (a streamed one) counts against the chat rate
limit, is charged to the token budget and holds a stream slot; listing or renaming threads is
free, as reading `/chat/history` is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from pydantic import TypeAdapter, ValidationError

from bookchat.books.dependencies import CurrentBook
from bookchat.chat.dependencies import ChatReader
from bookchat.chat.limits import hold_stream_slot
from bookchat.chatkit.calls import ChatKitCall
from bookchat.core.errors import ConfigurationError, ValidationFailed
from bookchat.dependencies import ContainerDep, rate_limited, token_budget

if TYPE_CHECKING:
    from bookchat.chatkit.server import BookChatKitServer
    from bookchat.container import Container

_chat_rate = rate_limited("chat", lambda _, book: book.rate_limit_chat)
_chat_budget = token_budget("chat")
_stream_slot = asynccontextmanager(hold_stream_slot)


@cache
def _request_adapter() -> TypeAdapter[Any]:
    """The SDK's request union, read on the first ChatKit request (not when the app starts)."""
    from chatkit.types import ChatKitReq

    return TypeAdapter(ChatKitReq)


def chatkit_server(container: Container) -> BookChatKitServer:
    """The ChatKit server, built on the first ChatKit request: the SDK loads then, and a
    process nobody asks for ChatKit never pays its 50 MB and 2 s (`calls.py`)."""
    if container.chatkit is None:
        from bookchat.container import open_chatkit

        container.chatkit = open_chatkit(container)
    if container.chatkit is None:  # the route is only mounted with the SDK installed
        raise ConfigurationError("The ChatKit SDK is not installed (bookchat[chatkit]).")
    return container.chatkit


async def chatkit_call(
    request: Request, container: ContainerDep, reader: ChatReader, book: CurrentBook
) -> AsyncIterator[ChatKitCall]:
    """The request parsed by the SDK's own types (400 in bookchat's error shape when it is
    not one); a turn also passes the chat limits and holds a stream slot while it streams."""
    body = await request.body()
    try:
        parsed = _request_adapter().validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        raise ValidationFailed(
            "The body is not a ChatKit request.",
            details=[{"loc": ["body", *first["loc"]], "msg": first["msg"], "type": first["type"]}],
        ) from None
    call = ChatKitCall(body=body, request=parsed)
    if not call.streaming:
        yield call
        return
    await _chat_rate(request, container, reader, book)
    await _chat_budget(request, container, reader)
    async with _stream_slot(request, container, reader):
        yield call


# scope="request": the stream slot is released after the response (the whole stream).
ChatKitCallDep = Annotated[ChatKitCall, Depends(chatkit_call, scope="request")]
