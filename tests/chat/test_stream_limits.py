"""A fair share of answer streams: a cap per reader, a longest run, a reader who stops reading."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
from redis.asyncio import Redis

from bookchat.chat.models import MessageStatus
from bookchat.core.concurrency import RedisClientSlots
from bookchat.core.redis import RedisStatus
from tests.chat.test_stream import assistant_messages, parse_sse
from tests.conftest import AppFactory, live_server, openai_settings
from tests.factories import QUESTION, bearer, book_settings, sign_up
from tests.fakes.openai_server import FakeOpenAIServer

STREAM = "/api/v1/chat/stream"
LONG_REPLY = " ".join(f"word{i}" for i in range(200))


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None
) -> AsyncIterator[httpx.Response]:
    """A stream request whose answer has started (its `start` event has come)."""
    async with client.stream("POST", STREAM, json={"message": QUESTION}, headers=headers) as reply:
        assert reply.status_code == 200, await reply.aread()
        # Not `async for ... break`: the abandoned line iterator, once collected, would close
        # the connection, and the stream with it.
        lines = reply.aiter_lines()
        while not (await anext(lines)).startswith("event: start"):
            pass
        yield reply


def assert_too_many_streams(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 429
    body = response.json()
    assert body["error"]["code"] == "rate_limited"
    assert f"At most {limit} answer stream" in body["error"]["message"]
    assert body["request_id"]
    assert int(response.headers["Retry-After"]) >= 1


async def slow_book(database_url: str, fake: FakeOpenAIServer, **overrides: Any) -> Any:
    """Settings over the mini book whose model answers slowly (streams stay open a while)."""
    fake.reply = LONG_REPLY
    fake.token_delay = 0.05
    return await book_settings(
        database_url, **{**openai_settings(fake), "llm_timeout_seconds": 30.0, **overrides}
    )


class TestStreamCap:
    async def test_a_reader_over_the_cap_gets_429_and_others_are_not_counted(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        settings = await slow_book(sqlite_url, fake_openai, max_streams_per_client=2)
        with live_server(settings) as base:
            async with AsyncExitStack() as streams:
                client = await streams.enter_async_context(
                    httpx.AsyncClient(base_url=base, timeout=30)
                )
                token = (await sign_up(client, "reader@example.org"))["access_token"]
                first = await streams.enter_async_context(open_stream(client))
                await streams.enter_async_context(open_stream(client))

                refused = await client.post(STREAM, json={"message": QUESTION})
                assert_too_many_streams(refused, 2)
                # The cap is per reader: a signed-in reader has slots of their own.
                await streams.enter_async_context(open_stream(client, bearer(token)))

                # One of the two ends: its slot comes back (once the server has seen it go).
                await first.aclose()
                for _ in range(200):
                    again = await client.post(STREAM, json={"message": QUESTION})
                    if again.status_code == 200:
                        break
                    assert_too_many_streams(again, 2)
                    await asyncio.sleep(0.025)
                assert again.status_code == 200
                assert parse_sse(again.text)[0][-1][0] == "done"

    async def test_replicas_sharing_redis_share_the_cap(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, redis_url: str
    ) -> None:
        one = await slow_book(
            sqlite_url, fake_openai, max_streams_per_client=1, redis_url=redis_url
        )
        two = one.model_copy(update={"qdrant_path": one.qdrant_path + "-replica"})
        with live_server(one) as first, live_server(two) as second:
            async with (
                httpx.AsyncClient(base_url=first, timeout=30) as a,
                httpx.AsyncClient(base_url=second, timeout=30) as b,
                open_stream(a),
            ):
                assert_too_many_streams(await b.post(STREAM, json={"message": QUESTION}), 1)

    async def test_a_crashed_replicas_slots_expire(self, redis_url: str) -> None:
        redis = Redis.from_url(redis_url)
        try:
            # A replica takes the only slot and dies without giving it back.
            crashed = RedisClientSlots("streams", redis, RedisStatus(), ttl_seconds=0.3)
            assert await crashed.acquire("ip:192.0.2.1", 1)
            survivor = RedisClientSlots("streams", redis, RedisStatus(), ttl_seconds=0.3)
            assert await survivor.acquire("ip:192.0.2.1", 1) is None
            for _ in range(100):
                token = await survivor.acquire("ip:192.0.2.1", 1)
                if token is not None:
                    break
                await asyncio.sleep(0.05)
            assert token
        finally:
            await redis.aclose()


class TestStreamTime:
    async def test_a_stream_past_its_longest_run_ends_with_an_error_and_keeps_a_partial(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        fake_openai.reply = LONG_REPLY
        fake_openai.token_delay = 0.1
        settings = await book_settings(
            sqlite_url, **openai_settings(fake_openai), stream_max_seconds=0.6
        )
        async with app_factory(settings) as client:
            reply = await client.post(STREAM, json={"message": QUESTION})
        events, _ = parse_sse(reply.text)
        names = [name for name, _ in events]
        assert names[:2] == ["start", "sources"]
        assert "token" in names
        assert events[-1] == (
            "error",
            {
                "code": "llm_timeout",
                "message": (
                    "The answer took longer than 0.6 seconds and was cut short; what was shown "
                    "is kept."
                ),
            },
        )
        shown = "".join(data["text"] for name, data in events if name == "token")
        stored = await assistant_messages(sqlite_url)
        assert [m.status for m in stored] == [MessageStatus.PARTIAL]
        assert stored[0].content == shown.strip()
        assert len(shown.split()) < 200


class TestStalledReader:
    async def test_a_reader_who_stops_reading_is_cut_and_the_answer_kept_partial(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        # A long answer in big pieces: far more than the socket buffers hold.
        piece = "x" * 2000 + " "
        fake_openai.reply = piece * 3000
        fake_openai.split = lambda text: [piece] * (len(text) // len(piece))
        settings = await book_settings(
            sqlite_url, **openai_settings(fake_openai), stream_send_timeout_seconds=0.5
        )
        with live_server(settings) as base:
            host, port = base.removeprefix("http://").split(":")
            body = json.dumps({"message": QUESTION}).encode()
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((host, int(port)))
            try:
                sock.sendall(
                    f"POST {STREAM} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
                    f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                # Never read: the server fills the buffers, waits, then gives up on this reader.
                for _ in range(400):
                    stored = await assistant_messages(sqlite_url)
                    if stored:
                        break
                    await asyncio.sleep(0.05)
            finally:
                sock.close()
        assert [m.status for m in stored] == [MessageStatus.PARTIAL]
        assert 0 < len(stored[0].content) < len(piece) * 3000
