"""Dense embeddings from any OpenAI-compatible `/v1/embeddings` endpoint."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import openai
import structlog
from openai import AsyncOpenAI

from bookchat.providers.embeddings.base import EmbeddingsUnavailable

logger = structlog.get_logger(__name__)


OPENAI_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
OPENAI_MAX_INPUT_TOKENS = 8191
_PROBE_TEXT = "dimension probe"


def translate_embeddings_error(exc: openai.OpenAIError) -> EmbeddingsUnavailable:
    """Map an SDK error to a 503: without vectors nothing can be indexed (and a question is
    searched with BM25 alone). The message says what went wrong, never what the vendor said."""
    status = getattr(exc, "status_code", None)

    def failed(message: str, reason: str) -> EmbeddingsUnavailable:
        return EmbeddingsUnavailable(message, reason=reason, status=status)

    if isinstance(exc, openai.APITimeoutError):
        return failed("The embeddings service took too long to answer.", "timeout")
    if isinstance(exc, openai.RateLimitError):
        return failed(
            "The embeddings service is rate limiting us; try again shortly.", "rate_limited"
        )
    if isinstance(exc, openai.APIConnectionError):
        return failed("The embeddings service cannot be reached right now.", "unreachable")
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return failed(
            "The embeddings service refused our credentials; the operator must fix OPENAI_API_KEY.",
            "credentials",
        )
    if isinstance(exc, openai.APIStatusError) and exc.status_code >= 500:
        return failed("The embeddings service is failing right now.", "server_error")
    return failed("The embeddings service rejected our request.", "rejected")


class OpenAIEmbedder:
    """`Embedder` on any OpenAI-compatible `/v1/embeddings` endpoint, through the official SDK.

    Texts go in batches of `batch_size`, at most `concurrency` requests at a time; vectors come
    back in input order. Timeouts and retries are the SDK's; its errors become
    `EmbeddingsUnavailable` (503). A failed call is logged at debug level only: the caller
    decides how loud it is (a search falls back to BM25 and logs once per outage, a write
    answers 503).
    """

    provider = "openai"

    def __init__(
        self,
        *,
        model: str = "text-embedding-3-small",
        api_key: str | None,
        base_url: str | None = None,
        dimension: int | None = None,
        batch_size: int = 128,
        timeout: float = 60.0,
        max_retries: int = 2,
        max_input_tokens: int = OPENAI_MAX_INPUT_TOKENS,
        concurrency: int = 4,
    ) -> None:
        if batch_size < 1 or concurrency < 1:
            raise ValueError("batch_size and concurrency must be at least 1")
        if dimension is not None and dimension < 1:
            raise ValueError("dimension must be positive")
        self.model = model
        self.name = f"openai:{model}"
        self.max_input_tokens = max_input_tokens
        self._batch_size = batch_size
        self._concurrency = concurrency
        # Only the text-embedding-3 family can shorten its vectors on request.
        self._dimensions_param = dimension if model.startswith("text-embedding-3") else None
        self._dimension = dimension or OPENAI_DIMENSIONS.get(model)
        # Local servers (Ollama, vLLM) take any key; the SDK insists on a non-empty one.
        self._client = AsyncOpenAI(
            api_key=api_key or "not-needed",
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
        )

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            raise RuntimeError(
                f"the dimension of {self.name} is not known yet: await ensure_ready()"
            )
        return self._dimension

    def count_tokens(self, text: str) -> int:
        """An upper bound without the model's tokenizer (none ships offline): its UTF-8 bytes.
        OpenAI's byte-level BPE never makes more tokens than that, and 8,191 of them is far
        more than a chunk holds."""
        return len(text.encode("utf-8"))

    async def ensure_ready(self) -> None:
        """Learn the dimension with one short request when neither settings nor model tell it."""
        if self._dimension is None:
            await self._embed_batch([_PROBE_TEXT])

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in input order; no request for an empty list."""
        if not texts:
            return []
        batches = [
            list(texts[start : start + self._batch_size])
            for start in range(0, len(texts), self._batch_size)
        ]
        if len(batches) == 1:
            return await self._embed_batch(batches[0])
        semaphore = asyncio.Semaphore(self._concurrency)

        async def run(batch: list[str]) -> list[list[float]]:
            async with semaphore:
                return await self._embed_batch(batch)

        tasks = [asyncio.ensure_future(run(batch)) for batch in batches]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            # One failed batch fails the call: stop sending the others.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [vector for batch_vectors in results for vector in batch_vectors]

    async def embed_query(self, text: str) -> list[float]:
        return (await self._embed_batch([text]))[0]

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        started = time.perf_counter()
        request: dict[str, Any] = {"model": self.model, "input": batch}
        if self._dimensions_param is not None:
            request["dimensions"] = self._dimensions_param
        try:
            response = await self._client.embeddings.create(**request)
        except openai.OpenAIError as exc:
            logger.debug(
                "embeddings.call_failed",
                provider=self.provider,
                model=self.model,
                error_type=type(exc).__name__,
                status=getattr(exc, "status_code", None),
                latency_ms=round((time.perf_counter() - started) * 1000, 1),
            )
            raise translate_embeddings_error(exc) from exc
        except ValueError as exc:  # the SDK's "No embedding data received"
            raise self._bad_response("no vectors") from exc
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != len(batch):
            raise self._bad_response(f"{len(data)} vectors for {len(batch)} texts")
        vectors = [list(item.embedding) for item in data]
        sizes = {len(vector) for vector in vectors}
        if self._dimension is None and len(sizes) == 1:
            self._dimension = sizes.pop()
            logger.info("embeddings.dimension_learned", model=self.model, dimension=self._dimension)
        elif sizes != {self._dimension}:
            raise self._bad_response(f"vectors of size {sorted(sizes)}, expected {self._dimension}")
        logger.debug(
            "embeddings.call",
            provider=self.provider,
            model=self.model,
            texts=len(batch),
            tokens=response.usage.total_tokens if response.usage else None,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return vectors

    def _bad_response(self, what: str) -> EmbeddingsUnavailable:
        logger.debug("embeddings.bad_response", provider=self.provider, model=self.model, what=what)
        return EmbeddingsUnavailable(
            "The embeddings service returned an unusable response.", reason="bad_response"
        )

    async def aclose(self) -> None:
        await self._client.close()
