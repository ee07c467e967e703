"""OpenAPI documentation of the error shape, so generated clients know it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[Any]


class ErrorRead(BaseModel):
    """Every error response: `{"error": {...}, "request_id": "..."}`."""

    error: ErrorDetail
    request_id: str | None


_DESCRIPTIONS = {
    400: "Invalid request (`validation_error`)",
    401: "Sign-in required (`unauthorized`)",
    403: "Not allowed (`forbidden`)",
    404: "Not found (`not_found`)",
    409: "Conflict (`conflict`)",
    413: "Too large (`payload_too_large`)",
    429: "Rate limited (`rate_limited`), see `Retry-After`",
    502: "The language model failed (`llm_error`)",
    503: "A dependency is unavailable (`llm_unavailable`, `dependency_unavailable`)",
    504: "The language model timed out (`llm_timeout`)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the listed statuses, each with the error schema."""
    return {
        status: {"model": ErrorRead, "description": _DESCRIPTIONS[status]} for status in statuses
    }
