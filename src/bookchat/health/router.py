"""Liveness, readiness and per-dependency health."""

from __future__ import annotations

from fastapi import APIRouter

from bookchat.core.errors import DependencyUnavailable
from bookchat.core.openapi import error_responses
from bookchat.health.dependencies import HealthServiceDep
from bookchat.health.service import ComponentRead, HealthRead

router = APIRouter(prefix="/health", tags=["health"])


@router.get("", response_model=HealthRead)
async def read_health(health: HealthServiceDep) -> HealthRead:
    """Status of every part: which profile each runs in and whether it answers."""
    return await health.overall()


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
async def read_readiness(health: HealthServiceDep) -> dict[str, str]:
    """Ready to serve: the database answers (503 otherwise)."""
    database = await health.database()
    require_ok(database, "database", "Not ready: the database is unavailable.")
    return {"status": "ok"}


@router.get("/db", response_model=ComponentRead, responses=error_responses(503))
async def read_database_health(health: HealthServiceDep) -> ComponentRead:
    """The database: reachable or not, its dialect and round-trip time."""
    database = await health.database()
    return require_ok(database, "database", "The database is unavailable.")


@router.get("/qdrant", response_model=ComponentRead, responses=error_responses(503))
async def read_index_health(health: HealthServiceDep) -> ComponentRead:
    """The vector index: embedded or server, collection, points, embedder (503 when down)."""
    index = await health.vector_index()
    return require_ok(index, "qdrant", "The vector index is unavailable.")


@router.get("/redis", response_model=ComponentRead, responses=error_responses(503))
async def read_redis_health(health: HealthServiceDep) -> ComponentRead:
    """Redis (shared rate limits and caches), or `memory` when not configured (503 when down)."""
    redis = await health.shared_store()
    return require_ok(redis, "redis", "Redis is unavailable; rate limits and caches fail open.")


seed_router = APIRouter(include_in_schema=False)


@seed_router.get("/health")
async def read_seed_health() -> dict[str, str]:
    """The seed's contract: `{"status": "healthy"}` while the process runs."""
    return {"status": "healthy"}
