"""Pure ASGI middleware: request context (request id, one access-log line, a safe 500), request
body size limits, security headers."""

from __future__ import annotations

import json
import re
import time
import uuid

import structlog
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bookchat.core.errors import INTERNAL_ERROR_MESSAGE, error_body
from bookchat.core.logging import request_id_var

logger = structlog.get_logger(__name__)

_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    """Binds a request id, logs one line per request, turns unhandled errors into a safe 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("request.unhandled_error")
            if not response_started:
                # Never the exception text: it can carry SQL, paths or secrets.
                await send_error(send_with_id, 500, "internal_error", INTERNAL_ERROR_MESSAGE)
        finally:
            logger.info(
                "http.request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                latency_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()
            request_id_var.reset(token)


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1").strip()
            return candidate if _REQUEST_ID_OK.match(candidate) else None
    return None


# --- request size limits and security headers -------------------------------------------------


class _BodyTooLarge(StarletteHTTPException):
    """Raised from `receive` when a streamed body passes the limit. An HTTPException, so that
    FastAPI's body parsing re-raises it (other errors there become a 400) and the app's handler
    renders it in the error shape; `BodySizeLimitMiddleware` answers it if it gets out."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=_too_large_message(limit))


def _too_large_message(limit: int) -> str:
    return f"The request body is larger than the limit of {limit} bytes."


class BodySizeLimitMiddleware:
    """Refuses request bodies over `max_bytes` (`upload_max_bytes` on the paths `upload_paths`
    matches in full) with 413.

    A declared Content-Length over the limit is answered before anything is read; a body
    without one (chunked) is counted as the app reads it, never buffered here.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        upload_max_bytes: int,
        upload_paths: re.Pattern[str] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_max_bytes = upload_max_bytes
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/")
        uploads = self.upload_paths is not None and self.upload_paths.fullmatch(path)
        limit = self.upload_max_bytes if uploads else self.max_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_too_large(send, limit)
            return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if response_started:
                raise
            await _send_too_large(send, limit)


async def _send_too_large(send: Send, limit: int) -> None:
    # The unread body is still on the wire: do not reuse this connection.
    await send_error(
        send,
        413,
        "payload_too_large",
        _too_large_message(limit),
        extra_headers=((b"connection", b"close"),),
    )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects a malformed length before we see it
    return None


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    extra_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """Answer from middleware, in the one error shape (the request id comes from context)."""
    body = json.dumps(error_body(code, message), separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *extra_headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    # `cross-origin`, not `same-origin`: other sites load the widget script from this server
    # with a plain <script> tag (a no-cors request that a stricter policy would block).
    (b"cross-origin-resource-policy", b"cross-origin"),
)
# Nothing in an API response may load, run or be framed. Not sent with HTML (`/docs` and
# `/redoc` send their own, core/apidocs.py; the demo page has its own needs).
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
_HSTS = (b"strict-transport-security", b"max-age=31536000")


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response; a header the app set itself wins."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # HSTS over https only: over http a browser ignores it and it would only mislead.
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                extra = list(_SECURITY_HEADERS)
                if not _is_html(headers):
                    extra.append(_API_CSP)
                if https:
                    extra.append(_HSTS)
                headers.extend(header for header in extra if header[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _is_html(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"text/html"
    return False
