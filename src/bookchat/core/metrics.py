"""Prometheus metrics: what operators watch (traffic, model calls, retrieval, caches, limits).

Each app owns a `Metrics` (its own registry, so tests and several apps in one process never
share counters). When several worker processes serve one port, Prometheus would scrape a random
worker; `bookchat serve --workers N` therefore sets `PROMETHEUS_MULTIPROC_DIR`, every process
writes its values there, and `/metrics` adds them up across the workers.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

# Request latency from a fast health check to a long answer stream.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Model calls take from milliseconds (extractive, cached) to a minute (long chapters).
LLM_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)
RETRIEVAL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Requests no route answered (scanners, typos, CORS preflights): one label, not one per path.
UNMATCHED_ROUTE = "unmatched"


# The book the current request is about, set once its slug is known to name a book
# (`books.dependencies.current_book`; a task the request starts inherits it). Every metric
# carries it as its `book` label, "" for what concerns no book (sign-in, health); ingestion
# passes its book itself.
METRIC_BOOK: ContextVar[str] = ContextVar("bookchat_metric_book", default="")
# Where the request's own ASGI scope holds it for the HTTP metrics (not `request.state`: a
# lifespan state that is not copied per request would carry it to the next request).
BOOK_SCOPE_KEY = "bookchat.book"


def metric_book() -> str:
    """The `book` label of what is being recorded now."""
    return METRIC_BOOK.get()


def multiprocess_dir() -> str | None:
    """The shared folder of a multi-worker server, or None for a single process."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """Every metric the service records, in one registry."""

    def __init__(self) -> None:
        # No `*_created` series next to every counter: timestamps nobody graphs.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        if multiprocess_dir() is None:
            # Per-process facts (memory, CPU, open files, GC); meaningless summed over workers.
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                self.registry.register(collector)
        registry = self.registry
        self.http_requests = Counter(
            "bookchat_http_requests",
            "HTTP requests answered, by route template and status code.",
            ["book", "method", "route", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "bookchat_http_request_duration_seconds",
            "Time from request to the end of the response (a stream counts until its end).",
            ["book", "method", "route"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.llm_calls = Counter(
            "bookchat_llm_calls",
            "Language model calls by outcome: ok, cancelled (the reader left) or an error code.",
            ["book", "provider", "model", "outcome"],
            registry=registry,
        )
        self.llm_duration = Histogram(
            "bookchat_llm_call_duration_seconds",
            "Duration of a language model call (a stream until its last piece).",
            ["book", "provider", "model"],
            buckets=LLM_BUCKETS,
            registry=registry,
        )
        self.llm_first_token = Histogram(
            "bookchat_llm_first_token_seconds",
            "Time from a streamed call to its first piece of text.",
            ["book", "provider", "model"],
            buckets=LLM_BUCKETS,
            registry=registry,
        )
        self.llm_tokens = Counter(
            "bookchat_llm_tokens",
            "Tokens the language model reported, by kind: prompt, completion, and the prompt "
            "tokens read from (cache_read) or written to (cache_write) the vendor's cache.",
            ["book", "provider", "model", "kind"],
            registry=registry,
        )
        # Citations a model makes itself (Claude's search-result citations): `dropped` ones
        # quoted text that is not in the passage they name, and were not shown.
        self.llm_citations = Counter(
            "bookchat_llm_citations",
            "Citations the model made itself, by outcome: kept, or dropped (failed the check).",
            ["book", "provider", "model", "outcome"],
            registry=registry,
        )
        self.retrieval_duration = Histogram(
            "bookchat_retrieval_duration_seconds",
            "Time to find the passages for a query (embedding, BM25 encoding, index search).",
            ["book", "retrieval"],
            buckets=RETRIEVAL_BUCKETS,
            registry=registry,
        )
        # Degraded answers: the embeddings service failed and a query was searched with BM25
        # alone (retrieval/service.py). A rising count means worse retrieval, not errors.
        self.retrieval_dense_fallbacks = Counter(
            "bookchat_retrieval_dense_fallbacks",
            "Queries searched with BM25 alone because the embeddings service failed, by reason "
            "(timeout, rate_limited, unreachable, credentials, server_error, rejected, "
            "bad_response).",
            ["book", "reason"],
            registry=registry,
        )
        self.cache_lookups = Counter(
            "bookchat_cache_lookups",
            "Cache reads by cache (answer, embedding) and result (hit or miss).",
            ["book", "cache", "result"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "bookchat_rate_limited",
            "Requests refused with 429, by limit (chat, login, signup, generation).",
            ["book", "limit"],
            registry=registry,
        )
        # Token budgets (core/budget.py): what readers' model calls cost, and who was refused.
        self.budget_tokens = Counter(
            "bookchat_budget_tokens",
            "Model tokens charged to daily budgets, by call (chat, rewrite, personalize, "
            "translate) and reader (reader, anonymous).",
            ["book", "call", "reader"],
            registry=registry,
        )
        self.budget_refusals = Counter(
            "bookchat_budget_refusals",
            "Requests and model calls refused because the daily token budget was spent, by call "
            "and reader.",
            ["book", "call", "reader"],
            registry=registry,
        )
        # Answer quality (docs/operations.md, "Alerts"): a rising share of `no_context` answers
        # or of thumbs down means the book changed or retrieval degraded.
        self.answers = Counter(
            "bookchat_answers",
            "Answers stored, once each, by book, mode (rag, selected_text, no_context), status "
            "(complete, partial, error) and cached (true: replayed from the answer cache).",
            ["book", "mode", "status", "cached"],
            registry=registry,
        )
        self.feedback = Counter(
            "bookchat_feedback",
            "Readers' ratings of answers, by book and rating (up, down); a rating changed counts "
            "again, the same rating sent again does not.",
            ["book", "rating"],
            registry=registry,
        )
        self.ingested_documents = Counter(
            "bookchat_ingested_documents",
            "Documents through ingestion by book and outcome: added, updated, unchanged, "
            "removed, failed.",
            ["book", "outcome"],
            registry=registry,
        )
        self.ingested_chunks = Counter(
            "bookchat_ingested_chunks",
            "Chunks written to the database and the index by ingestion, by book.",
            ["book"],
            registry=registry,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (summed over workers if several)."""
        if multiprocess_dir() is not None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


