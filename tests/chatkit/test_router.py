"""`POST /chatkit` driven with the protocol's own requests, on SQLite and PostgreSQL, with the
real `openai` SDK against the fake model server; every event and body is read back through the
SDK's pydantic types."""

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
    StreamOptionsEvent,
    Thread,
    ThreadCreatedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadRetryAfterItemParams,
    ThreadsRetryAfterItemReq,
    ThreadStreamEvent,
    ThreadUpdatedEvent,
    URLSource,
    UserMessageItem,
)

from bookchat.chat.models import ChatSession, Message, MessageFeedback, MessageRole, MessageStatus
from tests.chatkit.protocol import (
    ITEMS,
    THREAD,
    THREADS,
    add,
    create,
    delete,
    events_of,
    feedback,
    fetch,
    get_thread,
    list_items,
    list_threads,
    parse_events,
    rename,
    send,
    stream,
)
from tests.conftest import AppFactory, live_server, make_settings, openai_settings
from tests.factories import QUESTION, bearer, book_settings, sign_up, stored
from tests.fakes.openai_server import FakeOpenAIServer
from tests.metrics.test_router import value
from tests.prompt_layout import sent_prompt

CITED = "Publishers send messages on a topic [1]."
MESSAGING_URL = "https://example.org/book/basics/messaging#publishers-and-subscribers"


def answer_item(events: list[ThreadStreamEvent]) -> AssistantMessageItem:
    [done] = [
        e.item
        for e in events
        if isinstance(e, ThreadItemDoneEvent) and isinstance(e.item, AssistantMessageItem)
    ]
    assert isinstance(done, AssistantMessageItem)
    return done


def thread_of(events: list[ThreadStreamEvent]) -> Thread:
    assert isinstance(events[0], ThreadCreatedEvent)
    return events[0].thread


def deltas(events: list[ThreadStreamEvent]) -> str:
    return "".join(
        e.update.delta
        for e in events
        if isinstance(e, ThreadItemUpdatedEvent)
        and isinstance(e.update, AssistantMessageContentPartTextDelta)
    )


async def messages(database_url: str, role: MessageRole) -> list[Message]:
    return await stored(database_url, Message, role=role, order_by=(Message.created_at,))


