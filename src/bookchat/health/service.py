"""Checks of each part the service depends on."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bookchat import __version__
from bookchat.core.db import resolve_database_url
from bookchat.core.redis import RedisStatus, describe_redis_url
from bookchat.providers.base import ChatModel
from bookchat.providers.embeddings.base import Embedder
from bookchat.retrieval.index import QdrantIndex

DB_CHECK_TIMEOUT = 3.0
REDIS_CHECK_TIMEOUT = 1.0

Status = Literal["ok", "unavailable"]


class ComponentRead(BaseModel):
    status: Status
    profile: str
    detail: str | None = None
    latency_ms: float | None = None


class HealthRead(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    environment: str
    components: dict[str, ComponentRead]


async def check_database(engine: AsyncEngine) -> ComponentRead:
    """Run `SELECT 1`; an error or a slow answer means unavailable."""
    profile = engine.dialect.name
    started = time.perf_counter()
    try:
        async with asyncio.timeout(DB_CHECK_TIMEOUT):
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure is "unavailable"; the type is enough to diagnose
        return ComponentRead(status="unavailable", profile=profile, detail=type(exc).__name__)
    return ComponentRead(
        status="ok", profile=profile, latency_ms=round((time.perf_counter() - started) * 1000, 2)
    )


def describe_llm(chat: ChatModel) -> ComponentRead:
    """The language model's profile (nothing to call: a model call costs money)."""
    detail = f"model={chat.model}"
    if chat.mode == "extractive":
        detail += (
            " (offline: answers quote the book; set OPENAI_API_KEY or ANTHROPIC_API_KEY for a"
            " language model)"
        )
    return ComponentRead(status="ok", profile=chat.provider, detail=detail)


async def check_index(index: QdrantIndex, embedder: Embedder | None) -> ComponentRead:
    """Count the collection's points; an error means the index is unavailable."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(DB_CHECK_TIMEOUT):
            points = await index.count()
    except Exception as exc:  # any failure is "unavailable"; the type is enough to diagnose
        return ComponentRead(status="unavailable", profile=index.mode, detail=type(exc).__name__)
    dense = f"dense={embedder.name} ({embedder.dimension})" if embedder else "dense=off (BM25 only)"
    return ComponentRead(
        status="ok",
        profile=index.mode,
        detail=f"collection={index.collection} points={points} {dense}",
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
    )


async def check_redis(
    redis: Redis | None, redis_url: str | None, status: RedisStatus
) -> ComponentRead:
    """Ping Redis when it is configured; `memory` when rate limits and caches are in process.

    Unavailable Redis degrades the service without stopping it (limits and caches fail open),
    so it is not part of readiness.
    """
    if redis is None or redis_url is None:
        return ComponentRead(
            status="ok",
            profile="memory",
            detail="rate limits and caches in this process (set REDIS_URL to share them "
            "between replicas)",
        )
    target = describe_redis_url(redis_url)
    last_failure = status.describe_last_failure()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(REDIS_CHECK_TIMEOUT):
            await redis.ping()
    except Exception as exc:  # any failure is "unavailable"; the type is enough to diagnose
        detail = (
            f"{target}: {type(exc).__name__}; rate limits are not enforced and caches are off "
            "until it is back"
        )
        if last_failure:
            detail += f"; last failure: {last_failure}"
        return ComponentRead(status="unavailable", profile="redis", detail=detail)
    return ComponentRead(
        status="ok",
        profile="redis",
        detail=f"{target}; last failure: {last_failure}" if last_failure else target,
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
    )


@dataclass(frozen=True, slots=True)
class HealthService:
    """Checks every part the service depends on; holds exactly what it checks."""

    engine: AsyncEngine
    index: QdrantIndex
    embedder: Embedder | None
    chat: ChatModel
    redis: Redis | None
    redis_url: str | None
    redis_status: RedisStatus
    environment: str

    async def database(self) -> ComponentRead:
        return await check_database(self.engine)

    async def vector_index(self) -> ComponentRead:
        return await check_index(self.index, self.embedder)

    async def shared_store(self) -> ComponentRead:
        return await check_redis(self.redis, self.redis_url, self.redis_status)

    async def overall(self) -> HealthRead:
        """Every part at once; `degraded` when any of them does not answer."""
        database, index, redis = await asyncio.gather(
            self.database(), self.vector_index(), self.shared_store()
        )
        components = {
            "database": database,
            "qdrant": index,
            "llm": describe_llm(self.chat),
            "redis": redis,
        }
        degraded = any(c.status != "ok" for c in components.values())
        return HealthRead(
            status="degraded" if degraded else "ok",
            version=__version__,
            environment=self.environment,
            components=components,
        )


def database_profile(raw_url: str) -> str:
    """`sqlite (data/bookchat.db)` or `postgresql (host/db)`, never with a password."""
    target = resolve_database_url(raw_url)
    if target.dialect == "sqlite":
        return f"sqlite ({target.url.database})"
    return f"{target.dialect} ({target.url.host}/{target.url.database})"
