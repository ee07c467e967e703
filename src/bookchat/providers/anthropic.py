"""Chat on Anthropic's Messages API (Claude), with the model's own citations and prompt caching.

A prompt with sources (`ChatPrompt.sources` and `document_messages`) sends each passage as a
`search_result` block with citations enabled, ahead of the user message. Claude then cites
what it uses: every text block of its answer carries `search_result_location` citations
naming the passage and quoting it. Each citation is checked (`CitationCheck`): its quoted text
must be in the passage it names, else it is dropped and counted. The citations that pass
become `[n]` markers after the text they support, `n` being the passage's number, so the chat
renumbers and lists them exactly as it does any other model's answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import anthropic
import httpx2
import structlog
from anthropic import AsyncAnthropic
from anthropic.types import TextCitation

from bookchat.content.markdown import estimate_tokens
from bookchat.core.errors import AppError, LLMError, LLMTimeout, LLMUnavailable
from bookchat.providers.base import (
    FINISHED,
    SELECTION_TITLE,
    AnswerMode,
    ChatMessage,
    ChatPrompt,
    Completion,
    Finish,
    Usage,
)
from bookchat.providers.search_results import CitationCheck, CitationCounter, Markers
from bookchat.providers.vendor_calls import log_call_failure, vendor_retry_after

logger = structlog.get_logger(__name__)

ANTHROPIC_API_URL = "https://api.anthropic.com"
# Anthropic requires `max_tokens`; a call that sets none (none of ours does) gets this.
DEFAULT_MAX_TOKENS = 1_024
# The shortest prefix worth a cache breakpoint, in (estimated) tokens: Anthropic caches
# nothing shorter (1,024 tokens for most models, more for some), and a breakpoint on a
# shorter prefix only clutters the request.
CACHE_MIN_TOKENS = 1_024
_EPHEMERAL = {"type": "ephemeral"}

# How Claude's `stop_reason` reads as bookchat's finish: only `stop` is a whole answer.
STOP_REASONS = {
    "end_turn": FINISHED,
    "stop_sequence": FINISHED,
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
    "tool_use": "tool_calls",
}


def finish_reason(stop_reason: str | None) -> str | None:
    """Claude's `stop_reason` as a finish reason (None: the model did not say it ended)."""
    if stop_reason is None:
        return None
    return STOP_REASONS.get(stop_reason, stop_reason)


def translate_anthropic_error(exc: anthropic.AnthropicError | httpx2.HTTPError) -> AppError:
    """Map an SDK error to the project's error, keeping the vendor's text out of the response."""
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return LLMTimeout()
    # An error event in a stream comes with the stream's status (200): its kind is in the body.
    kind = _error_type(exc.body) if isinstance(exc, anthropic.APIStatusError) else None
    if isinstance(exc, anthropic.APIStatusError) and (
        exc.status_code == 429 or kind == "rate_limit_error"
    ):
        return LLMUnavailable(
            "The language model is rate limiting us; try again shortly.",
            headers=vendor_retry_after(exc.response.headers),
        )
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        return LLMUnavailable("The language model cannot be reached right now.")
    if isinstance(exc, anthropic.AuthenticationError | anthropic.PermissionDeniedError):
        return LLMUnavailable(
            "The language model refused our credentials; the operator must fix ANTHROPIC_API_KEY."
        )
    if isinstance(exc, anthropic.APIStatusError) and (
        exc.status_code >= 500 or kind in ("api_error", "overloaded_error")
    ):
        # 529 (overloaded) included.
        return LLMUnavailable(
            "The language model service is failing right now.",
            headers=vendor_retry_after(exc.response.headers),
        )
    return LLMError()


def _error_type(body: object) -> str | None:
    """The `error.type` of an Anthropic error body (`overloaded_error`...), if it has one."""
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) else None


