"""A fake Anthropic Messages API on a loopback port, for the real ``anthropic`` SDK.

It shares the fake OpenAI server's machinery (uvicorn in a thread, recorded requests, injected
failures, hangs and cut streams, retired connections between tests) and speaks Anthropic's
wire format instead: ``POST /v1/messages`` answered as one JSON message or as the server-sent
events of a streamed one (``message_start``, ``content_block_start``, ``content_block_delta``
with ``citations_delta`` and ``text_delta``, ``content_block_stop``, ``message_delta`` with
the ``stop_reason`` and usage, ``message_stop``), and errors as Anthropic writes them::

    with FakeAnthropicServer() as fake:
        client = anthropic.AsyncAnthropic(base_url=fake.url, api_key="test")
        fake.blocks = [Block("Nodes talk over topics", (Cite(0),)), Block(".")]
        ...
        assert fake.search_results()[0]["source"] == "https://example.org/book/nodes"

An answer is a list of text blocks (`Block`), each with the citations (`Cite`) of one of the
request's search results that it carries. Without `blocks`, the answer is one block of the
`reply` text, followed, when the request has search results, by a block that cites the first
one. Prompt caching is played out: the prefix up to the last ``cache_control`` breakpoint is
written to the cache the first time it is seen and read from it afterwards, and ``usage``
says so.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tests.fakes.openai_server import (
    FakeOpenAIServer,
    ReplyFn,
    Send,
    _Call,
    _send_json,
    split_tokens,
)

__all__ = ["Block", "Cite", "FakeAnthropicServer", "default_answer", "openai_shaped"]

DEFAULT_MODEL = "claude-haiku-4-5"
_message_ids = itertools.count(1)
_NO_STOP = "<no stop>"
_EMPTY = -1  # `error_stream_next` queue entry of `empty_stream_next`

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class Cite:
    """A citation of the request's search result number `result` (0-based, in request order)."""

    result: int = 0
    # What the citation quotes; None: the result's first content block, as Claude quotes it.
    cited_text: str | None = None
    # The source it names; None: the result's own.
    source: str | None = None


@dataclass(frozen=True)
class Block:
    """One text block of the answer and the citations it carries."""

    text: str
    cites: tuple[Cite, ...] = ()


BlocksFn = Callable[[dict[str, Any]], Sequence[Block]]


def _text_of(content: Any) -> str:
    """The text blocks of a message's content (a string or a list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            b["text"] for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def search_results_of(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's `search_result` blocks, in the order citations count them."""
    return [
        block
        for message in request.get("messages") or []
        if isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, dict) and block.get("type") == "search_result"
    ]


def system_of(request: dict[str, Any]) -> str:
    """The request's system prompt (a string or a list of text blocks)."""
    return _text_of(request.get("system"))


def openai_shaped(request: dict[str, Any]) -> dict[str, Any]:
    """The request as an OpenAI chat request (system message first, string contents), so the
    `reply` functions written for the fake OpenAI server read it too."""
    messages = [{"role": "system", "content": system_of(request)}] if request.get("system") else []
    messages += [
        {"role": m["role"], "content": _text_of(m.get("content"))}
        for m in request.get("messages") or []
    ]
    return {**request, "messages": messages}


def default_answer(request: dict[str, Any]) -> str:
    """``"Fake answer to: <text of the last user message>"``."""
    messages = request.get("messages") or []
    last = messages[-1].get("content") if messages else ""
    return f"Fake answer to: {_text_of(last)}"


def _words(text: str) -> int:
    return len(text.split())


def _request_words(request: dict[str, Any]) -> int:
    words = _words(system_of(request))
    for message in request.get("messages") or []:
        words += _words(_text_of(message.get("content")))
    for result in search_results_of(request):
        words += sum(_words(b.get("text", "")) for b in result.get("content", []))
    return words


