"""Scratch stores for a benchmark run: SQLite or a PostgreSQL database of its own, embedded
Qdrant, Redis database 15; migration and in-process ingestion of the corpus."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import redis.asyncio as aioredis
from sqlalchemy.engine import make_url

from bookchat.container import open_container
from bookchat.content.loader import load_folder
from bookchat.core.config import Settings
from bookchat.core.migrations import upgrade
from bookchat.evaluation.questions import load_questions
from bookchat.evaluation.ranking import evaluate

BASE_URL = "https://example.github.io/textbook"
EMBEDDING_DIMENSIONS = 256
SCRATCH_PREFIX = "bookchat_bench_"


@dataclass(frozen=True, slots=True)
class Store:
    """Where one server's data lives."""

    label: str
    database_url: str
    qdrant_path: Path


@dataclass(frozen=True, slots=True)
class Ingestion:
    documents: int
    chunks: int
    scratch_seconds: float
    unchanged_seconds: float
    unchanged_documents: int
    bm25_hit_at_5: float | None = None
    # With a real embedding model (the offline profile's MiniLM), not the fake's random vectors.
    hybrid_hit_at_5: float | None = None


def server_settings(store: Store, fake_base_url: str, redis_url: str | None) -> dict[str, str]:
    """The environment of `bookchat serve` for this store and fake LLM (every request takes
    the full path: no answer cache, no effective rate limit, no retries)."""
    env = {
        "DATABASE_URL": store.database_url,
        "QDRANT_PATH": str(store.qdrant_path),
        "LLM_PROVIDER": "openai",
        "OPENAI_API_KEY": "bench",
        "OPENAI_BASE_URL": fake_base_url,
        "EMBEDDINGS_PROVIDER": "openai",
        "EMBEDDINGS_DIMENSIONS": str(EMBEDDING_DIMENSIONS),
        "BOOK_BASE_URL": BASE_URL,
        "RATE_LIMIT_CHAT": "1000000000/minute",
        # Every benchmark client is one anonymous address: a daily token budget would refuse it.
        "TOKEN_BUDGET_ANONYMOUS_DAILY": "0",
        "ANSWER_CACHE_TTL_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
        "LLM_MAX_RETRIES": "0",
    }
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return env


def ingest_settings(store: Store, fake_base_url: str) -> Settings:
    """The same configuration as the server's, for ingesting in this process."""
    values: dict[str, Any] = {
        "database_url": store.database_url,
        "qdrant_path": str(store.qdrant_path),
        "llm_provider": "openai",
        "openai_api_key": "bench",
        "openai_base_url": fake_base_url,
        "embeddings_provider": "openai",
        "embeddings_dimensions": EMBEDDING_DIMENSIONS,
        "book_base_url": BASE_URL,
        "log_level": "WARNING",
    }
    return Settings(_env_file=None, **values)


async def migrate_and_ingest(
    store: Store, fake_base_url: str, corpus: Path, questions: Path | None = None
) -> Ingestion:
    """Migrate, ingest the corpus from scratch, then again unchanged (and score BM25 retrieval
    on `questions`); closes the stores after: embedded Qdrant allows one process, and the
    server comes next."""
    return await migrate_and_ingest_with(
        store, ingest_settings(store, fake_base_url), corpus, questions
    )


async def migrate_and_ingest_with(
    store: Store,
    settings: Settings,
    corpus: Path,
    questions: Path | None = None,
    *,
    hybrid: bool = False,
) -> Ingestion:
    """`migrate_and_ingest` with these settings; `hybrid` also scores hybrid retrieval on
    `questions` when the settings' embedder loaded."""
    await asyncio.to_thread(upgrade, store.database_url)
    async with open_container(settings) as container:
        documents = await asyncio.to_thread(load_folder, corpus, BASE_URL)
        first = await container.ingestor.ingest(documents)
        if first.failed:
            raise RuntimeError(f"ingestion failed: {first.failed}")
        documents = await asyncio.to_thread(load_folder, corpus, BASE_URL)
        second = await container.ingestor.ingest(documents)
        hit_at_5 = hybrid_hit_at_5 = None
        if questions is not None:
            asked = load_questions(questions)
            scores = await evaluate(container.retriever, asked, mode="bm25", k=5)
            hit_at_5 = scores.hit_at_k
            if hybrid and container.providers.embedder is not None:
                scores = await evaluate(container.retriever, asked, mode="hybrid", k=5)
                hybrid_hit_at_5 = scores.hit_at_k
    return Ingestion(
        documents=len(documents),
        chunks=first.chunks,
        scratch_seconds=first.seconds,
        unchanged_seconds=second.seconds,
        unchanged_documents=len(second.unchanged),
        bm25_hit_at_5=hit_at_5,
        hybrid_hit_at_5=hybrid_hit_at_5,
    )


def sqlite_store(scratch: Path) -> Store:
    return Store("sqlite", f"sqlite+aiosqlite:///{scratch}/bench.db", scratch / "qdrant")


def _plain_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def postgres_problem(server_url: str) -> str | None:
    """Why PostgreSQL cannot be used, or None when it answers."""
    try:
        connection = await asyncpg.connect(_plain_dsn(server_url), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await connection.close()
    return None


async def _admin(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(_plain_dsn(server_url), timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def uncancellable(work: Coroutine[Any, Any, None]) -> None:
    """Finish `work` even when the run is being cancelled (Ctrl-C), then let that go on."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


@asynccontextmanager
async def postgres_store(server_url: str, scratch: Path) -> AsyncIterator[Store]:
    """A new database of this run on the test server, dropped afterwards (no other is touched)."""
    name = f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}"
    try:
        await _admin(server_url, f'CREATE DATABASE "{name}"')
        url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        yield Store("postgresql", url, scratch / "qdrant-postgresql")
    finally:
        await uncancellable(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def redis_problem(url: str) -> str | None:
    """Why Redis cannot be used, or None when it answers."""
    client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except (aioredis.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await client.aclose()
    return None


async def flush_redis(url: str) -> None:
    """Empty the benchmark's Redis database (15 by default)."""
    client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
