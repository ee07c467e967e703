"""A chat model wrapped so every call is measured: latency, first token, tokens, outcome."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextlib import aclosing

from bookchat.core.errors import AppError
from bookchat.core.metrics import Metrics, metric_book
from bookchat.providers.base import AnswerMode, ChatModel, ChatPrompt, Completion, Finish, Usage


class MeasuredChatModel:
    """`ChatModel` that records each call of the model it wraps in `Metrics`."""

    def __init__(self, inner: ChatModel, metrics: Metrics) -> None:
        self.inner = inner
        self.provider: str = inner.provider
        self.model: str = inner.model
        self.mode: AnswerMode = inner.mode
        self.takes_documents: bool = inner.takes_documents
        self._metrics = metrics

    async def complete(self, prompt: ChatPrompt) -> Completion:
        started = time.perf_counter()
        outcome = "cancelled"
        try:
            completion = await self.inner.complete(prompt)
            outcome = "ok"
        except AppError as exc:
            outcome = exc.code
            raise
        finally:
            self._record(started, outcome)
        self._count_tokens(completion.usage)
        return completion

    async def stream(self, prompt: ChatPrompt) -> AsyncGenerator[str | Finish | Usage]:
        started = time.perf_counter()
        first_piece = True
        # Anything that ends the stream early without an error (the reader hung up, the
        # server is stopping) leaves "cancelled".
        outcome = "cancelled"
        try:
            async with aclosing(self.inner.stream(prompt)) as pieces:
                async for piece in pieces:
                    if isinstance(piece, Usage):
                        self._count_tokens(piece)
                    elif isinstance(piece, str) and first_piece:
                        first_piece = False
                        self._metrics.llm_first_token.labels(
                            metric_book(), self.provider, self.model
                        ).observe(time.perf_counter() - started)
                    yield piece
            outcome = "ok"
        except AppError as exc:
            outcome = exc.code
            raise
        finally:
            self._record(started, outcome)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def _record(self, started: float, outcome: str) -> None:
        self._metrics.llm_calls.labels(metric_book(), self.provider, self.model, outcome).inc()
        self._metrics.llm_duration.labels(metric_book(), self.provider, self.model).observe(
            time.perf_counter() - started
        )

    def _count_tokens(self, usage: Usage) -> None:
        tokens = self._metrics.llm_tokens
        book = metric_book()
        if usage.prompt_tokens:
            tokens.labels(book, self.provider, self.model, "prompt").inc(usage.prompt_tokens)
        if usage.completion_tokens:
            tokens.labels(book, self.provider, self.model, "completion").inc(
                usage.completion_tokens
            )
        if usage.cache_read_tokens:
            tokens.labels(book, self.provider, self.model, "cache_read").inc(
                usage.cache_read_tokens
            )
        if usage.cache_write_tokens:
            tokens.labels(book, self.provider, self.model, "cache_write").inc(
                usage.cache_write_tokens
            )
