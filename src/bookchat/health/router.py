"""Liveness, readiness and per-dependency health."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from bookchat.core.errors import DependencyUnavailable, NotFound, Unauthorized
from bookchat.core.metrics import METRICS_CONTENT_TYPE
from bookchat.core.openapi import error_responses
from bookchat.dependencies import ContainerDep
from bookchat.health.service import (
    ComponentRead,
    HealthRead,
    check_database,
    check_index,
    check_redis,
    overall,
)

router = APIRouter(prefix="/health", tags=["health"])


@router.get("", response_model=HealthRead)
async def read_health(container: ContainerDep) -> HealthRead:
    """Status of every part: which profile each runs in and whether it answers."""
    return await overall(container)


@router.get("/live")
async def read_liveness() -> dict[str, str]:
    """The process is up and its event loop answers."""
    return {"status": "ok"}


def require_ok(component: ComponentRead, name: str, message: str) -> ComponentRead:
    """The component when it answers; a 503 in the error shape naming it otherwise."""
    if component.status != "ok":
        raise DependencyUnavailable(
            message, details=[{"component": name, "error": component.detail}]
        )
    return component


@router.get("/ready", responses=error_responses(503))
async def read_readiness(container: ContainerDep) -> dict[str, str]:
    """Ready to serve: the database answers (503 otherwise)."""
    database = await check_database(container.engine)
    require_ok(database, "database", "Not ready: the database is unavailable.")
    return {"status": "ok"}


@router.get("/db", response_model=ComponentRead, responses=error_responses(503))
async def read_database_health(container: ContainerDep) -> ComponentRead:
    """The database: reachable or not, its dialect and round-trip time."""
    database = await check_database(container.engine)
    return require_ok(database, "database", "The database is unavailable.")


@router.get("/qdrant", response_model=ComponentRead, responses=error_responses(503))
async def read_index_health(container: ContainerDep) -> ComponentRead:
    """The vector index: embedded or server, collection, points, embedder (503 when down)."""
    index = await check_index(container)
    return require_ok(index, "qdrant", "The vector index is unavailable.")


@router.get("/redis", response_model=ComponentRead, responses=error_responses(503))
async def read_redis_health(container: ContainerDep) -> ComponentRead:
    """Redis (shared rate limits and caches), or `memory` when not configured (503 when down)."""
    redis = await check_redis(container)
    return require_ok(redis, "redis", "Redis is unavailable; rate limits and caches fail open.")


metrics_router = APIRouter(tags=["health"])


@metrics_router.get(
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
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if token is not None and not (
        scheme.lower() == "bearer"
        and hmac.compare_digest(presented.strip().encode(), token.get_secret_value().encode())
    ):
        raise Unauthorized(
            "Metrics need `Authorization: Bearer <METRICS_TOKEN>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    body = await asyncio.to_thread(container.metrics.render)
    return Response(body, media_type=METRICS_CONTENT_TYPE)


seed_router = APIRouter(include_in_schema=False)


@seed_router.get("/health")
async def read_seed_health() -> dict[str, str]:
    """The seed's contract: `{"status": "healthy"}` while the process runs."""
    return {"status": "healthy"}