class RouteTemplates:
    """The full path template of the route that answered a request.

    Labels use templates (`/api/v1/chat/history/{session_id}`), never raw paths: ids in paths
    would make one time series per session. FastAPI puts the matched route in the scope, but
    as the router declared it (`/chat/history/{session_id}`); the app mounts its routers under
    a few prefixes (`/api/v1`, `/api`, none), so the label is the prefix the path starts with
    whose remainder the route matches, followed by the declared template. (Asking FastAPI for
    every route's full template instead builds each route's dependencies a second time: tens
    of milliseconds at every app's first request.)
    """

    def __init__(self, prefixes: Sequence[str] = ("",)) -> None:
        # Longest first; a prefix may hold parameters of its own (`/api/v1/books/{book}`).
        self._prefixes = [
            (prefix, re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(prefix))))
            for prefix in sorted(set(prefixes), key=len, reverse=True)
        ]

    def label(self, scope: Scope) -> str:
        route = scope.get("route")
        # `path_format`: the template without convertors (`{id}`, not `{id:uuid}`).
        declared = getattr(route, "path_format", None) or getattr(route, "path", None)
        if not isinstance(declared, str):
            return UNMATCHED_ROUTE
        pattern: re.Pattern[str] | None = getattr(route, "path_regex", None)
        path = scope["path"]
        for prefix, prefix_pattern in self._prefixes:
            found = prefix_pattern.match(path)
            if found and (pattern is None or pattern.match(path[found.end() :])):
                return prefix + declared
        return declared


class MetricsMiddleware:
    """Counts every HTTP request and times it, labelled by route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics, prefixes: Sequence[str] = ("",)) -> None:
        self.app = app
        self.metrics = metrics
        self._templates = RouteTemplates(prefixes)

    def _route_label(self, scope: Scope) -> str:
        return self._templates.label(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # Unless a response starts, the server answers 500 (an exception escaped the app).
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        # Each request starts about no book; what it sets goes no further than its own end.
        book_token = METRIC_BOOK.set("")
        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            METRIC_BOOK.reset(book_token)
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
            route = self._route_label(scope)
            # The book the request was about, once a route resolved it (`books.dependencies`):
            # never an unknown slug from the path, which would make a series per guess.
            book = str(scope.get(BOOK_SCOPE_KEY, ""))
            self.metrics.http_requests.labels(book, method, route, str(status)).inc()
            self.metrics.http_duration.labels(book, method, route).observe(
                time.perf_counter() - started
            )