class TestConversation:
    async def test_a_new_thread_streams_a_cited_answer(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        fake_openai.reply = CITED
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            events = await stream(client, create(QUESTION))
            thread = thread_of(events)
            items = await fetch(client, list_items(thread.id), ITEMS)

        # The protocol's order: the thread, the reader's message, the stream's options, then the
        # answer: added, its text part, the deltas, its sources, the part and the item done.
        kinds = [
            type(e.update).__name__ if isinstance(e, ThreadItemUpdatedEvent) else type(e).__name__
            for e in events
            if not isinstance(e, ThreadUpdatedEvent)
        ]
        assert kinds[:5] == [
            "ThreadCreatedEvent",
            "ThreadItemDoneEvent",
            "StreamOptionsEvent",
            "ThreadItemAddedEvent",
            "AssistantMessageContentPartAdded",
        ]
        assert kinds[-3:] == [
            "AssistantMessageContentPartAnnotationAdded",
            "AssistantMessageContentPartDone",
            "ThreadItemDoneEvent",
        ]
        assert set(kinds[5:-3]) == {"AssistantMessageContentPartTextDelta"}
        assert isinstance(events[2], StreamOptionsEvent)
        assert events[2].stream_options.allow_cancel
        # The thread is titled after its first question, and the client told so.
        [updated] = [e for e in events if isinstance(e, ThreadUpdatedEvent)]
        assert updated.thread.title == QUESTION

        answer = answer_item(events)
        [content] = answer.content
        assert deltas(events) == content.text == CITED
        [annotation] = content.annotations
        assert isinstance(annotation.source, URLSource)
        assert annotation.source.url == MESSAGING_URL
        assert annotation.source.title == "Publishers and subscribers"
        assert annotation.index == CITED.index("[1]") + len("[1]")

        # What was streamed is what is stored, under the ids the client holds.
        [question] = await messages(database_url, MessageRole.USER)
        [reply] = await messages(database_url, MessageRole.ASSISTANT)
        assert (reply.content, reply.status, reply.mode) == (CITED, MessageStatus.COMPLETE, "rag")
        assert question.content == QUESTION
        user_item = events[1]
        assert isinstance(user_item, ThreadItemDoneEvent)
        assert [i.id for i in items.data] == [user_item.item.id, answer.id]
        assert isinstance(items.data[1], AssistantMessageItem)
        assert items.data[1].content == answer.content
        assert thread.id == f"thr_{question.session_id.hex}"

    async def test_the_offline_answerer_streams_a_cited_answer(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(await book_settings(sqlite_url)) as client:
            events = await stream(client, create(QUESTION))

        [content] = answer_item(events).content
        assert deltas(events) == content.text
        assert "[1]" in content.text
        urls = [a.source.url for a in content.annotations if isinstance(a.source, URLSource)]
        assert MESSAGING_URL in urls
        [reply] = await messages(sqlite_url, MessageRole.ASSISTANT)
        assert (reply.content, reply.model) == (content.text, "extractive")

    async def test_a_follow_up_reaches_the_model_with_the_last_ten_messages(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            thread = thread_of(await stream(client, create(f"{QUESTION} (1)")))
            for turn in range(2, 8):
                events = await stream(client, add(thread.id, f"{QUESTION} ({turn})"))
                assert deltas(events) == f"Fake answer to: {QUESTION} ({turn})"
            loaded = await fetch(client, get_thread(thread.id), THREAD)

        # Six turns before the seventh: the last ten of their twelve messages go with it.
        _, sent = sent_prompt(fake_openai)
        assert sent.conversation == [
            *(
                text
                for turn in range(2, 7)
                for text in (f"{QUESTION} ({turn})", f"Fake answer to: {QUESTION} ({turn})")
            ),
            f"{QUESTION} (7)",
        ]
        assert len(loaded.items.data) == 14
        assert await stored(database_url, ChatSession) != []
        assert len(await stored(database_url, ChatSession)) == 1

    async def test_quoted_text_is_the_only_context(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        selection = "A URDF file describes the links and joints of a robot."
        async with app_factory(settings) as client:
            thread = thread_of(await stream(client, create(QUESTION)))
            events = await stream(client, add(thread.id, "Explain this", quoted_text=selection))
            items = await fetch(client, list_items(thread.id), ITEMS)

        system, sent = sent_prompt(fake_openai)
        assert "solely from the selected text" in system
        assert [(b.name, b.text) for b in sent.blocks] == [
            ("selection", selection),
            ("question", "Explain this"),
        ]
        assert "publisher" not in sent.outside.lower()
        assert deltas(events) == "Fake answer to: Explain this"
        replies = await messages(database_url, MessageRole.ASSISTANT)
        assert replies[-1].mode == "selected_text"
        asked = items.data[2]
        assert isinstance(asked, UserMessageItem)
        assert asked.quoted_text == selection

    async def test_a_retry_answers_the_same_question_again(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            events = await stream(client, create(QUESTION))
            thread, first = thread_of(events), answer_item(events)
            question = events[1]
            assert isinstance(question, ThreadItemDoneEvent)
            retried = await stream(
                client,
                ThreadsRetryAfterItemReq(
                    params=ThreadRetryAfterItemParams(thread_id=thread.id, item_id=question.item.id)
                ),
            )
            items = await fetch(client, list_items(thread.id), ITEMS)

        second = answer_item(retried)
        assert second.id != first.id
        assert [i.id for i in items.data] == [question.item.id, second.id]
        assert len(await messages(sqlite_url, MessageRole.USER)) == 1


class TestThreads:
    async def test_list_load_rename_delete_with_pagination(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            reader = bearer((await sign_up(client, "reader@example.org"))["access_token"])
            ids = []
            for n in range(3):
                events = await stream(client, create(f"{QUESTION} {n}"), headers=reader)
                ids.append(thread_of(events).id)

            first = await fetch(client, list_threads(limit=2), THREADS, headers=reader)
            rest = await fetch(
                client, list_threads(limit=2, after=first.after), THREADS, headers=reader
            )
            oldest_first = await fetch(client, list_threads(order="asc"), THREADS, headers=reader)
            page = await fetch(client, list_items(ids[0], limit=1), ITEMS, headers=reader)
            next_page = await fetch(
                client, list_items(ids[0], limit=1, after=page.after), ITEMS, headers=reader
            )
            newest_item = await fetch(
                client, list_items(ids[0], limit=1, order="desc"), ITEMS, headers=reader
            )
            renamed = await fetch(client, rename(ids[1], "Messaging"), THREAD, headers=reader)
            loaded = await fetch(client, get_thread(ids[1]), THREAD, headers=reader)
            deleted = await send(client, delete(ids[2]), headers=reader)
            gone = await send(client, get_thread(ids[2]), headers=reader)
            after_delete = await fetch(client, list_threads(), THREADS, headers=reader)

        assert [t.id for t in first.data] == [ids[2], ids[1]]
        assert first.has_more
        assert first.after == ids[1]
        assert [t.id for t in rest.data] == [ids[0]]
        assert not rest.has_more
        assert rest.after is None
        assert [t.id for t in oldest_first.data] == ids
        assert [t.title for t in oldest_first.data] == [f"{QUESTION} {n}" for n in range(3)]
        assert isinstance(page.data[0], UserMessageItem)
        assert page.has_more
        assert isinstance(next_page.data[0], AssistantMessageItem)
        assert not next_page.has_more
        assert newest_item.data[0].id == next_page.data[0].id
        assert renamed.title == loaded.title == "Messaging"
        assert [type(i) for i in loaded.items.data] == [UserMessageItem, AssistantMessageItem]
        assert deleted.status_code == 200
        assert deleted.json() == {}
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "not_found"
        assert [t.id for t in after_delete.data] == [ids[1], ids[0]]
        titles = {s.title for s in await stored(database_url, ChatSession)}
        assert titles == {f"{QUESTION} 0", "Messaging"}
        assert len(await stored(database_url, Message)) == 4  # the deleted thread's went with it

    async def test_another_readers_thread_is_not_found(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            owner = bearer((await sign_up(client, "owner@example.org"))["access_token"])
            other = bearer((await sign_up(client, "other@example.org"))["access_token"])
            events = await stream(client, create(QUESTION), headers=owner)
            thread, answer = thread_of(events), answer_item(events)
            attempts = [
                await send(client, request, headers=other)
                for request in (
                    get_thread(thread.id),
                    list_items(thread.id),
                    rename(thread.id, "Mine now"),
                    delete(thread.id),
                    feedback(thread.id, [answer.id], "negative"),
                    add(thread.id, "And subscribers?"),
                )
            ]
            others_list = await fetch(client, list_threads(), THREADS, headers=other)
            anonymous_list = await fetch(client, list_threads(), THREADS)
            owners = await fetch(client, get_thread(thread.id), THREAD, headers=owner)

        assert [r.status_code for r in attempts] == [404] * 6
        assert {r.json()["error"]["code"] for r in attempts} == {"not_found"}
        assert others_list.data == anonymous_list.data == []
        assert owners.title == QUESTION
        assert len(owners.items.data) == 2
        assert await stored(database_url, MessageFeedback) == []

    async def test_unknown_and_malformed_ids_are_not_found(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            responses = [
                await send(client, get_thread(thread_id))
                for thread_id in ("thr_" + "0" * 32, "thr_nothex", "no-prefix", "msg_" + "1" * 32)
            ]
        assert [r.status_code for r in responses] == [404] * 4


class TestFeedback:
    async def test_thumbs_are_stored_as_feedback(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            account = await sign_up(client, "reader@example.org")
            reader = bearer(account["access_token"])
            events = await stream(client, create(QUESTION), headers=reader)
            thread, answer = thread_of(events), answer_item(events)
            up = await send(client, feedback(thread.id, [answer.id], "positive"), headers=reader)
            down = await send(client, feedback(thread.id, [answer.id], "negative"), headers=reader)

        assert (up.status_code, up.json(), down.status_code) == (200, {}, 200)
        [row] = await stored(database_url, MessageFeedback)
        assert row.rating == -1  # the second thumb replaced the first
        assert f"msg_{row.message_id.hex}" == answer.id
        assert str(row.user_id) == account["user"]["id"]


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
                text, "bookchat_http_requests_total", method="POST", route="/chatkit", status="200"
            )
            == 1
        )
        assert (
            value(
                text,
                "bookchat_http_requests_total",
                method="POST",
                route="/api/v1/chatkit",
                status="200",
            )
            == 1
        )
