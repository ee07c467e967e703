"""The app for serverless platforms (Vercel): started at the first request, servers only.

A serverless instance is a process the platform starts on demand and freezes between requests.
Some platforms never send the ASGI lifespan events, so the app's lifespan (engine, index,
providers) is started at the first request unless the platform already ran it. Instances share
nothing and keep no disk, so the embedded stores cannot work there: the database must be
PostgreSQL (Neon) and the index a Qdrant server (Qdrant Cloud). Background ingestion jobs are
turned off, because work stops when the response is sent.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bookchat.core.config import Settings, get_settings
from bookchat.core.db import resolve_database_url
from bookchat.core.errors import ConfigurationError
from bookchat.core.middleware import send_error
from bookchat.main import create_app

logger = structlog.get_logger(__name__)


class ServerlessConfigError(ConfigurationError):
    """The settings name a store a serverless instance cannot keep."""


def check_serverless_settings(settings: Settings) -> None:
    """Refuse the embedded stores, with what to set instead."""
    problems = []
    if settings.qdrant_url is None:
        problems.append(
            "QDRANT_URL must name a Qdrant server (for example Qdrant Cloud, with "
            "QDRANT_API_KEY): the embedded index lives on a disk instances do not keep"
        )
    if resolve_database_url(settings.database_url.get_secret_value()).dialect == "sqlite":
        problems.append(
            "DATABASE_URL must be PostgreSQL (for example Neon's pooled URL, the host with "
            "-pooler): a SQLite file would be lost with the instance"
        )
    if problems:
        raise ServerlessConfigError("Serverless deployment: " + "; ".join(problems) + ".")


class LazyLifespan:
    """Runs the wrapped app's lifespan at the first request, unless the server sends it.

    The lifespan then lives as long as the instance: a frozen instance is never told it is
    about to end, and its connections are reopened by their pools when it thaws.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._started = False
        self._starting: asyncio.Lock | None = None
        self._lifespan: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            self._started = True  # the platform runs it: nothing to do here
            await self.app(scope, receive, send)
            return
        if not self._started and not await self._start():
            # No traceback and no half-built app: the error shape, and a hint to retry.
            await send_error(
                send,
                503,
                "dependency_unavailable",
                "The service could not start; try again shortly.",
                ((b"retry-after", b"5"),),
            )
            return
        await self.app(scope, receive, send)

    async def _start(self) -> bool:
        """Run the lifespan's startup; False when it failed (the reason is logged)."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._started:
                return True
            answered: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
            stop = self._stop = asyncio.Event()
            asked = False

            async def receive() -> Message:
                nonlocal asked
                if not asked:
                    asked = True
                    return {"type": "lifespan.startup"}
                # A platform freezes its instances without a word: only `aclose` gets here.
                await stop.wait()
                return {"type": "lifespan.shutdown"}

            async def send(message: Message) -> None:
                if not answered.done():
                    answered.set_result(message)

            scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
            app = self.app

            async def run_lifespan() -> None:
                await app(scope, receive, send)

            self._lifespan = asyncio.create_task(run_lifespan())
            pending: set[asyncio.Future[Any]] = {self._lifespan, answered}
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            message = answered.result() if answered.done() else None
            if message is None or message["type"] != "lifespan.startup.complete":
                # Startup failed (the app logged why); the next request tries again.
                self._lifespan.cancel()
                await asyncio.gather(self._lifespan, return_exceptions=True)
                self._lifespan = None
                logger.error("serverless.startup_failed")
                return False
            self._started = True
            return True

    async def aclose(self) -> None:
        """Run the lifespan's shutdown, if this wrapper started it (tests, local runs)."""
        if self._lifespan is None or self._stop is None:
            return
        self._stop.set()
        await self._lifespan
        self._lifespan = None
        self._started = False


def create_serverless_app(
    settings: Settings | None = None, *, require_servers: bool = True
) -> LazyLifespan:
    """The app for a serverless function: ingestion jobs off, and (unless `require_servers` is
    false, as for a local trial of the entry) refused on the embedded stores."""
    settings = settings or get_settings()
    if require_servers:
        check_serverless_settings(settings)
    settings = settings.model_copy(update={"ingest_jobs_enabled": False})
    return LazyLifespan(create_app(settings))
