"""`POST /chatkit` when things go wrong: model failures, cut and cancelled streams, what is not
supported, bad bodies, sign-in, rate and body limits, metrics.

Driven with the protocol's own requests on SQLite and PostgreSQL, with the real `openai` SDK
against the fake model server; every event and body is read back through the SDK's types."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from chatkit.types import (
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    AttachmentDeleteParams,
    AttachmentsDeleteReq,
    ErrorEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    UserMessageItem,
)

from bookchat.chat.models import ChatSession, Message, MessageRole, MessageStatus
from tests.chatkit.protocol import (
    ITEMS,
    add,
    answer_item,
    create,
    deltas,
    events_of,
    fetch,
    get_thread,
    list_items,
    list_threads,
    messages,
    parse_events,
    send,
    stream,
    thread_of,
)
from tests.conftest import AppFactory, live_server, make_settings, openai_settings
from tests.factories import QUESTION, book_settings, stored
from tests.fakes.openai_server import FakeOpenAIServer
from tests.metrics.test_router import value


class TestFailures:
    @pytest.mark.parametrize(("fault", "retry"), [("503", True), ("hang", True), ("400", False)])
    async def test_a_model_failure_is_an_error_event_and_the_question_is_kept(
        self,
        fault: str,
        retry: bool,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
    ) -> None:
        settings = await book_settings(
            database_url, **{**openai_settings(fake_openai), "llm_timeout_seconds": 0.5}
        )
        if fault == "hang":
            fake_openai.hang_next(5.0)
        else:
            fake_openai.fail_next(int(fault), message="vendor secret detail")
        async with app_factory(settings) as client:
            response = await send(client, create(QUESTION))
            events = events_of(response)
            thread = thread_of(events)
            items = await fetch(client, list_items(thread.id), ITEMS)

        error = events[-1]
        assert isinstance(error, ErrorEvent)
        assert error.allow_retry is retry
        assert error.message
        assert "vendor secret" not in response.text
        assert not any(
            isinstance(e, ThreadItemDoneEvent) and e.item.type == "assistant_message"
            for e in events
        )
        [question] = items.data  # the question stays; the empty failed answer is not shown
        assert isinstance(question, UserMessageItem)
        assert [m.content for m in await messages(database_url, MessageRole.USER)] == [QUESTION]

    async def test_a_stream_past_its_time_limit_ends_in_a_retryable_error(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        fake_openai.reply = " ".join(f"word{i}" for i in range(40))
        fake_openai.token_delay = 0.05
        settings = await book_settings(
            sqlite_url, stream_max_seconds=0.5, **openai_settings(fake_openai)
        )
        async with app_factory(settings) as client:
            events = await stream(client, create(QUESTION))

        error = events[-1]
        assert isinstance(error, ErrorEvent)
        assert error.allow_retry
        shown = deltas(events)
        assert shown.startswith("word0")
        [reply] = await messages(sqlite_url, MessageRole.ASSISTANT)
        assert reply.status == MessageStatus.PARTIAL
        assert reply.content == shown
        assert answer_item(events).content[0].text == shown

    async def test_a_cut_answer_keeps_what_was_shown(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        fake_openai.reply = "one two three four five six"
        fake_openai.cut_stream_next(after_tokens=3)
        settings = await book_settings(sqlite_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            events = await stream(client, create(QUESTION))
            items = await fetch(client, list_items(thread_of(events).id), ITEMS)

        assert isinstance(events[-1], ErrorEvent)
        assert deltas(events) == answer_item(events).content[0].text == "one two three"
        assert [type(i) for i in items.data] == [UserMessageItem, AssistantMessageItem]
        [reply] = await messages(sqlite_url, MessageRole.ASSISTANT)
        assert (reply.content, reply.status) == ("one two three", MessageStatus.ERROR)

    async def test_a_cancelled_stream_keeps_the_partial_answer(
        self, database_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = " ".join(f"word{i}" for i in range(60))
        fake_openai.token_delay = 0.05
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        with live_server(settings) as base:
            async with (
                httpx.AsyncClient(base_url=base, timeout=10) as client,
                client.stream(
                    "POST",
                    "/chatkit",
                    content=create(QUESTION).model_dump_json(),
                    headers={"Content-Type": "application/json"},
                ) as reply,
            ):
                shown = []
                async for line in reply.aiter_lines():
                    for event in parse_events(line + "\n\n"):
                        if isinstance(event, ThreadItemUpdatedEvent) and isinstance(
                            event.update, AssistantMessageContentPartTextDelta
                        ):
                            shown.append(event.update.delta)
                    if len(shown) == 3:
                        break
            # The server notices the hang-up, cancels the model call and stores what it had.
            replies: list[Message] = []
            for _ in range(200):
                replies = await messages(database_url, MessageRole.ASSISTANT)
                if replies:
                    break
                await asyncio.sleep(0.025)
        [partial] = replies
        assert partial.status == MessageStatus.PARTIAL
        assert partial.content.startswith("".join(shown))
        assert len(partial.content.split()) < 60


class TestRefusals:
    async def test_attachments_are_refused_in_the_protocols_shapes(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            events = await stream(client, create(QUESTION, attachments=["atc_1"]))
            removed = await send(
                client, AttachmentsDeleteReq(params=AttachmentDeleteParams(attachment_id="atc_1"))
            )

        [error] = events
        assert isinstance(error, ErrorEvent)
        assert error.message == "Attachments are not supported yet: ask in text."
        assert not error.allow_retry
        assert removed.status_code == 400
        assert removed.json()["error"]["code"] == "validation_error"
        assert await stored(sqlite_url, Message) == []

    @pytest.mark.parametrize(
        "body",
        [b"not json", b'{"type": "threads.nope", "params": {}}', b'{"type": "threads.create"}'],
    )
    async def test_a_body_that_is_no_chatkit_request_is_a_400(
        self, body: bytes, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.post(
                "/api/v1/chatkit", content=body, headers={"Content-Type": "application/json"}
            )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "validation_error"

    async def test_anonymous_readers_are_refused_when_chat_needs_sign_in(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url, require_auth_for_chat=True)) as client:
            response = await send(client, list_threads())
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"

    async def test_turns_count_against_the_chat_rate_limit_and_reads_do_not(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url, rate_limit_chat="1/minute")
        async with app_factory(settings) as client:
            thread = thread_of(await stream(client, create(QUESTION)))
            limited = await send(client, add(thread.id, "And subscribers?"))
            reads: list[Any] = [
                await send(client, list_items(thread.id)),
                await send(client, get_thread(thread.id)),
            ]

        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert [r.status_code for r in reads] == [200, 200]


class TestLimits:
    async def test_the_page_the_reader_is_on_goes_with_the_question(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url, **openai_settings(fake_openai))
        request = create(QUESTION)
        request.metadata = {"page_context": "https://example.org/book/basics/messaging"}
        async with app_factory(settings) as client:
            await stream(client, request)
        [question] = await messages(sqlite_url, MessageRole.USER)
        assert question.page_context == "https://example.org/book/basics/messaging"

    async def test_turns_are_charged_to_the_token_budget(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        # Less than any prompt of the book's passages: nothing may be sent to the model.
        settings = await book_settings(
            sqlite_url, token_budget_anonymous_daily=50, **openai_settings(fake_openai)
        )
        async with app_factory(settings) as client:
            events = await stream(client, create(QUESTION))

        error = events[-1]
        assert isinstance(error, ErrorEvent)
        assert error.allow_retry  # tomorrow, or with a smaller question
        assert error.message is not None
        assert "00:00 UTC" in error.message
        assert fake_openai.chat_requests() == []
        assert [m.content for m in await messages(sqlite_url, MessageRole.USER)] == [QUESTION]

    async def test_a_body_over_the_limit_is_a_413(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url, max_request_bytes=1000)) as client:
            response = await send(client, create("x" * 2000))
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert await stored(sqlite_url, ChatSession) == []

    async def test_requests_are_counted_in_the_metrics(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(await book_settings(sqlite_url)) as client:
            await stream(client, create(QUESTION))
            await send(client, list_threads(), path="/api/v1/chatkit")
            text = (await client.get("/metrics")).text
        assert (
            value(
                text,
                "bookchat_http_requests_total",
                book="default",
                method="POST",
                route="/chatkit",
                status="200",
            )
            == 1
        )
        assert (
            value(
                text,
                "bookchat_http_requests_total",
                book="default",
                method="POST",
                route="/api/v1/chatkit",
                status="200",
            )
            == 1
        )
