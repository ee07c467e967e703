"""Tests of the fake OpenAI server, driven through the real ``openai.AsyncOpenAI`` client."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from .openai_server import (
    FakeOpenAIServer,
    RecordedRequest,
    default_reply,
    fake_embedding,
    split_tokens,
)

API_KEY = "sk-test-key"
MODEL = "gpt-4o-mini"
EMBED_MODEL = "text-embedding-3-small"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
async def client(fake: FakeOpenAIServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=API_KEY, max_retries=0) as c:
        yield c


def _user(content: str) -> list[ChatCompletionMessageParam]:
    return [
        {"role": "system", "content": "You are a helpful tutor."},
        {"role": "user", "content": content},
    ]


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def _drain(stream: AsyncIterator[object]) -> None:
    async for _ in stream:
        pass


async def _wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met in time")


def _server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("FakeOpenAIServer")]


# ------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    "text",
    ["", "one", "Fake answer to: hello", "  leading and trailing  ", "a\n\nb\tc ", "   "],
)
def test_split_tokens_round_trips(text: str) -> None:
    assert "".join(split_tokens(text)) == text


def test_split_tokens_one_token_per_word() -> None:
    assert split_tokens("The quick  brown fox") == ["The ", "quick  ", "brown ", "fox"]


def test_default_reply_uses_last_user_message() -> None:
    request = {
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
        ]
    }
    assert default_reply(request) == "Fake answer to: second"


# ------------------------------------------------------------------------- chat


async def test_plain_completion(fake: FakeOpenAIServer, client: openai.AsyncOpenAI) -> None:
    result = await client.chat.completions.create(model=MODEL, messages=_user("What is a graph?"))

    assert result.object == "chat.completion"
    assert result.id
    assert result.model == MODEL
    choice = result.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "Fake answer to: What is a graph?"
    assert choice.finish_reason == "stop"
    assert result.usage is not None
    assert result.usage.prompt_tokens == 5 + 4  # word count of all message contents
    assert result.usage.completion_tokens == len(split_tokens(choice.message.content))
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens

    assert len(fake.requests) == 1
    recorded = fake.requests[0]
    assert isinstance(recorded, RecordedRequest)
    assert recorded.method == "POST"
    assert recorded.path == "/v1/chat/completions"
    assert recorded.headers["authorization"] == f"Bearer {API_KEY}"
    assert recorded.headers["content-type"].startswith("application/json")
    assert fake.chat_requests() == [recorded.json]
    assert recorded.json["model"] == MODEL
    assert recorded.json["messages"][1] == {"role": "user", "content": "What is a graph?"}


async def test_model_is_echoed(client: openai.AsyncOpenAI) -> None:
    result = await client.chat.completions.create(model="gpt-4.1-nano", messages=_user("hi"))
    assert result.model == "gpt-4.1-nano"


async def test_reply_string_and_callable(
    fake: FakeOpenAIServer, client: openai.AsyncOpenAI
) -> None:
    fake.reply = "Fixed reply."
    result = await client.chat.completions.create(model=MODEL, messages=_user("q"))
    assert result.choices[0].message.content == "Fixed reply."

    fake.reply = lambda req: f"{len(req['messages'])} messages, temp={req.get('temperature')}"
    result = await client.chat.completions.create(
        model=MODEL, messages=_user("q"), temperature=0.25
    )
    assert result.choices[0].message.content == "2 messages, temp=0.25"


async def test_streamed_completion(fake: FakeOpenAIServer, client: openai.AsyncOpenAI) -> None:
    fake.reply = "Graphs have  vertices\nand edges. "
    stream = await client.chat.completions.create(model=MODEL, messages=_user("q"), stream=True)
    chunks = [chunk async for chunk in stream]

    assert all(c.object == "chat.completion.chunk" and c.model == MODEL for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    contents = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert contents == split_tokens(fake.reply)
    assert len(contents) == 5
    assert "".join(contents) == fake.reply
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)
    assert fake.chat_requests()[0]["stream"] is True


async def test_split_chooses_the_streamed_chunks(
    fake: FakeOpenAIServer, client: openai.AsyncOpenAI
) -> None:
    fake.reply = "Cited [3]."
    fake.split = lambda text: ["Cited [", "3", "]."]
    stream = await client.chat.completions.create(
        model=MODEL, messages=_user("q"), stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    contents = [c.choices[0].delta.content for c in chunks if c.choices]
    assert [content for content in contents if content] == ["Cited [", "3", "]."]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    plain = await client.chat.completions.create(model=MODEL, messages=_user("q"))
    assert plain.choices[0].message.content == "Cited [3]."
    fake.reset()
    assert fake.split("a b") == ["a ", "b"]


async def test_streamed_completion_with_usage(
    fake: FakeOpenAIServer, client: openai.AsyncOpenAI
) -> None:
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=_user("tell me more"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Fake answer to: tell me more"
    assert chunks[-2].choices[0].finish_reason == "stop"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 6
    assert last.usage.prompt_tokens == 5 + 3
    assert last.usage.total_tokens == 14


async def test_ttft_and_token_delay_streamed(
    fake: FakeOpenAIServer, client: openai.AsyncOpenAI
) -> None:
    fake.reply = "one two three four five"
    fake.ttft = 0.2
    fake.token_delay = 0.05
    start = time.perf_counter()
    stream = await client.chat.completions.create(model=MODEL, messages=_user("q"), stream=True)
    first_token_at: float | None = None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and first_token_at is None:
            first_token_at = time.perf_counter() - start
    total = time.perf_counter() - start

    assert first_token_at is not None
    assert first_token_at >= 0.9 * 0.2
    assert total >= 0.9 * (0.2 + 4 * 0.05)


async def test_ttft_and_token_delay_plain(
    fake: FakeOpenAIServer, client: openai.AsyncOpenAI
) -> None:
    fake.reply = "one two three four five"
    fake.ttft = 0.1
    fake.token_delay = 0.05
    start = time.perf_counter()
    await client.chat.completions.create(model=MODEL, messages=_user("q"))
    assert time.perf_counter() - start >= 0.9 * (0.1 + 4 * 0.05)


async def test_many_concurrent_streams(fake: FakeOpenAIServer) -> None:
    fake.token_delay = 0.01

    async def one(i: int) -> str:
        async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=API_KEY, max_retries=0) as c:
            stream = await c.chat.completions.create(
                model=MODEL, messages=_user(f"question {i}"), stream=True
            )
            return "".join([ch.choices[0].delta.content or "" async for ch in stream])

    answers = await asyncio.gather(*(one(i) for i in range(64)))
    assert answers == [f"Fake answer to: question {i}" for i in range(64)]
    assert len(fake.chat_requests()) == 64


async def test_missing_authorization_header_is_accepted(fake: FakeOpenAIServer) -> None:
    async with httpx.AsyncClient(base_url=fake.base_url) as raw:
        response = await raw.post(
            "/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        )
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Fake answer to: hi"
    assert "authorization" not in fake.requests[0].headers


async def test_bad_requests(fake: FakeOpenAIServer, client: openai.AsyncOpenAI) -> None:
    async with httpx.AsyncClient(base_url=fake.base_url) as raw:
        not_json = await raw.post("/chat/completions", content=b"{nope")
        no_messages = await raw.post("/chat/completions", json={"model": MODEL})
        unknown = await raw.get("/nope")
    assert not_json.status_code == 400
    assert no_messages.status_code == 400
    assert unknown.status_code == 404
    assert set(unknown.json()["error"]) >= {"message", "type", "code"}
    assert fake.requests[0].json is None
    assert [r.path for r in fake.requests] == [
        "/v1/chat/completions",
        "/v1/chat/completions",
        "/v1/nope",
    ]


# ------------------------------------------------------------------------- embeddings


async def test_embeddings_deterministic_and_normalised(
    fake: FakeOpenAIServer, client: openai.AsyncOpenAI
) -> None:
    texts = ["Dijkstra finds shortest paths", "Binary search trees", ""]
    first = await client.embeddings.create(model=EMBED_MODEL, input=texts)
    second = await client.embeddings.create(model=EMBED_MODEL, input=texts)

    assert first.model == EMBED_MODEL
    assert [d.index for d in first.data] == [0, 1, 2]
    vectors = [d.embedding for d in first.data]
    assert vectors == [d.embedding for d in second.data]
    for vector in vectors:
        assert len(vector) == 16
        assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-5)
    assert first.usage.prompt_tokens == 4 + 3
    assert first.usage.total_tokens == 7
    # Same text alone gives the same vector as inside a batch.
    single = await client.embeddings.create(model=EMBED_MODEL, input=texts[0])
    assert single.data[0].embedding == vectors[0]


async def test_embeddings_base64_and_float_formats(
    fake: FakeOpenAIServer, client: openai.AsyncOpenAI
) -> None:
    text = "Graph traversal with breadth first search"
    default = await client.embeddings.create(model=EMBED_MODEL, input=[text])
    floats = await client.embeddings.create(
        model=EMBED_MODEL, input=[text], encoding_format="float"
    )
    b64 = await client.embeddings.create(model=EMBED_MODEL, input=[text], encoding_format="base64")

    # The SDK asks for base64 by default and decodes it itself.
    sent = fake.embedding_requests()
    assert sent[0]["encoding_format"] == "base64"
    assert sent[1]["encoding_format"] == "float"
    expected = fake_embedding(text, 16)
    assert floats.data[0].embedding == pytest.approx(expected)
    assert default.data[0].embedding == pytest.approx(expected, rel=1e-6, abs=1e-7)
    raw = b64.data[0].embedding
    assert isinstance(raw, str)
    decoded = list(struct.unpack("<16f", base64.b64decode(raw)))
    assert decoded == pytest.approx(expected, rel=1e-6, abs=1e-7)


async def test_embeddings_dimension(fake: FakeOpenAIServer, client: openai.AsyncOpenAI) -> None:
    result = await client.embeddings.create(model=EMBED_MODEL, input="hello", dimensions=8)
    assert len(result.data[0].embedding) == 8
    fake.embedding_dim = 64
    result = await client.embeddings.create(model=EMBED_MODEL, input=["hello", "world"])
    assert [len(d.embedding) for d in result.data] == [64, 64]


async def test_embeddings_similarity(client: openai.AsyncOpenAI) -> None:
    texts = [
        "Dijkstra algorithm computes shortest paths in a weighted graph",
        "shortest paths in a graph with the Dijkstra algorithm",
        "Photosynthesis converts sunlight into chemical energy",
    ]
    result = await client.embeddings.create(model=EMBED_MODEL, input=texts, dimensions=64)
    query, similar, unrelated = (d.embedding for d in result.data)
    assert _cosine(query, similar) > _cosine(query, unrelated)
    assert _cosine(query, query) == pytest.approx(1.0)


def test_fake_embedding_never_zero() -> None:
    for text in ["", "   ", "!!!"]:
        vector = fake_embedding(text, 4)
        assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-9)


async def test_models(client: openai.AsyncOpenAI) -> None:
    ids = [m.id async for m in client.models.list()]
    assert {"gpt-4o-mini", "text-embedding-3-small"} <= set(ids)
    model = await client.models.retrieve("gpt-4o-mini")
    assert model.id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("no-such-model")


# ------------------------------------------------------------------------- faults


async def test_fail_next_429(fake: FakeOpenAIServer, client: openai.AsyncOpenAI) -> None:
    fake.fail_next(429, message="slow down", retry_after=2)
    with pytest.raises(openai.RateLimitError) as excinfo:
        await client.chat.completions.create(model=MODEL, messages=_user("q"))
    err = excinfo.value
    assert err.status_code == 429
    assert err.message == "Error code: 429 - slow down"
    assert isinstance(err.body, dict)
    assert err.body["message"] == "slow down"
    assert err.code == "rate_limit_exceeded"
    assert err.type == "requests"
    assert err.response.headers["retry-after"] == "2"
    # The fault is consumed: the next call succeeds.
    result = await client.chat.completions.create(model=MODEL, messages=_user("q"))
    assert result.choices[0].message.content == "Fake answer to: q"
    assert len(fake.requests) == 2


async def test_fail_next_500_and_order(fake: FakeOpenAIServer, client: openai.AsyncOpenAI) -> None:
    fake.fail_next(500, times=2)
    fake.fail_next(429)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as excinfo:
            await client.chat.completions.create(model=MODEL, messages=_user("q"))
        assert excinfo.value.status_code == 500
        assert excinfo.value.body == {
            "message": "injected failure",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    # Faults apply to any endpoint.
    with pytest.raises(openai.RateLimitError):
        await client.embeddings.create(model=EMBED_MODEL, input="x")
    await client.embeddings.create(model=EMBED_MODEL, input="x")


async def test_retry_after_500_succeeds(fake: FakeOpenAIServer) -> None:
    fake.fail_next(500, retry_after=0.01)
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=API_KEY, max_retries=1) as c:
        result = await c.chat.completions.create(model=MODEL, messages=_user("q"))
    assert result.choices[0].message.content == "Fake answer to: q"
    assert len(fake.requests) == 2
    assert fake.chat_requests()[0] == fake.chat_requests()[1]


async def test_retry_after_header_is_honoured(fake: FakeOpenAIServer) -> None:
    fake.fail_next(429, retry_after=0.3)
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=API_KEY, max_retries=1) as c:
        start = time.perf_counter()
        await c.chat.completions.create(model=MODEL, messages=_user("q"))
        assert time.perf_counter() - start >= 0.9 * 0.3
    assert len(fake.requests) == 2


async def test_hang_next_triggers_client_timeout(
    fake: FakeOpenAIServer, client: openai.AsyncOpenAI
) -> None:
    fake.hang_next(30)
    start = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model=MODEL, messages=_user("q"), timeout=0.3)
    assert time.perf_counter() - start >= 0.9 * 0.3
    # The fake keeps serving other requests, and the fault was used once.
    result = await client.chat.completions.create(model=MODEL, messages=_user("q"), timeout=5)
    assert result.choices[0].message.content == "Fake answer to: q"


async def test_hang_next_short_then_answers(
    fake: FakeOpenAIServer, client: openai.AsyncOpenAI
) -> None:
    fake.hang_next(0.2)
    start = time.perf_counter()
    result = await client.chat.completions.create(model=MODEL, messages=_user("q"))
    assert time.perf_counter() - start >= 0.9 * 0.2
    assert result.choices[0].message.content == "Fake answer to: q"


async def test_cut_stream_next(fake: FakeOpenAIServer, client: openai.AsyncOpenAI) -> None:
    fake.reply = "a b c d e f"
    fake.cut_stream_next(after_tokens=2)
    stream = await client.chat.completions.create(model=MODEL, messages=_user("q"), stream=True)
    received: list[str] = []

    async def consume() -> None:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIConnectionError) as excinfo:
        await consume()
    # Precisely APIConnectionError (not its APITimeoutError subclass), caused by the
    # transport noticing the incomplete chunked body.
    assert excinfo.type is openai.APIConnectionError
    assert "incomplete chunked read" in str(excinfo.value.__cause__)
    assert received == ["", "a ", "b "]  # role chunk, then two tokens

    # Only the next streamed answer is cut.
    stream = await client.chat.completions.create(model=MODEL, messages=_user("q"), stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "a b c d e f"


async def test_cut_stream_is_kept_for_the_next_streamed_answer(
    fake: FakeOpenAIServer, client: openai.AsyncOpenAI
) -> None:
    fake.cut_stream_next(after_tokens=0)
    plain = await client.chat.completions.create(model=MODEL, messages=_user("q"))
    assert plain.choices[0].message.content == "Fake answer to: q"
    stream = await client.chat.completions.create(model=MODEL, messages=_user("q"), stream=True)
    with pytest.raises(openai.APIConnectionError):
        await _drain(stream)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
async def test_finish_next_sets_how_the_next_answer_ends(
    streamed: bool, fake: FakeOpenAIServer, client: openai.AsyncOpenAI
) -> None:
    fake.reply = "a b c"
    fake.finish_next("length")
    fake.finish_next(None)

    async def finish_reasons() -> tuple[str, list[str | None]]:
        if not streamed:
            plain = await client.chat.completions.create(model=MODEL, messages=_user("q"))
            return plain.choices[0].message.content or "", [plain.choices[0].finish_reason]
        stream = await client.chat.completions.create(
            model=MODEL, messages=_user("q"), stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].usage is not None  # the stream still ends properly otherwise
        return text, [c.choices[0].finish_reason for c in chunks if c.choices]

    text, reasons = await finish_reasons()
    assert (text, reasons[-1]) == ("a b c", "length")
    text, reasons = await finish_reasons()
    assert (text, set(reasons)) == ("a b c", {None})
    assert (await finish_reasons())[1][-1] == "stop"


async def test_reset(fake: FakeOpenAIServer, client: openai.AsyncOpenAI) -> None:
    await client.chat.completions.create(model=MODEL, messages=_user("q"))
    fake.reply = "changed"
    fake.ttft = 5.0
    fake.token_delay = 1.0
    fake.embedding_dim = 3
    fake.fail_next(500, times=3)
    fake.hang_next(30)
    fake.cut_stream_next()

    fake.reset()

    assert fake.requests == []
    assert fake.chat_requests() == []
    assert (fake.ttft, fake.token_delay, fake.embedding_dim) == (0.0, 0.0, 16)
    result = await client.chat.completions.create(model=MODEL, messages=_user("again"))
    assert result.choices[0].message.content == "Fake answer to: again"
    stream = await client.chat.completions.create(model=MODEL, messages=_user("s"), stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "Fake answer to: s"
    assert len(fake.requests) == 2


# ------------------------------------------------------------------------- lifecycle


def test_start_stop_is_quick_and_leaves_no_thread() -> None:
    before = len(_server_threads())
    start = time.perf_counter()
    fake = FakeOpenAIServer()
    fake.start()
    assert fake.base_url.startswith("http://127.0.0.1:")
    assert fake.base_url.endswith("/v1")
    assert fake.port > 0
    with pytest.raises(RuntimeError):
        fake.start()
    fake.stop()
    assert time.perf_counter() - start < 1.0
    assert len(_server_threads()) == before
    fake.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = fake.base_url


async def test_restart_after_stop() -> None:
    fake = FakeOpenAIServer(reply="first life")
    with fake:
        async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=API_KEY) as c:
            r = await c.chat.completions.create(model=MODEL, messages=_user("q"))
            assert r.choices[0].message.content == "first life"
    with fake:
        async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=API_KEY) as c:
            r = await c.chat.completions.create(model=MODEL, messages=_user("q"))
            assert r.choices[0].message.content == "first life"
    assert len(fake.requests) == 2
    assert not fake.running


async def test_stop_does_not_wait_for_hanging_request() -> None:
    before = len(_server_threads())
    fake = FakeOpenAIServer(token_delay=10.0).start()
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=API_KEY, max_retries=0) as c:
        fake.hang_next(30)
        hanging = asyncio.create_task(
            c.chat.completions.create(model=MODEL, messages=_user("q"), timeout=60)
        )
        await _wait_until(lambda: len(fake.requests) == 1)
        slow_stream = await c.chat.completions.create(
            model=MODEL, messages=_user("q"), stream=True, timeout=60
        )

        start = time.perf_counter()
        fake.stop()
        assert time.perf_counter() - start < 1.0
        assert len(_server_threads()) == before

        # The hanging request is answered with a 503 when the fake shuts down.
        with pytest.raises(openai.InternalServerError) as excinfo:
            await hanging
        assert excinfo.value.status_code == 503
        # The slow stream finishes without its delays.
        text = "".join([ch.choices[0].delta.content or "" async for ch in slow_stream])
        assert text == "Fake answer to: q"


async def test_a_previous_tests_connection_cannot_reach_the_next_test(
    fake: FakeOpenAIServer,
) -> None:
    """A request a previous test's client sent as it went away (a cancelled batch) reaches the
    server late: it must neither be recorded nor use up the fault the next test injected."""
    body = {"model": EMBED_MODEL, "input": ["late"]}
    async with httpx.AsyncClient(base_url=fake.base_url) as previous:
        assert (await previous.post("/embeddings", json=body)).status_code == 200

        fake.reset(retire_connections=True)  # the next test starts
        fake.fail_next(500, retry_after=0)
        late = await previous.post("/embeddings", json=body)  # same keep-alive connection

    assert late.status_code == 503
    assert fake.embedding_requests() == []
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=API_KEY, max_retries=1) as new:
        result = await new.embeddings.create(model=EMBED_MODEL, input=["mine"])
    assert len(result.data) == 1
    assert len(fake.embedding_requests()) == 2  # the injected failure, then the retry


async def test_a_reset_mid_test_keeps_the_clients_connections(
    fake: FakeOpenAIServer, client: openai.AsyncOpenAI
) -> None:
    await client.chat.completions.create(model=MODEL, messages=_user("one"))
    fake.reset()
    await client.chat.completions.create(model=MODEL, messages=_user("two"))
    assert [r["messages"][-1]["content"] for r in fake.chat_requests()] == ["two"]


async def test_a_request_on_a_new_connection_sent_just_before_a_reset_is_not_the_next_tests(
    fake: FakeOpenAIServer,
) -> None:
    """A cancelled batch's request can be the first on its connection: nothing was recorded from
    that connection when the next test starts, yet it must not reach that test either."""
    payload = json.dumps({"model": EMBED_MODEL, "input": ["late"]}).encode()
    head = (
        f"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", fake.port)) as previous:
        previous.sendall(head + payload)  # the client goes away without reading the answer

        fake.reset(retire_connections=True)  # the next test starts at once
        fake.fail_next(500, retry_after=0)
        async with openai.AsyncOpenAI(
            base_url=fake.base_url, api_key=API_KEY, max_retries=1
        ) as new:
            result = await new.embeddings.create(model=EMBED_MODEL, input=["mine"])

    assert len(result.data) == 1
    assert [r["input"] for r in fake.embedding_requests()] == [["mine"], ["mine"]]


async def test_a_new_connection_on_a_retired_port_is_the_next_tests(
    fake: FakeOpenAIServer,
) -> None:
    """The server closing a connection frees its client port at once, and the kernel may give
    it to a later connection: once a previous test's stragglers are past, that connection is
    served (64 concurrent streams got 503 from the fake for it)."""
    payload = json.dumps({"model": EMBED_MODEL, "input": ["x"]}).encode()
    request = (
        f"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload

    def status_from(port: int | None) -> tuple[int, int]:
        """Send the request from `port` (any when None); the status and the port used."""
        with socket.socket() as connection:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Closed with a reset: no TIME_WAIT keeps the port from the next connection.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.bind(("127.0.0.1", port or 0))
            connection.connect(("127.0.0.1", fake.port))
            connection.sendall(request)
            head = connection.recv(64).decode("latin-1")
            return int(head.split(" ")[1]), connection.getsockname()[1]

    status, port = await asyncio.to_thread(status_from, None)
    assert status == 200
    fake.reset(retire_connections=True)
    fake.retired_for = 0.05
    await asyncio.sleep(0.1)  # the previous test's stragglers would have come by now

    status, _ = await asyncio.to_thread(status_from, port)
    assert status == 200
    assert len(fake.embedding_requests()) == 1
