"""The OpenAPI document as the API behaves: the error shape, 400 instead of 422, the NUL rule,
and references that resolve."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

# Paging offsets beyond any real table, but within every database's integer range (SQLite
# and PostgreSQL BIGINT): a larger one would be a driver overflow, not an empty page.
MAX_OFFSET = 1_000_000_000


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[Any]


class ErrorRead(BaseModel):
    """Every error response: `{"error": {...}, "request_id": "..."}`."""

    error: ErrorDetail
    request_id: str | None


NUL_RULE = (
    "Text anywhere in a request (path, query string, JSON body, form fields, file names) must "
    "not contain NUL characters (U+0000, `\\u0000` in JSON, `%00` in URLs and urlencoded "
    "forms): such a request is answered 400 `validation_error`, naming the form field when it "
    "is one."
)
API_DESCRIPTION = (
    'Every error answers `{"error": {"code", "message", "details"}, "request_id"}`. ' + NUL_RULE
)

_DESCRIPTIONS = {
    400: "Invalid request (`validation_error`), including text with a NUL character",
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


def _error_ref(status: int) -> dict[str, Any]:
    return {
        "description": _DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorRead"}}},
    }


def use_400_for_validation(app: FastAPI) -> None:
    """Document validation failures as they are answered: 400 in the error shape, not 422."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=API_DESCRIPTION,
                routes=app.routes,
            )
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    responses = operation.get("responses", {})
                    responses.pop("422", None)
                    # Any request can carry a NUL in its query string: 400 is always possible.
                    responses.setdefault("400", _error_ref(400))
                    if "requestBody" in operation:
                        # The body size limit answers any request body over it.
                        responses.setdefault("413", _error_ref(413))
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
            _hoist_local_definitions(schema.get("paths", {}), components)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _hoist_local_definitions(node: object, components: dict[str, Any]) -> None:
    """Move the `$defs` of bodies written by hand (`Model.model_json_schema()` in
    `openapi_extra`) into the components, and point their `#/$defs/X` references there: inside
    an OpenAPI document `#/$defs` names the document's root, which has none."""
    if isinstance(node, dict):
        for name, definition in node.pop("$defs", {}).items():
            components.setdefault(name, definition)
            _hoist_local_definitions(definition, components)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            node["$ref"] = "#/components/schemas/" + ref.removeprefix("#/$defs/")
        for value in node.values():
            _hoist_local_definitions(value, components)
    elif isinstance(node, list):
        for item in node:
            _hoist_local_definitions(item, components)