class FakeAnthropicServer(FakeOpenAIServer):
    """Fake Anthropic Messages API. `blocks` (a list or a function of the request) is the next
    answers' content; `reply` its text when `blocks` is None. The fault injection of
    `FakeOpenAIServer` applies (`fail_next(529)`, `hang_next`, `cut_stream_next`);
    `finish_next` takes a `stop_reason` (`"end_turn"`, `"max_tokens"`..., None for a stream
    without `message_delta`), and `error_stream_next` sends an `error` event mid-stream."""

    def __init__(self, *, reply: str | ReplyFn = default_answer) -> None:
        super().__init__(reply=reply)
        self.blocks: Sequence[Block] | BlocksFn | None = None
        self._stream_errors: deque[int] = deque()
        self._cached: set[str] = set()
        self._cache_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """What to pass as ``AsyncAnthropic(base_url=...)`` (the SDK adds ``/v1``)."""
        return self.url

    def reset(self, *, retire_connections: bool = False) -> None:
        super().reset(retire_connections=retire_connections)
        self.blocks = None
        with self._lock:
            self._stream_errors.clear()
        with self._cache_lock:
            self._cached.clear()

    # ----------------------------------------------------------------- test API

    def messages_requests(self) -> list[dict[str, Any]]:
        """JSON bodies of the ``POST /v1/messages`` requests received, in order."""
        with self._lock:
            return [
                r.json for r in self.requests if r.method == "POST" and r.path == "/v1/messages"
            ]

    def search_results(self, request: int = -1) -> list[dict[str, Any]]:
        """The search results of the `request`-th messages request (default: the last)."""
        return search_results_of(self.messages_requests()[request])

    def finish_next(self, reason: str | None, *, times: int = 1) -> None:
        """End the next ``times`` answers with this `stop_reason`; None: a streamed answer has
        no ``message_delta`` (its text, then ``message_stop``), a plain one ``null``."""
        with self._lock:
            self._finishes.extend([_NO_STOP if reason is None else reason] * times)

    def empty_stream_next(self) -> None:
        """The next streamed answer is a stream that ends, cleanly, before any event (as a proxy
        that drops the body might answer)."""
        self.error_stream_next(after_tokens=_EMPTY)

    def error_stream_next(self, *, after_tokens: int = 2) -> None:
        """The next streamed answer sends ``after_tokens`` text deltas, then an ``error`` event
        (``overloaded_error``), as the API does when it fails mid-answer."""
        with self._lock:
            self._stream_errors.append(after_tokens)

    # ----------------------------------------------------------------- the API

    async def _send_error(
        self,
        send: Send,
        status: int,
        message: str,
        extra_headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        body = {"type": "error", "error": {"type": kind, "message": message}}
        await _send_json(send, status, body, extra_headers)

    async def _route(self, call: _Call, method: str, path: str, body: Any, send: Send) -> None:
        if path != "/v1/messages" or method != "POST":
            await self._send_error(send, 404, f"Unknown request URL: {method} {path}")
            return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            await self._send_error(send, 400, "messages: Field required")
            return
        if not isinstance(body.get("max_tokens"), int):
            await self._send_error(send, 400, "max_tokens: Field required")
            return
        with self._lock:
            reason = self._finishes.popleft() if self._finishes else "end_turn"
        stop = None if reason == _NO_STOP else reason
        blocks = self._answer(body)
        results = search_results_of(body)
        content = [self._text_block(block, results) for block in blocks]
        usage = self._usage(body, sum(len(split_tokens(b.text)) for b in blocks))
        model = str(body.get("model") or DEFAULT_MODEL)
        message_id = f"msg_fake{next(_message_ids):012d}"
        if body.get("stream"):
            await self._stream(call, send, message_id, model, content, usage, stop)
            return
        await call.sleep(self.ttft)
        await _send_json(
            send,
            200,
            {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": usage,
            },
            [(b"request-id", f"req_{message_id}".encode())],
        )

    def _answer(self, request: dict[str, Any]) -> Sequence[Block]:
        blocks = self.blocks
        if blocks is not None:
            return blocks(request) if callable(blocks) else blocks
        answer = [Block(self._reply_text(request))]
        if search_results_of(request):
            answer += [Block(" The book explains it", (Cite(0),)), Block(".")]
        return answer

    def _text_block(self, block: Block, results: list[dict[str, Any]]) -> dict[str, Any]:
        citations = []
        for cite in block.cites:
            result = results[cite.result]
            first = result["content"][0]["text"]
            citations.append(
                {
                    "type": "search_result_location",
                    "cited_text": first if cite.cited_text is None else cite.cited_text,
                    "search_result_index": cite.result,
                    "source": result["source"] if cite.source is None else cite.source,
                    "title": result.get("title"),
                    "start_block_index": 0,
                    "end_block_index": 1,
                }
            )
        return {"type": "text", "text": block.text, "citations": citations or None}

    def _usage(self, request: dict[str, Any], output_tokens: int) -> dict[str, Any]:
        """Input tokens (words), with the prefix up to the last cache breakpoint written to the
        cache the first time and read from it afterwards."""
        total = _request_words(request)
        prefix = _cached_prefix(request)
        written = read = 0
        if prefix is not None:
            key, words = prefix
            with self._cache_lock:
                hit = key in self._cached
                self._cached.add(key)
            written, read = (0, words) if hit else (words, 0)
        return {
            "input_tokens": total - written - read,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read,
        }

    async def _stream(
        self,
        call: _Call,
        send: Send,
        message_id: str,
        model: str,
        content: list[dict[str, Any]],
        usage: dict[str, Any],
        stop: str | None,
    ) -> None:
        with self._lock:
            cut_after = self._cuts.popleft() if self._cuts else None
            error_after = self._stream_errors.popleft() if self._stream_errors else None
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"request-id", f"req_{message_id}".encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if error_after == _EMPTY:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return

        async def emit(name: str, data: dict[str, Any]) -> None:
            chunk = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        await call.sleep(self.ttft)
        start_usage = {**usage, "output_tokens": 1}
        await emit(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        )
        await emit("ping", {"type": "ping"})
        sent = 0
        for index, block in enumerate(content):
            citations = block["citations"] or []
            start = {"type": "text", "text": "", **({"citations": []} if citations else {})}
            await emit(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
            for citation in citations:
                delta = {"type": "citations_delta", "citation": citation}
                await emit(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            for token in split_tokens(block["text"]):
                if cut_after is not None and sent >= cut_after:
                    return  # uvicorn closes the connection: the response is incomplete
                if error_after is not None and sent >= error_after:
                    error = {"type": "overloaded_error", "message": "Overloaded"}
                    await emit("error", {"type": "error", "error": error})
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                if sent:
                    await call.sleep(self.token_delay)
                else:
                    with self._lock:
                        self._first_tokens.append(time.time())
                sent += 1
                delta = {"type": "text_delta", "text": token}
                await emit(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            await emit("content_block_stop", {"type": "content_block_stop", "index": index})
        if cut_after is not None:
            return
        if stop is not None:
            await emit(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": usage["output_tokens"]},
                },
            )
        await emit("message_stop", {"type": "message_stop"})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _cached_prefix(request: dict[str, Any]) -> tuple[str, int] | None:
    """The key and the size (words) of the prefix up to the request's last cache breakpoint,
    in the order the API reads it (system, then messages); None without a breakpoint."""
    parts: list[Any] = [request.get("model")]
    words = 0
    found: tuple[str, int] | None = None

    def visit(block: dict[str, Any]) -> None:
        nonlocal words, found
        parts.append(block)
        words += _words(block.get("text", ""))
        words += sum(_words(b.get("text", "")) for b in block.get("content", []) or [])
        if block.get("cache_control"):
            digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
            found = (digest, words)

    system = request.get("system")
    for block in system if isinstance(system, list) else []:
        visit(block)
    for message in request.get("messages") or []:
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            visit(block)
    return found
