"""`GET /metrics`: the app's Prometheus registry in the text format."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from bookchat.core.errors import NotFound, Unauthorized
from bookchat.core.http import parse_bearer
from bookchat.core.metrics import METRICS_CONTENT_TYPE
from bookchat.core.openapi import error_responses
from bookchat.dependencies import ContainerDep

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {METRICS_CONTENT_TYPE: {}}, "description": "Prometheus text format."},
        **error_responses(401, 404),
    },
)
async def read_metrics(request: Request, container: ContainerDep) -> Response:
    """Prometheus metrics (404 when METRICS_ENABLED=false; with METRICS_TOKEN set, they need
    `Authorization: Bearer <METRICS_TOKEN>`)."""
    # The token is read by hand, not declared as an OpenAPI security scheme: whether one is
    # needed depends on this server's settings, which the schema cannot say.
    settings = container.settings
    if not settings.metrics_enabled:
        raise NotFound("Metrics are turned off (METRICS_ENABLED=false).")
    token = settings.metrics_token
    presented = parse_bearer(request.headers.get("authorization"))
    if token is not None and not (
        presented is not None
        and hmac.compare_digest(presented.encode(), token.get_secret_value().encode())
    ):
        raise Unauthorized(
            "Metrics need `Authorization: Bearer <METRICS_TOKEN>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    body = await asyncio.to_thread(container.metrics.render)
    return Response(body, media_type=METRICS_CONTENT_TYPE)
