"""The application factory and the lifespan that builds every long-lived object."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import APIRouter, Depends, FastAPI

from bookchat import __version__, chatkit
from bookchat.accounts.router import router as accounts_router
from bookchat.books.cors import book_origins
from bookchat.books.dependencies import book_in_path
from bookchat.books.router import router as books_router
from bookchat.chapters.router import router as chapters_router
from bookchat.chat.router import router as chat_router
from bookchat.chat.router import seed_router as seed_chat_router
from bookchat.container import Container, open_container
from bookchat.content.router import router as content_router
from bookchat.core.apidocs import add_api_docs
from bookchat.core.config import Environment, Settings, get_settings
from bookchat.core.cors import ScopedCORSMiddleware
from bookchat.core.errors import AppError, install_error_handlers
from bookchat.core.logging import configure_logging
from bookchat.core.metrics import Metrics, MetricsMiddleware
from bookchat.core.middleware import (
    BodySizeLimitMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
)
from bookchat.core.migrations import warn_if_not_migrated
from bookchat.core.nul import RejectNulMiddleware, install_nul_handler
from bookchat.core.openapi import error_responses, use_400_for_validation
from bookchat.core.routing import install_full_allow
from bookchat.health.router import router as health_router
from bookchat.health.router import seed_router as seed_health_router
from bookchat.health.service import database_profile
from bookchat.insights.router import router as insights_router
from bookchat.metrics.router import router as metrics_router
from bookchat.web.router import router as web_router

logger = structlog.get_logger(__name__)

API_PREFIX = "/api/v1"
API_ALIAS_PREFIX = "/api"  # the same routes for the seeds' clients, hidden from the schema
# One book's routes: the unscoped `/api/v1/chat`... serve the default book.
BOOK_PREFIX = f"{API_PREFIX}/books/{{book}}"

# Requests that carry book files (the default book's and every book's ingest): limited by
# MAX_UPLOAD_BYTES instead of MAX_REQUEST_BYTES.
UPLOAD_PATHS = re.compile(r"/api(?:/v1(?:/books/[^/]+)?)?/content/ingest")


def api_router() -> APIRouter:
    """Every `/api/v1` route (also served under `/api` for the seeds' clients)."""
    router = APIRouter()
    router.include_router(accounts_router)
    router.include_router(chat_router)
    router.include_router(content_router)
    router.include_router(health_router)
    router.include_router(chapters_router)
    router.include_router(insights_router)
    router.include_router(books_router)
    for extra in chatkit_routers():
        router.include_router(extra)
    return router


def book_router() -> APIRouter:
    """The routes that serve one book, as `/api/v1/books/{book}/...` (`books/dependencies.py`
    tells each route which book; an unknown one is a 404)."""
    router = APIRouter(dependencies=[Depends(book_in_path)])
    # Each of them answers 404 for a slug no book has.
    for scoped in (chat_router, content_router, chapters_router, insights_router):
        router.include_router(scoped, responses=error_responses(404))
    for extra in chatkit_routers():
        router.include_router(extra, responses=error_responses(404))
    return router


def chatkit_routers() -> list[APIRouter]:
    """The ChatKit route when its SDK (the `chatkit` extra) is installed; else none."""
    if not chatkit.available():
        return []
    from bookchat.chatkit.router import router

    return [router]


async def log_profile(container: Container) -> None:
    """One line per part saying which profile it runs in."""
    settings = container.settings
    chat = container.providers.chat
    embedder = container.providers.embedder
    database = database_profile(settings.database_url.get_secret_value())
    logger.info("profile.database", profile=database)
    logger.info("profile.llm", provider=chat.provider, model=chat.model, mode=chat.mode)
    if chat.provider == "anthropic":
        # Anthropic offers no embeddings: say which embedder retrieval uses instead.
        logger.info(
            "profile.embeddings",
            llm_provider=chat.provider,
            embedder=embedder.name if embedder else "none (BM25 only)",
            chosen_by=f"EMBEDDINGS_PROVIDER={settings.embeddings_provider.value}",
        )
    logger.info(
        "profile.index",
        mode=container.index.mode,
        location=container.index.location,
        collection=container.index.collection,
        points=await container.index.count(),
    )
    logger.info(
        "profile.retrieval",
        retrieval=container.retriever.name,
        embedder=embedder.name if embedder else "none (BM25 only)",
    )
    logger.info(
        "profile.limits_and_cache",
        profile=container.limiter.profile,
        cache=container.cache.profile,
    )
    if not settings.metrics_enabled:
        logger.info("profile.metrics", metrics="off")
    elif settings.metrics_token is None and settings.environment is Environment.PRODUCTION:
        # Counts and route names only, no secrets; still, not everyone's business.
        logger.warning(
            "profile.metrics_public",
            hint="set METRICS_TOKEN or keep /metrics off the public network",
        )
    else:
        logger.info("profile.metrics", protected=settings.metrics_token is not None)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for these settings (the environment's by default)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format.value)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with open_container(settings, metrics=metrics) as container:
                app.state.container = container
                await log_profile(container)
                await warn_if_not_migrated(container.engine)
                yield
        except AppError as exc:
            # A configuration problem or an unreachable store: one clear line, not a traceback.
            logger.error("startup.failed", reason=str(exc))
            raise

    app = FastAPI(
        title="bookchat",
        version=__version__,
        summary=f"Chat with the textbook {settings.book_title!r}.",
        lifespan=lifespan,
        # Served by add_api_docs: pinned assets with integrity hashes, and a CSP.
        docs_url=None,
        redoc_url=None,
    )
    add_api_docs(app)
    install_error_handlers(app)
    install_nul_handler(app)
    use_400_for_validation(app)
    api = api_router()
    app.include_router(api, prefix=API_PREFIX)
    app.include_router(api, prefix=API_ALIAS_PREFIX, include_in_schema=False)
    app.include_router(book_router(), prefix=BOOK_PREFIX)
    # The seeds' contracts at the root, kept for existing front ends.
    app.include_router(seed_chat_router)
    app.include_router(seed_health_router)
    app.include_router(metrics_router)
    app.include_router(web_router)  # the demo page and /widget.js, outside the OpenAPI schema
    for extra in chatkit_routers():  # POST /chatkit, where ChatKit's examples point
        app.include_router(extra, include_in_schema=False)
    install_full_allow(
        app,
        [
            accounts_router,
            chat_router,
            content_router,
            health_router,
            chapters_router,
            insights_router,
            books_router,
            seed_chat_router,
            seed_health_router,
            metrics_router,
            web_router,
            *chatkit_routers(),
        ],
    )
    # Each add_middleware wraps the ones before it, so the order below is innermost first.
    # Outermost to innermost: Metrics -> SecurityHeaders -> CORS -> RequestContext -> RejectNul
    # -> BodySizeLimit -> app.
    # - Metrics outermost: its timing and status cover every other layer's work and answers.
    # - RejectNul and BodySizeLimit inside RequestContext: their 400/413 carry the request id.
    # - CORS outside both: a browser can read the 413s, 429s and the safe 500 made inside.
    # - SecurityHeaders outermost: every response, CORS preflight answers included.
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        upload_max_bytes=settings.max_upload_bytes,
        upload_paths=UPLOAD_PATHS,
    )
    app.add_middleware(RejectNulMiddleware)
    app.add_middleware(RequestContextMiddleware)
    # CORS_ORIGINS everywhere; a book's routes (`/api/v1/books/{slug}/...`) also allow the
    # book's own `cors_origins` (and no other book's).
    app.add_middleware(
        ScopedCORSMiddleware,
        allow_origins=settings.cors_origins,
        extra_origins=book_origins(f"{API_PREFIX}/books/"),
        allow_credentials=settings.cors_allow_credentials,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID", "X-Admin-Key"],
        expose_headers=["X-Request-ID", "Retry-After"],
        max_age=600,
    )
    app.add_middleware(SecurityHeadersMiddleware)
    if settings.metrics_enabled:
        app.add_middleware(
            MetricsMiddleware,
            metrics=metrics,
            prefixes=(BOOK_PREFIX, API_PREFIX, API_ALIAS_PREFIX, ""),
        )
    return app
