"""A fair share of answer streams: a cap per reader (or client address) and a time limit.

Why: every open stream costs this process a model call, a token loop and a connection, for as
long as it runs. One client holding 64 of them slowed everyone else's first token tenfold and
stalled `/health/live` for seconds (docs/operations.md, "Streams"). So a reader gets
MAX_STREAMS_PER_CLIENT streams at a time, a stream runs STREAM_MAX_SECONDS at most, and a reader
who stops reading is cut after STREAM_SEND_TIMEOUT_SECONDS (core/sse.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

import anyio
import structlog
from fastapi import Depends, Request

from bookchat.chat.dependencies import ChatReader
from bookchat.core.errors import RateLimited
from bookchat.core.metrics import metric_book
from bookchat.core.ratelimit import request_identity
from bookchat.core.sse import StreamEvent
from bookchat.dependencies import ContainerDep

logger = structlog.get_logger(__name__)

# A slot frees when one of the reader's streams ends, typically within seconds.
STREAM_RETRY_AFTER_SECONDS = 5
# Seconds a release may take before the slot is left to expire (Redis is unreachable).
RELEASE_SECONDS = 2.0


async def hold_stream_slot(
    request: Request, container: ContainerDep, reader: ChatReader
) -> AsyncIterator[None]:
    """One of the reader's stream slots for the whole stream, or 429 when all are in use.

    FastAPI leaves a yield dependency after the response has been sent, so the slot is held
    until the stream's last event (or its reader hangs up)."""
    settings = container.settings
    identity = request_identity(request, container.limiter, reader)
    slots = container.stream_slots
    limit = settings.max_streams_per_client
    token = await slots.acquire(identity, limit)
    if token is None:
        logger.info("chat.streams_refused", kind=identity.partition(":")[0], limit=limit)
        container.metrics.rate_limited.labels(metric_book(), "streams").inc()
        plural = "answer streams" if limit > 1 else "answer stream"
        raise RateLimited(
            f"At most {limit} {plural} may be open at once; wait for one to finish.",
            headers={"Retry-After": str(STREAM_RETRY_AFTER_SECONDS)},
        )
    try:
        yield
    finally:
        # Shielded: a stream cancelled by a server shutdown must still give its slot back.
        with anyio.CancelScope(shield=True), anyio.move_on_after(RELEASE_SECONDS):
            await slots.release(identity, token)


# scope="request": released after the response (the whole stream), not when the route returns.
STREAM_SLOT = Depends(hold_stream_slot, scope="request")


async def within(
    events: AsyncGenerator[StreamEvent], max_seconds: float
) -> AsyncGenerator[StreamEvent]:
    """The events until `max_seconds` have passed; then an `error` event ends the stream.

    The deadline cancels the stream where it waits (the model call goes with it) and the
    stream stores what was said as `partial`. The clock covers only the wait for each next
    event, never a yield: a cancel scope must not stay open across a yield.
    """
    deadline = asyncio.get_running_loop().time() + max_seconds
    async with aclosing(events):
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    event = await anext(events)
            except StopAsyncIteration:
                return
            except TimeoutError:
                logger.warning("chat.stream_cut", reason="max_seconds", max_seconds=max_seconds)
                yield (
                    "error",
                    {
                        "code": "llm_timeout",
                        "message": (
                            f"The answer took longer than {max_seconds:g} seconds and was cut "
                            "short; what was shown is kept."
                        ),
                    },
                )
                return
            yield event
