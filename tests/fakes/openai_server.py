"""A fake OpenAI-compatible HTTP server for tests and benchmarks.

The fake is a small raw ASGI application served by ``uvicorn`` on ``127.0.0.1`` (random
port) in a background thread, so that the real ``openai`` SDK talks to it over a real
loopback socket::

    with FakeOpenAIServer(reply="Hello there") as fake:
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="test")
        ...
        assert fake.chat_requests()[0]["model"] == "gpt-4o-mini"

Supported endpoints: ``POST /v1/chat/completions`` (plain and streamed),
``POST /v1/embeddings`` (float and base64) and ``GET /v1/models[/<id>]``.
Faults can be injected with :meth:`FakeOpenAIServer.fail_next`,
:meth:`FakeOpenAIServer.hang_next` and :meth:`FakeOpenAIServer.cut_stream_next`; how an
answer ends (``finish_reason``, or no finish at all) with :meth:`FakeOpenAIServer.finish_next`.

For benchmarks run against the fake in another process, two control endpoints (not recorded
as requests, never faulted): ``GET /_fake/first_tokens`` lists the wall-clock times
(``time.time()``) at which each streamed answer's first content token was sent, in request
order, and ``POST /_fake/reset`` does what :meth:`FakeOpenAIServer.reset` does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import logging
import math
import re
import struct
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal, Self

import uvicorn

__all__ = [
    "DEFAULT_CHAT_MODEL",
    "DEFAULT_EMBEDDING_MODEL",
    "KNOWN_MODELS",
    "FakeOpenAIServer",
    "RecordedRequest",
    "default_reply",
    "fake_embedding",
    "split_tokens",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ReplyFn = Callable[[dict[str, Any]], str]

DEFAULT_CHAT_MODEL = "gpt-4o-mini"
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
KNOWN_MODELS: tuple[str, ...] = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "text-embedding-3-small",
    "text-embedding-3-large",
)

_THREAD_PREFIX = "FakeOpenAIServer"
_CUT_LOG_MESSAGE = "ASGI callable returned without completing response."
_TOKEN_RE = re.compile(r"\s*\S+\s*|\s+")
_WORD_RE = re.compile(r"\w+")
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0
# Server loop turns a reset between tests waits for: accept, read, parse, run the app, record.
_SETTLE_TURNS = 8
# Seconds after a reset during which a retired connection's requests are refused: a previous
# test's straggler arrives at once. Later, the kernel may have given its port to a new
# connection (the server closed the old one, so the client port is free at once).
RETIRED_FOR = 1.0
_server_ids = itertools.count(1)
# `finish_next(None)` queues this: the answer ends without the model's finish (no final chunk).
_NO_FINISH = "<no finish>"
_response_ids = itertools.count(1)

_ERROR_TYPES: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout", None),
    409: ("conflict", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", "service_unavailable"),
}


# --------------------------------------------------------------------------- helpers


def _content_text(content: Any) -> str:
    """Return the text of a message ``content`` (a string or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return " ".join(p for p in parts if isinstance(p, str) and p)
    return ""


def default_reply(request: dict[str, Any]) -> str:
    """Default reply: ``"Fake answer to: <content of the last user message>"``."""
    messages = request.get("messages") or []
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return f"Fake answer to: {_content_text(message.get('content'))}"
    return "Fake answer to: "


def split_tokens(text: str) -> list[str]:
    """Split ``text`` into word tokens keeping whitespace, so ``"".join(tokens) == text``."""
    return _TOKEN_RE.findall(text)


def _word_count(text: str) -> int:
    return len(text.split())


def _prompt_tokens(request: dict[str, Any]) -> int:
    messages = request.get("messages") or []
    return sum(
        _word_count(_content_text(m.get("content"))) for m in messages if isinstance(m, dict)
    )


def _bucket(word: str, dim: int) -> int:
    digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % dim


def fake_embedding(text: str, dim: int = 16) -> list[float]:
    """Deterministic unit-norm hashed bag-of-words embedding of ``text``.

    Every lower-cased word adds 1 to a hashed bucket, so texts sharing words have a
    higher cosine similarity than unrelated ones. Text without words gets a vector
    derived from the whole text (never the zero vector).
    """
    if dim <= 0:
        raise ValueError("dim must be positive")
    vector = [0.0] * dim
    words = _WORD_RE.findall(text.lower())
    for word in words or [text]:
        vector[_bucket(word, dim)] += 1.0
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


def _encode_base64(vector: list[float]) -> str:
    """Encode like the OpenAI API: little-endian float32 array, base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _error_body(status: int, message: str) -> dict[str, Any]:
    err_type, code = _ERROR_TYPES.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return {"error": {"message": message, "type": err_type, "param": None, "code": code}}


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send_json(
    send: Send,
    status: int,
    payload: Any,
    extra_headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_error(
    send: Send,
    status: int,
    message: str,
    extra_headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    await _send_json(send, status, _error_body(status, message), extra_headers)


class _CutStreamLogFilter(logging.Filter):
    """Silence uvicorn's error log for streams that the fake cuts on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.msg == _CUT_LOG_MESSAGE and (record.threadName or "").startswith(_THREAD_PREFIX)
        )


