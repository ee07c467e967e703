"""The project's errors and the one JSON shape every error response has (DESIGN.md section 4).

`AppError` is the root of every error the project raises on purpose. Adapters (Qdrant, the
embeddings and chat vendors) catch their vendor's exceptions and raise one of these instead, so
routes, the CLI and the startup path catch one family and never see an SDK type.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from bookchat.core.logging import current_request_id

if TYPE_CHECKING:
    # The web framework only where responses are made: the CLI raises these errors too, and
    # importing FastAPI would cost every command a fifth of a second.
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

logger = structlog.get_logger(__name__)


INTERNAL_ERROR_MESSAGE = "Something went wrong on our side. Quote the request id if you report it."


class AppError(Exception):
    """An error the client may see: a stable code, a readable message, an HTTP status."""

    code = "internal_error"
    status_code = 500
    default_message = "Something went wrong on our side."
    # Seconds a client should wait before trying again (`Retry-After`), unless the raiser
    # knows better (a vendor's own Retry-After); None: no advice.
    retry_after: int | None = None

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Sequence[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = list(details or [])
        self.headers = dict(headers or {})
        if self.retry_after is not None:
            self.headers.setdefault("Retry-After", str(self.retry_after))
        super().__init__(self.message)

    @property
    def public_message(self) -> str:
        """What a client is told: a 500's message is for the operator (a path, a setting
        name), so clients get the generic one; every other status's message is for them."""
        return INTERNAL_ERROR_MESSAGE if self.status_code == 500 else self.message


class ValidationFailed(AppError):
    code, status_code, default_message = "validation_error", 400, "The request is not valid."


class Unauthorized(AppError):
    code, status_code, default_message = "unauthorized", 401, "Sign-in required."


class Forbidden(AppError):
    code, status_code, default_message = "forbidden", 403, "Not allowed."


class NotFound(AppError):
    code, status_code, default_message = "not_found", 404, "Not found."


class Conflict(AppError):
    code, status_code, default_message = "conflict", 409, "Conflicts with the current state."


class PayloadTooLarge(AppError):
    code, status_code, default_message = "payload_too_large", 413, "The request is too large."


class RateLimited(AppError):
    code, status_code, default_message = "rate_limited", 429, "Too many requests."


class LLMError(AppError):
    code, status_code = "llm_error", 502
    default_message = "The language model returned an error."


class LLMUnavailable(AppError):
    code, status_code = "llm_unavailable", 503
    default_message = "The language model is unavailable right now; try again shortly."
    # Vendors' rate limits and hiccups mostly clear within seconds; the vendor's own
    # Retry-After, when it sends one, replaces this.
    retry_after = 15


class LLMTimeout(AppError):
    code, status_code = "llm_timeout", 504
    default_message = "The language model took too long to answer."
    # A slow model is usually a busy one: give it a moment before the next try.
    retry_after = 10


class DependencyUnavailable(AppError):
    """A store or vendor service (Qdrant, the embeddings endpoint...) failed or did not answer."""

    code, status_code = "dependency_unavailable", 503
    default_message = "A service this request needs is unavailable; try again shortly."


class ConfigurationError(AppError):
    """The settings or the machine do not let the service run (raised at startup and by the
    CLI). The message is for the operator; a client would only see the generic 500."""

    default_message = "The service is misconfigured."


def error_body(code: str, message: str, details: Sequence[Any] = ()) -> dict[str, Any]:
    """The error document of DESIGN.md section 4."""
    return {
        "error": {"code": code, "message": message, "details": list(details)},
        "request_id": current_request_id(),
    }


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: Sequence[Any] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    from fastapi.responses import JSONResponse

    return JSONResponse(error_body(code, message, details), status_code, headers=headers)


def is_database_outage(exc: BaseException) -> bool:
    """True for SQLAlchemy errors that mean "the database cannot be reached"."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def is_network_outage(exc: BaseException) -> bool:
    """True for socket-level failures (asyncpg raises these straight from connect())."""
    return isinstance(exc, ConnectionError | TimeoutError | socket.gaierror)


_HTTP_CODES = {
    400: "validation_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Echo where and why, never the rejected input itself (it may be large or private).
    return [
        {
            "loc": list(err.get("loc", ())),
            "msg": _readable(err),
            "type": err.get("type", ""),
        }
        for err in exc.errors()
    ]


# Fields that need "some visible text" (a message, a query) carry this pattern; a reader sees
# "must not be empty or only spaces" instead of it. Plain `\S` would mean three things: the
# OpenAPI schema is read with JavaScript's `\s`, pydantic checks with Rust's (Unicode
# White_Space, which adds NEL) and the value is then trimmed with Python's `str.strip` (which
# adds the separators U+001C-U+001F). Naming those characters and U+FEFF (JavaScript's own
# addition) makes all three agree: a string the schema accepts is accepted and is not blank
# once trimmed; one it refuses is refused.
VISIBLE_TEXT_PATTERN = r"[^\s\x1c-\x1f\x85\ufeff]"


def _readable(err: Mapping[str, Any]) -> str:
    if (
        err.get("type") == "string_pattern_mismatch"
        and (err.get("ctx") or {}).get("pattern") == VISIBLE_TEXT_PATTERN
    ):
        return "must not be empty or only spaces"
    return str(err.get("msg", "")).removeprefix("Value error, ")


def _validation_message(details: list[dict[str, Any]]) -> str:
    if not details:
        return "The request is not valid."
    first = details[0]
    field = ".".join(str(part) for part in first["loc"] if part != "body") or "body"
    if first["type"] == "json_invalid":
        return "The request body is not valid JSON."
    return f"{field}: {first['msg']}"


def install_error_handlers(app: FastAPI) -> None:
    """Render every error in the one documented shape."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def on_app_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AppError)
        if exc.status_code >= 500:
            logger.warning(
                "request.error",
                code=exc.code,
                status=exc.status_code,
                error_type=type(exc).__name__,
            )
        return error_response(
            exc.status_code, exc.code, exc.public_message, exc.details, exc.headers
        )

    async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = _validation_details(exc)
        return error_response(400, "validation_error", _validation_message(details), details)

    async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(
            exc.status_code, "internal_error" if exc.status_code >= 500 else "error"
        )
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        return error_response(exc.status_code, code, message, headers=exc.headers)

    async def on_database_error(_: Request, exc: Exception) -> JSONResponse:
        if not is_database_outage(exc):
            raise exc
        logger.error("database.unavailable", error_type=type(exc).__name__)
        return error_response(
            503, "dependency_unavailable", "The database is unavailable; try again shortly."
        )

    async def on_network_error(_: Request, exc: Exception) -> JSONResponse:
        if not is_network_outage(exc):
            raise exc  # a file or programming error: the generic 500 path logs it
        logger.error("dependency.unavailable", error_type=type(exc).__name__)
        return error_response(503, "dependency_unavailable", DependencyUnavailable.default_message)

    app.add_exception_handler(AppError, on_app_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(DBAPIError, on_database_error)
    app.add_exception_handler(PoolTimeoutError, on_database_error)
    app.add_exception_handler(OSError, on_network_error)
