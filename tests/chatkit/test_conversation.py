"""A conversation over `POST /chatkit`: streamed cited answers, follow-ups with their history,
quoted text, retries.

Driven with the protocol's own requests on SQLite and PostgreSQL, with the real `openai` SDK
against the fake model server; every event and body is read back through the SDK's types."""

from __future__ import annotations

from chatkit.types import (
    AssistantMessageItem,
    ErrorEvent,
    StreamOptionsEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadRetryAfterItemParams,
    ThreadsRetryAfterItemReq,
    ThreadUpdatedEvent,
    URLSource,
    UserMessageItem,
)

from bookchat.chat.models import ChatSession, MessageRole, MessageStatus
from bookchat.chat.turns import not_covered
from tests.chatkit.protocol import (
    CITED,
    ITEMS,
    MESSAGING_URL,
    THREAD,
    add,
    answer_item,
    create,
    deltas,
    fetch,
    get_thread,
    list_items,
    messages,
    stream,
    thread_of,
)
from tests.conftest import AppFactory, openai_settings
from tests.factories import QUESTION, book_settings, stored
from tests.fakes.openai_server import FakeOpenAIServer
from tests.prompt_layout import sent_prompt


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

    async def test_a_question_the_book_does_not_cover_is_an_ordinary_answer(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            events = await stream(client, create("What is the capital of France?"))

        assert not any(isinstance(e, ErrorEvent) for e in events)
        [content] = answer_item(events).content
        assert content.text == deltas(events) == not_covered(settings.book_title)
        assert content.annotations == []
        assert fake_openai.chat_requests() == []  # refused without asking the model
        [reply] = await messages(sqlite_url, MessageRole.ASSISTANT)
        assert (reply.mode, reply.status) == ("no_context", MessageStatus.COMPLETE)

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