_LOG_FILTER = _CutStreamLogFilter()


def _install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if _LOG_FILTER not in logger.filters:
        logger.addFilter(_LOG_FILTER)


# --------------------------------------------------------------------------- data


@dataclass
class RecordedRequest:
    """One HTTP request received by the fake."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any


@dataclass(frozen=True)
class _Fault:
    kind: Literal["fail", "hang"]
    status: int = 0
    message: str = ""
    retry_after: float | None = None
    seconds: float = 0.0


# An outage of the embeddings endpoint alone (chat completions keep working): an error status,
# a hang before answering, or a "bad" answer whose vectors have the wrong size.
EmbeddingsOutage = Literal["429", "500", "503", "hang", "bad"]


class _Call:
    """Per-request state: lets sleeps end early on client disconnect or server stop."""

    def __init__(self, server: FakeOpenAIServer, receive: Receive) -> None:
        self._server = server
        self._receive = receive
        self._event: asyncio.Event | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.disconnected = False
        self.aborted = False

    def abort(self) -> None:
        """Wake up any sleep of this call (runs on the server loop)."""
        self.aborted = True
        if self._event is not None:
            self._event.set()

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                self.abort()
                return

    async def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds``; return False if interrupted (disconnect or server stop)."""
        if self.aborted:
            return False
        if seconds <= 0:
            return True
        if self._event is None:
            self._event = asyncio.Event()
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        try:
            async with asyncio.timeout(seconds):
                await self._event.wait()
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()


# --------------------------------------------------------------------------- server


