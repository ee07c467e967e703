"""The answer as Server-Sent Events: order, content, pings, headers, failures, hang-ups."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sse_starlette import ServerSentEvent

from bookchat.chat.models import Message, MessageRole, MessageStatus
from bookchat.chat.schemas import ChatCreate
from bookchat.chat.service import ChatService
from bookchat.chat.turns import Turn
from bookchat.container import open_container
from bookchat.core.config import Settings
from tests.conftest import AppFactory, live_server, make_settings, openai_settings
from tests.factories import (
    CITING_REPLY,
    CITING_SHOWN,
    PUBLISHERS_BOOK,
    QUESTION,
    book_settings,
    citing_reply,
    heading,
    sources_sent,
    stored,
)
from tests.fakes.openai_server import FakeOpenAIServer, split_tokens

Event = tuple[str, dict[str, Any]]


def parse_sse(body: str) -> tuple[list[Event], list[str]]:
    """Events (name, JSON data) and comment lines of a text/event-stream body."""
    events: list[Event] = []
    comments: list[str] = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith(":"):
                comments.append(line)
            elif line.startswith("event:"):
                name = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                data.append(line.removeprefix("data:").strip())
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events, comments


def event_data(event: ServerSentEvent) -> dict[str, Any]:
    """The JSON payload of an event as `_as_sse` builds it (its `data` is JSON text)."""
    assert isinstance(event.data, str), event.data
    data: dict[str, Any] = json.loads(event.data)
    return data


async def assistant_messages(database_url: str) -> list[Message]:
    return await stored(database_url, Message, role=MessageRole.ASSISTANT)


def tokens_of(events: list[Event]) -> list[str]:
    return [data["text"] for name, data in events if name == "token"]


def cited_numbers(text: str) -> list[int]:
    """The citation numbers a text shows, each once, in order."""
    return list(dict.fromkeys(int(n) for n in re.findall(r"\[(\d+)\]", text)))


class TestStream:
    async def test_events_in_order_and_the_answer_stored(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        fake_openai.reply = "Publishers send messages on a topic [1]."
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            response = await client.post("/api/v1/chat/stream", json={"message": QUESTION})

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        events, _ = parse_sse(response.text)
        names = [name for name, _ in events]
        assert names[:2] == ["start", "sources"]
        assert names[-1] == "done"
        assert set(names[2:-1]) == {"token"}
        assert len(names) > 5
        start, sources, done = events[0][1], events[1][1], events[-1][1]
        assert start["mode"] == "rag"
        assert start["message_id"] == done["message_id"]
        assert start["session_id"] == done["session_id"]
        assert sources["citations"][0]["page_url"].endswith(
            "/basics/messaging#publishers-and-subscribers"
        )
        # Before the answer, sources carry no number: numbers are given in order of first use.
        assert all("index" not in c and "cited" not in c for c in sources["citations"])
        streamed = "".join(data["text"] for name, data in events if name == "token")
        assert streamed == "Publishers send messages on a topic [1]."
        assert done["response"] == streamed
        assert done["citations"][0]["cited"] is True
        assert done["usage"]["completion_tokens"] > 0
        stored = await assistant_messages(database_url)
        assert [(m.content, m.status) for m in stored] == [(streamed, MessageStatus.COMPLETE)]
        assert str(stored[0].id) == done["message_id"]
        assert stored[0].completion_tokens == done["usage"]["completion_tokens"]

    @pytest.mark.parametrize("split", [list, split_tokens], ids=["by-character", "by-word"])
    async def test_markers_are_renumbered_as_they_arrive(
        self,
        split: Any,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
    ) -> None:
        fake_openai.reply = citing_reply
        fake_openai.split = split  # by character, every marker arrives cut: "[", "3", "]"
        settings = await book_settings(sqlite_url, PUBLISHERS_BOOK, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            response = await client.post("/api/v1/chat/stream", json={"message": QUESTION})

        events, _ = parse_sse(response.text)
        sources, done = events[1][1], events[-1][1]
        tokens = tokens_of(events)
        assert "".join(tokens) == done["response"] == CITING_SHOWN
        # The reader never sees half a marker, nor one of the model's own numbers.
        shown = ["".join(tokens[:count]) for count in range(1, len(tokens) + 1)]
        assert [text for text in shown if re.search(r"\[\d*$", text)] == []
        given = sources_sent(fake_openai.chat_requests()[-1])
        assert [heading(passage) for passage in sources["citations"]] == given
        assert [(c["index"], heading(c), c["cited"]) for c in done["citations"]] == [
            (1, given[2], True),
            (2, given[0], True),
            (3, given[1], False),
            (4, given[3], False),
            (5, given[4], False),
        ]
        [reply] = await assistant_messages(sqlite_url)
        assert (reply.content, reply.citations) == (done["response"], done["citations"])

    async def test_code_and_brackets_that_are_not_markers_arrive_as_written(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        fake_openai.reply = (
            "Read `data[2]`, not array[0] [see above] [2, 3].\n```\nx = q[1]\n```\n[9] See [1]["
        )
        fake_openai.split = list
        settings = await book_settings(sqlite_url, PUBLISHERS_BOOK, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            response = await client.post("/api/v1/chat/stream", json={"message": QUESTION})

        events, _ = parse_sse(response.text)
        assert (
            "".join(tokens_of(events))
            == events[-1][1]["response"]
            == ("Read `data[2]`, not array [see above] [1][2].\n```\nx = q[1]\n```\nSee [3][")
        )

    async def test_not_covered_streams_without_a_model_call(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            response = await client.post(
                "/api/v1/chat/stream", json={"message": "What is the capital of France?"}
            )
        events, _ = parse_sse(response.text)
        assert events[0][1]["mode"] == "no_context"
        assert events[-1][0] == "done"
        assert "couldn't find this" in events[-1][1]["response"]
        assert events[1][1]["citations"] == events[-1][1]["citations"] == []
        assert fake_openai.chat_requests() == []

    async def test_offline_extractive_stream(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url)
        async with app_factory(settings) as client:
            response = await client.post(
                "/api/v1/chat/stream", json={"message": "How does a biped keep its balance?"}
            )
        events, _ = parse_sse(response.text)
        done = events[-1][1]
        assert done["model"] == "extractive"
        assert "zero moment point" in done["response"]
        assert any(c["cited"] for c in done["citations"])

    async def test_pings_keep_an_idle_stream_alive(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        fake_openai.ttft = 0.5
        settings = await book_settings(
            sqlite_url, **openai_settings(fake_openai), sse_ping_seconds=0.1
        )
        async with app_factory(settings) as client:
            response = await client.post("/api/v1/chat/stream", json={"message": QUESTION})
        events, comments = parse_sse(response.text)
        assert any("ping" in comment for comment in comments)
        assert events[-1][0] == "done"

    async def test_bad_input_is_a_plain_400(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.post("/api/v1/chat/stream", json={"message": " "})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "validation_error"

    @pytest.mark.parametrize(
        ("fault", "code"),
        [("429", "llm_unavailable"), ("hang", "llm_timeout")],
    )
    async def test_upstream_failure_before_the_first_token(
        self,
        fault: str,
        code: str,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
    ) -> None:
        settings = await book_settings(
            sqlite_url, **{**openai_settings(fake_openai), "llm_timeout_seconds": 0.5}
        )
        if fault == "hang":
            fake_openai.hang_next(5.0)
        else:
            fake_openai.fail_next(429, message="vendor secret detail")
        async with app_factory(settings) as client:
            response = await client.post("/api/v1/chat/stream", json={"message": QUESTION})
        events, _ = parse_sse(response.text)
        assert [name for name, _ in events] == ["start", "sources", "error"]
        assert events[-1][1]["code"] == code
        assert "vendor secret" not in response.text
        stored = await assistant_messages(sqlite_url)
        assert [(m.content, m.status) for m in stored] == [("", MessageStatus.ERROR)]

    async def test_a_cut_upstream_stream_ends_in_error_and_keeps_the_text(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        fake_openai.reply = "one two three four five six"
        fake_openai.cut_stream_next(after_tokens=3)
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            response = await client.post("/api/v1/chat/stream", json={"message": QUESTION})
        events, _ = parse_sse(response.text)
        names = [name for name, _ in events]
        assert names == ["start", "sources", "token", "token", "token", "error"]
        stored = await assistant_messages(database_url)
        assert [(m.content, m.status) for m in stored] == [("one two three", MessageStatus.ERROR)]

    async def test_a_cut_answer_is_stored_as_it_was_shown(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        fake_openai.reply = citing_reply  # "A ", "[3]. ", "B ", "[1][3]. ", cut, "C ", "[7]."
        fake_openai.cut_stream_next(after_tokens=4)
        settings = await book_settings(sqlite_url, PUBLISHERS_BOOK, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            response = await client.post("/api/v1/chat/stream", json={"message": QUESTION})

        events, _ = parse_sse(response.text)
        assert events[-1][0] == "error"
        [reply] = await assistant_messages(sqlite_url)
        assert reply.status == MessageStatus.ERROR
        assert reply.content == "".join(tokens_of(events)) == "A [1]. B [2][1]."
        given = sources_sent(fake_openai.chat_requests()[-1])
        assert [(c["index"], heading(c), c["cited"]) for c in reply.citations or []][:3] == [
            (1, given[2], True),
            (2, given[0], True),
            (3, given[1], False),
        ]


class TestHangUp:
    async def test_a_client_that_leaves_keeps_a_partial_answer(
        self, database_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = " ".join(f"word{i}" for i in range(60))
        fake_openai.token_delay = 0.05
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        with live_server(settings) as base:
            async with (
                httpx.AsyncClient(base_url=base, timeout=10) as client,
                client.stream("POST", "/api/v1/chat/stream", json={"message": QUESTION}) as reply,
            ):
                tokens = 0
                async for line in reply.aiter_lines():
                    if line.startswith("event: token"):
                        tokens += 1
                    if tokens == 3:
                        break
            # The server notices the hang-up, cancels the model call and stores what it had.
            for _ in range(200):
                stored = await assistant_messages(database_url)
                if stored:
                    break
                await asyncio.sleep(0.025)
        assert len(stored) == 1
        assert stored[0].status == MessageStatus.PARTIAL
        assert stored[0].content.startswith("word0 word1 word2")
        assert len(stored[0].content.split()) < 60


@asynccontextmanager
async def prepared_turn(settings: Settings) -> AsyncIterator[tuple[ChatService, Turn]]:
    """A chat service over real stores and a question already stored, ready to stream."""
    async with open_container(settings) as container:
        service = ChatService(
            settings=settings,
            model=container.providers.chat,
            retriever=container.retriever,
            sessionmaker=container.sessionmaker,
        )
        async with container.sessionmaker() as db:
            book = await container.books.default()
            turn = await service.prepare(db, ChatCreate(message=QUESTION), book=book)
        yield service, turn


class TestClosedAtAYield:
    """A response that fails to send closes the event generator where it is suspended: at a
    yield, not in an await. The answer so far must still be stored."""

    @pytest.mark.parametrize("events_read", [1, 2, 5])
    async def test_closing_the_stream_stores_a_partial_answer(
        self, events_read: int, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        from bookchat.core.sse import _as_sse

        fake_openai.reply = "one two three four five six seven"
        settings = await book_settings(sqlite_url, **openai_settings(fake_openai))
        async with prepared_turn(settings) as (service, turn):
            events = _as_sse(service.stream(turn))
            received = [await anext(events) for _ in range(events_read)]
            await events.aclose()

        stored = await assistant_messages(sqlite_url)
        tokens = [event_data(e) for e in received if e.event == "token"]
        assert len(stored) == 1
        assert stored[0].status == MessageStatus.PARTIAL
        assert stored[0].content == "".join(t["text"] for t in tokens).strip()

    @pytest.mark.parametrize("events_read", [4, 6, 9])
    async def test_a_partial_answer_is_stored_as_it_was_shown(
        self, events_read: int, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        from bookchat.core.sse import _as_sse

        fake_openai.reply = CITING_REPLY
        fake_openai.split = list
        settings = await book_settings(sqlite_url, PUBLISHERS_BOOK, **openai_settings(fake_openai))
        async with prepared_turn(settings) as (service, turn):
            events = _as_sse(service.stream(turn))
            received = [await anext(events) for _ in range(events_read)]
            await events.aclose()

        shown = "".join(event_data(e)["text"] for e in received if e.event == "token")
        [reply] = await assistant_messages(sqlite_url)
        assert reply.status == MessageStatus.PARTIAL
        assert reply.content == shown
        assert CITING_SHOWN.startswith(shown)
        cited = [c["index"] for c in reply.citations or [] if c["cited"]]
        assert cited == cited_numbers(shown) == sorted(cited)

    async def test_a_hang_up_during_the_final_write_does_not_lose_the_answer(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = "one two three"
        settings = await book_settings(sqlite_url, **openai_settings(fake_openai))
        async with prepared_turn(settings) as (service, turn):
            events = service.stream(turn)
            names = [(await anext(events))[0] for _ in range(5)]  # start, sources, 3 tokens
            # The next step writes the answer; the reader hangs up while it does.
            writing = asyncio.ensure_future(anext(events))
            await asyncio.sleep(0.001)
            writing.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await writing
            await events.aclose()

        assert names == ["start", "sources", "token", "token", "token"]
        stored = await assistant_messages(sqlite_url)
        assert [(m.content, m.status) for m in stored] == [
            ("one two three", MessageStatus.COMPLETE)
        ]
