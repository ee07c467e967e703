"""Chat on any OpenAI-compatible endpoint (OpenAI, Ollama, vLLM, OpenRouter, Groq...)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

import openai
import structlog
from openai import AsyncOpenAI

from bookchat.core.errors import AppError, LLMError, LLMTimeout, LLMUnavailable
from bookchat.providers.base import AnswerMode, ChatPrompt, Completion, Finish, Usage
from bookchat.providers.vendor_calls import log_call_failure, vendor_retry_after

logger = structlog.get_logger(__name__)


def translate_openai_error(exc: openai.OpenAIError) -> AppError:
    """Map an SDK error to the project's error, keeping the vendor's text out of the response."""
    if isinstance(exc, openai.APITimeoutError):
        return LLMTimeout()
    if isinstance(exc, openai.RateLimitError):
        return LLMUnavailable(
            "The language model is rate limiting us; try again shortly.",
            headers=vendor_retry_after(exc.response.headers),
        )
    if isinstance(exc, openai.APIConnectionError):
        return LLMUnavailable("The language model cannot be reached right now.")
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return LLMUnavailable(
            "The language model refused our credentials; the operator must fix OPENAI_API_KEY."
        )
    if isinstance(exc, openai.APIStatusError) and exc.status_code >= 500:
        return LLMUnavailable(
            "The language model service is failing right now.",
            headers=vendor_retry_after(exc.response.headers),
        )
    return LLMError()


class OpenAIChatModel:
    """`ChatModel` on the official `openai` SDK, with the SDK's own timeout and retries."""

    provider = "openai"
    mode: AnswerMode = "generative"
    takes_documents = False

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        self.model = model
        # Local servers (Ollama, vLLM) take any key; the SDK insists on a non-empty one.
        self._client = AsyncOpenAI(
            api_key=api_key or "not-needed",
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
        )

    def _request(self, prompt: ChatPrompt) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in prompt.messages],
            "temperature": prompt.temperature,
        }
        if prompt.max_tokens is not None:
            request["max_tokens"] = prompt.max_tokens
        return request

    async def complete(self, prompt: ChatPrompt) -> Completion:
        started = time.perf_counter()
        try:
            response = await self._client.chat.completions.create(**self._request(prompt))
        except openai.OpenAIError as exc:
            log_call_failure(provider=self.provider, model=self.model, exc=exc, started=started)
            raise translate_openai_error(exc) from exc
        choice = response.choices[0] if response.choices else None
        text = (choice.message.content if choice else None) or ""
        finish_reason = choice.finish_reason if choice else None
        usage = Usage(
            prompt_tokens=response.usage.prompt_tokens if response.usage else 0,
            completion_tokens=response.usage.completion_tokens if response.usage else 0,
        )
        logger.info(
            "llm.call",
            provider=self.provider,
            model=response.model or self.model,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            finish_reason=finish_reason,
            stream=False,
        )
        return Completion(
            text=text,
            model=response.model or self.model,
            usage=usage,
            finish_reason=finish_reason,
        )

    async def stream(self, prompt: ChatPrompt) -> AsyncGenerator[str | Finish | Usage]:
        started = time.perf_counter()
        pieces = 0
        usage: Usage | None = None
        # Set only by the model's final chunk: a stream that ends without it (a proxy or the
        # vendor dropped it, the body was cut cleanly) is not a whole answer.
        finish_reason: str | None = None
        try:
            stream = await self._client.chat.completions.create(
                **self._request(prompt), stream=True, stream_options={"include_usage": True}
            )
            async with stream:
                async for chunk in stream:
                    if chunk.usage is not None:
                        usage = Usage(
                            prompt_tokens=chunk.usage.prompt_tokens,
                            completion_tokens=chunk.usage.completion_tokens,
                        )
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    delta = choice.delta.content if choice.delta else None
                    if delta:
                        pieces += 1
                        yield delta
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
        except openai.OpenAIError as exc:
            log_call_failure(provider=self.provider, model=self.model, exc=exc, started=started)
            raise translate_openai_error(exc) from exc
        logger.info(
            "llm.call",
            provider=self.provider,
            model=self.model,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
            pieces=pieces,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            finish_reason=finish_reason,
            stream=True,
        )
        if finish_reason is not None:
            yield Finish(finish_reason)
        if usage is not None:
            yield usage

    async def aclose(self) -> None:
        await self._client.close()