class FakeOpenAIServer:
    """Fake OpenAI API on a loopback port, for the real ``openai`` SDK.

    ``reply``, ``split``, ``ttft``, ``token_delay`` and ``embedding_dim`` may be changed at any
    time.
    ``reply`` is either a fixed string or a callable receiving the request JSON.
    ``split`` cuts the reply into the content chunks of a streamed answer (word tokens, see
    :func:`split_tokens`, unless a test needs other cuts); ``completion_tokens`` counts them.
    ``ttft`` is the delay before the first streamed chunk after the headers, and
    ``token_delay`` the delay between content tokens; a non-streamed answer waits
    ``ttft + token_delay * (tokens - 1)`` in total.
    """

    def __init__(
        self,
        *,
        reply: str | ReplyFn = default_reply,
        ttft: float = 0.0,
        token_delay: float = 0.0,
        embedding_dim: int = 16,
    ) -> None:
        self._defaults = (reply, ttft, token_delay, embedding_dim)
        self.reply: str | ReplyFn = reply
        self.split: Callable[[str], list[str]] = split_tokens
        self.ttft = ttft
        self.token_delay = token_delay
        self.embedding_dim = embedding_dim
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._faults: deque[_Fault] = deque()
        self._cuts: deque[int] = deque()
        self._finishes: deque[str] = deque()
        self._embeddings_outage: EmbeddingsOutage | None = None
        self._embeddings_hang = 0.0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._port: int | None = None
        self._calls: set[_Call] = set()  # only touched on the server loop
        self._first_tokens: list[float] = []
        self._stopping = False  # only touched on the server loop
        self._thread_error: BaseException | None = None
        # Client connections (address, port) seen since connections were last retired, and
        # those retired then. A request that a previous test's client sent just before it went
        # away can reach this server after the next test started: it must not be recorded or
        # use up a fault the new test injected. Such a straggler comes at once; a retired
        # address seen later (`retired_for`) is a new connection the kernel gave its port to.
        self._clients: set[tuple[str, int]] = set()
        self._retired_clients: set[tuple[str, int]] = set()
        self._retired_at = 0.0
        self.retired_for = RETIRED_FOR

    # ----------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        """Whether the server is started."""
        return self._port is not None

    @property
    def port(self) -> int:
        """The loopback port the server listens on."""
        if self._port is None:
            raise RuntimeError("FakeOpenAIServer is not started")
        return self._port

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:12345``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass as ``AsyncOpenAI(base_url=...)``: ``http://127.0.0.1:<port>/v1``."""
        return f"{self.url}/v1"

    def start(self) -> Self:
        """Start serving in a background thread; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("FakeOpenAIServer is already started")
        _install_log_filter()
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            log_config=None,
            access_log=False,
            lifespan="off",
            interface="asgi3",
            proxy_headers=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=1,
            backlog=2048,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._stopping = False
        self._thread_error = None
        thread = threading.Thread(
            target=self._run,
            args=(server,),
            name=f"{_THREAD_PREFIX}-{next(_server_ids)}",
            daemon=True,
        )
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self._force_join()
                raise RuntimeError("FakeOpenAIServer failed to start") from self._thread_error
            time.sleep(0.002)
        self._port = int(server.servers[0].sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        """Stop the server and join its thread; in-flight sleeps/hangs are cut short."""
        thread, server, loop = self._thread, self._server, self._loop
        if thread is None or server is None:
            return
        server.should_exit = True
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop may already be closed
                loop.call_soon_threadsafe(self._abort_all)
        thread.join(_STOP_TIMEOUT)
        self._force_join()

    def _force_join(self) -> None:
        thread, server = self._thread, self._server
        if thread is not None and thread.is_alive() and server is not None:
            server.should_exit = True
            server.force_exit = True
            thread.join(_STOP_TIMEOUT)
        self._thread = None
        self._server = None
        self._loop = None
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, server: uvicorn.Server) -> None:
        try:
            with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
                runner.run(self._serve(server))
        except BaseException as exc:  # e.g. SystemExit when binding fails
            self._thread_error = exc

    async def _serve(self, server: uvicorn.Server) -> None:
        self._loop = asyncio.get_running_loop()
        await server.serve()

    def _abort_all(self) -> None:
        self._stopping = True
        for call in list(self._calls):
            call.abort()

    # ----------------------------------------------------------------- test API

    def chat_requests(self) -> list[dict[str, Any]]:
        """JSON bodies of the ``POST /v1/chat/completions`` requests received, in order."""
        with self._lock:
            return [
                r.json
                for r in self.requests
                if r.method == "POST" and r.path == "/v1/chat/completions"
            ]

    def embedding_requests(self) -> list[dict[str, Any]]:
        """JSON bodies of the ``POST /v1/embeddings`` requests received, in order."""
        with self._lock:
            return [
                r.json for r in self.requests if r.method == "POST" and r.path == "/v1/embeddings"
            ]

    def first_token_times(self) -> list[float]:
        """When (``time.time()``) each streamed answer's first content token was sent."""
        with self._lock:
            return list(self._first_tokens)

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        message: str = "injected failure",
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``times`` requests (any endpoint) with an OpenAI error body."""
        fault = _Fault("fail", status=status, message=message, retry_after=retry_after)
        with self._lock:
            self._faults.extend([fault] * times)

    def hang_next(self, seconds: float = 30.0, *, times: int = 1) -> None:
        """Make the next ``times`` requests wait ``seconds`` before being answered."""
        fault = _Fault("hang", seconds=seconds)
        with self._lock:
            self._faults.extend([fault] * times)

    def cut_stream_next(self, *, after_tokens: int = 2, times: int = 1) -> None:
        """Make the next ``times`` streamed chat answers drop the connection.

        The stream sends the role chunk and ``after_tokens`` content chunks, then the
        connection is closed without the final chunk and ``[DONE]``.
        """
        with self._lock:
            self._cuts.extend([after_tokens] * times)

    def finish_next(self, reason: str | None, *, times: int = 1) -> None:
        """End the next ``times`` chat answers (streamed or not) with this ``finish_reason``.

        ``"length"`` or ``"content_filter"`` say the answer was cut (the text is sent as usual).
        ``None`` ends it without the model's finish: a streamed answer sends its text, usage
        and ``[DONE]`` but no chunk with a ``finish_reason``, as a proxy that drops the final
        chunk would; a plain answer has ``"finish_reason": null``.
        """
        with self._lock:
            self._finishes.extend([_NO_FINISH if reason is None else reason] * times)

    def break_embeddings(self, outage: EmbeddingsOutage, *, hang_seconds: float = 30.0) -> None:
        """Make every embeddings request fail with `outage` until `heal_embeddings()` (or a
        reset); chat completions are not affected."""
        with self._lock:
            self._embeddings_outage = outage
            self._embeddings_hang = hang_seconds

    def heal_embeddings(self) -> None:
        """End an outage started by `break_embeddings`."""
        with self._lock:
            self._embeddings_outage = None

    async def _embeddings_failed(self, call: _Call, send: Send) -> bool:
        """Answer an embeddings request as the current outage would; False when there is none."""
        with self._lock:
            outage, hang = self._embeddings_outage, self._embeddings_hang
        if outage is None:
            return False
        if outage == "hang":
            if await call.sleep(hang):
                return False  # the outage lasted less than the client waited: answer normally
            if not call.disconnected:
                await _send_error(send, 503, "fake server is shutting down")
        elif outage == "bad":
            await _send_json(
                send,
                200,
                {
                    "object": "list",
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.5, 0.5]}],
                    "model": DEFAULT_EMBEDDING_MODEL,
                    "usage": {"prompt_tokens": 1, "total_tokens": 1},
                },
            )
        else:
            await _send_error(send, int(outage), "injected embeddings outage")
        return True

    def reset(self, *, retire_connections: bool = False) -> None:
        """Forget recorded requests and pending faults; restore constructor settings.

        With `retire_connections` (between tests), the connections opened so far are retired:
        what they still send is answered 503 and neither recorded nor given a fault meant for
        the next test. Without it, clients keep their connections (a reset mid-test).
        """
        if retire_connections:
            self._settle()
        with self._lock:
            if retire_connections:
                self._retired_clients = self._clients
                self._clients = set()
                self._retired_at = time.monotonic()
            self.requests.clear()
            self._faults.clear()
            self._cuts.clear()
            self._finishes.clear()
            self._embeddings_outage = None
            self._first_tokens.clear()
        self.reply, self.ttft, self.token_delay, self.embedding_dim = self._defaults
        self.split = split_tokens
        self.retired_for = RETIRED_FOR

    def _settle(self) -> None:
        """Let the server loop take in what clients already sent.

        A request a previous test wrote just before it ended may still sit in a socket buffer,
        on a connection nothing was recorded from yet. A few turns of the server loop accept
        it, read it and record it, so that retiring the connections then covers it too.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        async def turns() -> None:
            for _ in range(_SETTLE_TURNS):
                await asyncio.sleep(0)

        with contextlib.suppress(RuntimeError, TimeoutError):  # stopping: nothing to settle
            asyncio.run_coroutine_threadsafe(turns(), loop).result(_STOP_TIMEOUT)

    def _record(
        self, request: RecordedRequest, client: tuple[str, int] | None
    ) -> tuple[bool, _Fault | None]:
        """Record a request; (False, None) when it comes from a connection of before a reset."""
        with self._lock:
            if client is not None:
                if client in self._retired_clients:
                    if time.monotonic() - self._retired_at < self.retired_for:
                        return False, None
                    self._retired_clients.discard(client)  # its port, now a new connection's
                self._clients.add(client)
            self.requests.append(request)
            return True, self._faults.popleft() if self._faults else None

    def _pop_cut(self) -> int | None:
        with self._lock:
            return self._cuts.popleft() if self._cuts else None

    def _pop_finish(self) -> str | None:
        """The next answer's `finish_reason`: "stop" unless `finish_next` queued another."""
        with self._lock:
            reason = self._finishes.popleft() if self._finishes else "stop"
        return None if reason == _NO_FINISH else reason

    async def _send_error(
        self,
        send: Send,
        status: int,
        message: str,
        extra_headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        """An error answer in the vendor's shape (a fake of another vendor's API overrides it)."""
        await _send_error(send, status, message, extra_headers)

    def _reply_text(self, request: dict[str, Any]) -> str:
        reply = self.reply
        return reply if isinstance(reply, str) else reply(request)

    # ----------------------------------------------------------------- ASGI app

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = await _read_body(receive)
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        method: str = scope["method"]
        path: str = scope["path"].rstrip("/") or "/"
        if path.startswith("/_fake/") and await self._control(method, path, send):
            return
        client = scope.get("client")
        current, fault = self._record(
            RecordedRequest(method, path, headers, body), tuple(client) if client else None
        )
        if not current:
            await self._send_error(
                send, 503, "this connection was opened before the fake was reset"
            )
            return

        call = _Call(self, receive)
        if self._stopping:
            call.abort()
        self._calls.add(call)
        try:
            hung_up = (
                fault is not None and fault.kind == "hang" and not await call.sleep(fault.seconds)
            )
            if hung_up:
                if not call.disconnected:
                    await self._send_error(send, 503, "fake server is shutting down")
                return
            if fault is not None and fault.kind == "fail":
                extra: list[tuple[bytes, bytes]] = []
                if fault.retry_after is not None:
                    extra.append((b"retry-after", f"{fault.retry_after:g}".encode("ascii")))
                await self._send_error(send, fault.status, fault.message, extra)
                return
            if bad_json:
                await self._send_error(send, 400, "Request body is not valid JSON")
                return
            await self._route(call, method, path, body, send)
        finally:
            self._calls.discard(call)
            call.close()

    async def _control(self, method: str, path: str, send: Send) -> bool:
        """Answer a control request (benchmarks); False when it is not one."""
        if path == "/_fake/first_tokens" and method == "GET":
            await _send_json(send, 200, self.first_token_times())
        elif path == "/_fake/reset" and method == "POST":
            self.reset()
            await _send_json(send, 200, {"status": "ok"})
        else:
            return False
        return True

    async def _route(self, call: _Call, method: str, path: str, body: Any, send: Send) -> None:
        if path == "/v1/chat/completions":
            if method != "POST":
                await _send_error(send, 405, f"Method {method} not allowed")
            else:
                await self._chat(call, body, send)
        elif path == "/v1/embeddings":
            if method != "POST":
                await _send_error(send, 405, f"Method {method} not allowed")
            elif not await self._embeddings_failed(call, send):
                await self._embeddings(body, send)
        elif path == "/v1/models" and method == "GET":
            now = int(time.time())
            models = [_model_obj(m, now) for m in KNOWN_MODELS]
            await _send_json(send, 200, {"object": "list", "data": models})
        elif path.startswith("/v1/models/") and method == "GET":
            model = path.removeprefix("/v1/models/")
            if model in KNOWN_MODELS:
                await _send_json(send, 200, _model_obj(model, int(time.time())))
            else:
                await _send_error(send, 404, f"The model '{model}' does not exist")
        else:
            await _send_error(send, 404, f"Unknown request URL: {method} {path}")

    # ----------------------------------------------------------------- chat

    async def _chat(self, call: _Call, body: Any, send: Send) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            await _send_error(send, 400, "'messages' is a required property")
            return
        text = self._reply_text(body)
        tokens = self.split(text)
        model = str(body.get("model") or DEFAULT_CHAT_MODEL)
        prompt_tokens = _prompt_tokens(body)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens + len(tokens),
        }
        completion_id = f"chatcmpl-fake{next(_response_ids):012d}"
        created = int(time.time())
        finish = self._pop_finish()
        if body.get("stream"):
            stream_options = body.get("stream_options")
            include_usage = isinstance(stream_options, dict) and bool(
                stream_options.get("include_usage")
            )
            base = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
            }
            await self._stream_chat(
                call, send, base, tokens, usage if include_usage else None, finish
            )
            return

        await call.sleep(self.ttft + self.token_delay * max(0, len(tokens) - 1))
        await _send_json(
            send,
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
                "usage": usage,
            },
        )

    async def _stream_chat(
        self,
        call: _Call,
        send: Send,
        base: dict[str, Any],
        tokens: list[str],
        usage: dict[str, int] | None,
        finish: str | None = "stop",
    ) -> None:
        cut_after = self._pop_cut()
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

        async def emit(payload: Any) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            chunk = f"data: {data}\n\n".encode()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        def chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            out = {**base, "choices": [choice]}
            if usage is not None:
                out["usage"] = None
            return out

        await call.sleep(self.ttft)
        await emit(chunk({"role": "assistant", "content": "", "refusal": None}, None))
        for index, token in enumerate(tokens):
            if cut_after is not None and index >= cut_after:
                return  # uvicorn closes the connection: the response is incomplete
            if index:
                await call.sleep(self.token_delay)
            else:
                with self._lock:
                    self._first_tokens.append(time.time())
            await emit(chunk({"content": token}, None))
        if cut_after is not None:
            return
        if finish is not None:
            await emit(chunk({}, finish))
        if usage is not None:
            await emit({**base, "choices": [], "usage": usage})
        await emit("[DONE]")
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    # ----------------------------------------------------------------- embeddings

    async def _embeddings(self, body: Any, send: Send) -> None:
        if not isinstance(body, dict):
            await _send_error(send, 400, "Request body must be a JSON object")
            return
        texts = _embedding_inputs(body.get("input"))
        if texts is None:
            await _send_error(send, 400, "'input' must be a string or a list of strings")
            return
        dim = body.get("dimensions") or self.embedding_dim
        if not isinstance(dim, int) or dim <= 0:
            await _send_error(send, 400, "'dimensions' must be a positive integer")
            return
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            await _send_error(send, 400, "'encoding_format' must be 'float' or 'base64'")
            return
        data = []
        for index, text in enumerate(texts):
            vector = fake_embedding(text, dim)
            embedding: list[float] | str = (
                _encode_base64(vector) if encoding == "base64" else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(_word_count(t) for t in texts)
        await _send_json(
            send,
            200,
            {
                "object": "list",
                "data": data,
                "model": str(body.get("model") or DEFAULT_EMBEDDING_MODEL),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


def _embedding_inputs(value: Any) -> list[str] | None:
    """Normalise an embeddings ``input`` (string, strings, token ids) to a list of texts."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(v, int) for v in value):
        return [" ".join(map(str, value))]
    texts: list[str] = []
    for item in value:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, list) and all(isinstance(v, int) for v in item):
            texts.append(" ".join(map(str, item)))
        else:
            return None
    return texts


def _model_obj(model: str, created: int) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": created, "owned_by": "fake-openai"}
