"""uvicorn's HTTP protocol with deadlines for receiving a request (slow-loris protection).

uvicorn times only the idle gap between kept-alive requests, and that timer stops at the first
byte: a client that sends a header byte a second, or a body byte a second, holds its connection
(and a file descriptor) forever, and nothing in ASGI can help because the app sees the request
only once its headers are complete. This subclass closes such a connection:

- headers: complete within HTTP_HEADER_TIMEOUT_SECONDS of the connection opening, or of the
  first byte of the next request on a kept-alive one (408, then closed);
- body: complete within HTTP_BODY_TIMEOUT_SECONDS of the headers (408 unless a response has
  started, then closed; the app sees a disconnect).

Nothing is timed once the request has arrived: a long answer stream is never cut by this.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Literal

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bookchat.core.config import get_settings

logger = structlog.get_logger(__name__)

Phase = Literal["headers", "body"]

TIMEOUT_MESSAGE = "The request was not received in time; send it again."


def timeout_response(request_id: str) -> bytes:
    """The 408, in the API's error shape (the app never saw the request to render it)."""
    body = json.dumps(
        {
            "error": {"code": "request_timeout", "message": TIMEOUT_MESSAGE, "details": []},
            "request_id": request_id,
        }
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"x-request-id: {request_id}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that cuts a client sending its headers or body too slowly."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read here, not passed in: uvicorn builds this class itself, in every worker process,
        # from the same environment the app's settings come from.
        settings = get_settings()
        self._timeouts: dict[Phase, float] = {
            "headers": settings.http_header_timeout_seconds,
            "body": settings.http_body_timeout_seconds,
        }
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # From the connection's start: a client that connects and says nothing is cut too.
        self._arm("headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm("headers")

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if not self.parser.should_upgrade():
            self._arm("body")  # disarmed at once by on_message_complete when there is none

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self, phase: Phase) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self._timeouts[phase], self._expired, phase)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: Phase) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        request_id = uuid.uuid4().hex
        logger.info(
            "http.slow_client_cut",
            phase=phase,
            timeout_s=self._timeouts[phase],
            request_id=request_id,
        )
        cycle = self.cycle
        # Before the headers, `cycle` is the previous request's (complete) or None.
        if phase == "headers" or (cycle is not None and not cycle.response_started):
            self.transport.write(timeout_response(request_id))
        self.transport.close()
