"""Server-Sent Events responses shared by the answer and chapter streams."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import structlog
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Receive, Scope, Send

from bookchat.core.config import Settings

logger = structlog.get_logger(__name__)

# An event name and its JSON payload, as the services yield them.
StreamEvent = tuple[str, dict[str, Any]]


def event_stream(events: AsyncGenerator[StreamEvent], settings: Settings) -> EventSourceResponse:
    """The events as an SSE response that proxies neither buffer nor cache.

    When the server is told to stop, an open stream gets SHUTDOWN_TIMEOUT_SECONDS to finish
    before it is cut (the services store what was said so far); the server waits a little
    longer than that (see `bookchat serve`). A reader who takes nothing for
    STREAM_SEND_TIMEOUT_SECONDS while the buffers towards it are full is cut the same way: what
    waits unread is bounded by those buffers, and the stream stops costing anything.
    """
    return _StreamResponse.of(_as_sse(events), settings)


def encoded_event_stream(chunks: AsyncGenerator[bytes], settings: Settings) -> EventSourceResponse:
    """Events a library has already framed (`data: ...` blocks, as OpenAI's ChatKit SDK writes
    them) as an SSE response with the same headers, pings and limits as `event_stream`."""
    return _StreamResponse.of(_closing(chunks), settings)


class _StreamResponse(EventSourceResponse):
    """An event stream whose cut-off reader is a log line, not an application error."""

    @classmethod
    def of(cls, body: AsyncGenerator[Any], settings: Settings) -> _StreamResponse:
        """`body` with the headers, pings and limits every stream of this app has."""
        return cls(
            body,
            ping=settings.sse_ping_seconds,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            shutdown_grace_period=settings.shutdown_timeout_seconds,
            send_timeout=settings.stream_send_timeout_seconds,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            # The event generator is closed by now (its partial answer stored); the server
            # drops the connection because the response never finished.
            logger.warning("sse.reader_stalled", send_timeout=self.send_timeout)


async def _as_sse(events: AsyncGenerator[StreamEvent]) -> AsyncGenerator[ServerSentEvent]:
    # aclosing: when the response closes this generator (the client left, or the server is
    # stopping), the service's stream is closed too, at once: model calls are cancelled and
    # the partial answer is stored.
    async with aclosing(events):
        async for name, payload in events:
            yield ServerSentEvent(event=name, data=json.dumps(payload, ensure_ascii=False))


async def _closing(chunks: AsyncGenerator[bytes]) -> AsyncGenerator[bytes]:
    # As in `_as_sse`: the response closing this generator closes the library's stream at once.
    async with aclosing(chunks):
        async for chunk in chunks:
            yield chunk