class AnthropicChatModel:
    """`ChatModel` on the official `anthropic` SDK, with the SDK's own timeout and retries."""

    provider = "anthropic"
    mode: AnswerMode = "generative"
    takes_documents = True

    def __init__(
        self,
        *,
        model: str,
        # Required: without one the SDK would look for credentials of its own (environment,
        # profile files), past the settings.
        api_key: str,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        citations: CitationCounter | None = None,
    ) -> None:
        self.model = model
        self._citations = citations
        # Always an explicit URL: left None, the SDK reads ANTHROPIC_BASE_URL from the
        # environment itself, and takes an empty one (`env_file` copies `.env.example`'s
        # `ANTHROPIC_BASE_URL=`) for the URL. The settings are the one source.
        self._client = AsyncAnthropic(
            api_key=api_key,
            base_url=base_url or ANTHROPIC_API_URL,
            timeout=timeout,
            max_retries=max_retries,
        )

    def _request(self, prompt: ChatPrompt, check: CitationCheck) -> dict[str, Any]:
        # No `temperature`: the Messages API of the SDK this is built on (2.x) has none.
        documents = bool(check.sources)
        rendered = prompt.document_messages if documents and prompt.document_messages else None
        messages = rendered or prompt.messages
        results = check.search_results() if rendered else []
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": prompt.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": _turns(messages, results),
        }
        prefix = estimate_tokens(system)
        if system:
            block: dict[str, Any] = {"type": "text", "text": system}
            if prefix >= CACHE_MIN_TOKENS:
                block["cache_control"] = _EPHEMERAL
            request["system"] = [block]
        # A reader asks several questions about one selection: the rules and the selection are
        # the same each time, so they are cached once they are long enough to be.
        selection = len(check.sources) == 1 and check.sources[0].title == SELECTION_TITLE
        if results and selection:
            prefix += sum(estimate_tokens(s.text) for s in check.sources)
            if prefix >= CACHE_MIN_TOKENS:
                results[-1]["cache_control"] = _EPHEMERAL
        return request

    def _check(self, prompt: ChatPrompt) -> CitationCheck:
        sources = prompt.sources if prompt.document_messages else ()
        return CitationCheck(sources, self._citations)

    async def complete(self, prompt: ChatPrompt) -> Completion:
        started = time.perf_counter()
        check = self._check(prompt)
        try:
            message = await self._client.messages.create(**self._request(prompt, check))
        except anthropic.AnthropicError as exc:
            log_call_failure(provider=self.provider, model=self.model, exc=exc, started=started)
            raise translate_anthropic_error(exc) from exc
        markers = Markers(check)
        text = ""
        for block in message.content:
            if block.type == "text":
                text += markers.text(block.text) + markers.block_end(block.citations)
        text += markers.end()
        usage = _usage(message.usage)
        finish = finish_reason(message.stop_reason)
        self._log_call(started, usage, finish, check, stream=False)
        return Completion(
            text=text, model=message.model or self.model, usage=usage, finish_reason=finish
        )

    async def stream(self, prompt: ChatPrompt) -> AsyncGenerator[str | Finish | Usage]:
        started = time.perf_counter()
        check = self._check(prompt)
        markers = Markers(check)
        # The citations of the text block being received: its markers follow it when it ends.
        citations: list[TextCitation] = []
        usage: Usage | None = None
        finish: str | None = None
        begun = False
        try:
            async with self._client.messages.stream(**self._request(prompt, check)) as events:
                async for event in events:
                    if event.type == "message_start":
                        begun = True
                    elif event.type == "content_block_start":
                        citations = []
                    elif event.type == "content_block_delta":
                        if event.delta.type == "text_delta" and event.delta.text:
                            yield markers.text(event.delta.text)
                        elif event.delta.type == "citations_delta":
                            citations.append(event.delta.citation)
                    elif event.type == "content_block_stop":
                        if shown := markers.block_end(citations):
                            yield shown
                        citations = []
                # Set only by the model's `message_delta`: a stream that ends without it (the
                # body was cut cleanly) is not a whole answer. One that ended before even
                # `message_start` has no message at all.
                if begun:
                    snapshot = events.current_message_snapshot
                    finish = finish_reason(snapshot.stop_reason)
                    usage = _usage(snapshot.usage)
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            log_call_failure(provider=self.provider, model=self.model, exc=exc, started=started)
            raise translate_anthropic_error(exc) from exc
        self._log_call(started, usage, finish, check, stream=True)
        if rest := markers.end():
            yield rest
        if finish is not None:
            yield Finish(finish)
        if usage is not None:
            yield usage

    def _log_call(
        self,
        started: float,
        usage: Usage | None,
        finish: str | None,
        check: CitationCheck,
        *,
        stream: bool,
    ) -> None:
        logger.info(
            "llm.call",
            provider=self.provider,
            model=self.model,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            cache_read_tokens=usage.cache_read_tokens if usage else None,
            cache_write_tokens=usage.cache_write_tokens if usage else None,
            citations_kept=check.kept,
            citations_dropped=check.dropped,
            finish_reason=finish,
            stream=stream,
        )

    async def aclose(self) -> None:
        await self._client.close()


def _turns(messages: Sequence[ChatMessage], results: list[dict[str, Any]]) -> list[Any]:
    """The user and assistant messages as Anthropic turns (consecutive ones of a role merged,
    as the API wants them alternating), the search results at the head of the first user turn."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        block = {"type": "text", "text": message.content}
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"].append(block)
        else:
            turns.append({"role": message.role, "content": [block]})
    if results:
        first_user = next((t for t in turns if t["role"] == "user"), None)
        if first_user is None:
            first_user = {"role": "user", "content": []}
            turns.insert(0, first_user)
        first_user["content"][:0] = results
    return turns


def _usage(usage: Any) -> Usage:
    """The SDK's usage as ours: every input token counts as a prompt token, cached or not."""
    read = usage.cache_read_input_tokens or 0
    written = usage.cache_creation_input_tokens or 0
    return Usage(
        prompt_tokens=(usage.input_tokens or 0) + read + written,
        completion_tokens=usage.output_tokens or 0,
        cache_read_tokens=read,
        cache_write_tokens=written,
    )
