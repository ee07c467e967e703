"""Server-Sent Events responses shared by the answer and chapter streams."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent

from bookchat.core.config import Settings

# An event name and its JSON payload, as the services yield them.
StreamEvent = tuple[str, dict[str, Any]]


def event_stream(events: AsyncGenerator[StreamEvent], settings: Settings) -> EventSourceResponse:
    """The events as an SSE response that proxies neither buffer nor cache.

    When the server is told to stop, an open stream gets SHUTDOWN_TIMEOUT_SECONDS to finish
    before it is cut (the services store what was said so far); the server waits a little
    longer than that (see `bookchat serve`).
    """
    return EventSourceResponse(
        _as_sse(events),
        ping=settings.sse_ping_seconds,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        shutdown_grace_period=settings.shutdown_timeout_seconds,
    )


async def _as_sse(events: AsyncGenerator[StreamEvent]) -> AsyncGenerator[ServerSentEvent]:
    # aclosing: when the response closes this generator (the client left, or the server is
    # stopping), the service's stream is closed too, at once: model calls are cancelled and
    # the partial answer is stored.
    async with aclosing(events):
        async for name, payload in events:
            yield ServerSentEvent(event=name, data=json.dumps(payload, ensure_ascii=False))
