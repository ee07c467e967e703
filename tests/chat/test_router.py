"""The chat API, end to end through the real SDK and the fake model, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import event

from bookchat.chat.models import ChatSession, Message, MessageRole, MessageStatus
from bookchat.main import create_app
from tests.conftest import AppFactory, make_settings, openai_settings
from tests.factories import (
    CITING_SHOWN,
    PUBLISHERS_BOOK,
    QUESTION,
    ask,
    book_settings,
    citing_reply,
    heading,
    post_chat,
    sources_sent,
    stored,
)
from tests.fakes.openai_server import FakeOpenAIServer
from tests.prompt_layout import sent_prompt

FOLLOW_UP = "And who receives them?"
IN_ORDER = (Message.created_at, Message.id)


class TestChatContract:
    """The seed's `/chat` contract and its `/api/v1/chat` twin."""

    @pytest.mark.parametrize("path", ["/chat", "/api/v1/chat", "/api/chat"])
    async def test_new_message_starts_a_session_and_answers(
        self,
        path: str,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
    ) -> None:
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            response = await client.post(path, json={"message": QUESTION})

        assert response.status_code == 200
        body = response.json()
        assert body["response"] == f"Fake answer to: {QUESTION}"
        assert uuid.UUID(body["session_id"])
        assert datetime.fromisoformat(body["timestamp"]).utcoffset() is not None
        assert body["mode"] == "rag"
        assert body["model"] == "gpt-4o-mini"
        assert body["usage"]["total_tokens"] > 0
        assert body["citations"][0]["page_url"] == (
            "https://example.org/book/basics/messaging#publishers-and-subscribers"
        )
        messages = await stored(database_url, Message, order_by=IN_ORDER)
        assert [(m.role, m.content) for m in messages] == [
            (MessageRole.USER, QUESTION),
            (MessageRole.ASSISTANT, f"Fake answer to: {QUESTION}"),
        ]
        assert messages[1].mode == "rag"
        assert str(messages[1].id) == body["message_id"]
        assert messages[1].model == "gpt-4o-mini"
        assert messages[1].created_at.tzinfo is not None

    async def test_session_id_continues_the_conversation(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            first = (await client.post("/chat", json={"message": QUESTION})).json()
            second = await client.post(
                "/chat", json={"message": FOLLOW_UP, "session_id": first["session_id"]}
            )

        assert second.json()["session_id"] == first["session_id"]
        _, sent = sent_prompt(fake_openai)
        assert [(b.name, b.text) for b in sent.blocks if b.name != "source"] == [
            ("reader", QUESTION),
            ("assistant", f"Fake answer to: {QUESTION}"),
            ("question", FOLLOW_UP),
        ]
        assert len(await stored(database_url, ChatSession)) == 1

    async def test_conversation_id_is_a_synonym(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            first = (await client.post("/chat", json={"message": "Hi"})).json()
            second = await client.post(
                "/chat", json={"message": "Again", "conversation_id": first["session_id"]}
            )
        assert second.json()["session_id"] == first["session_id"]

    @pytest.mark.parametrize("session_id", ["not-a-uuid", str(uuid.UUID(int=7)), "", None], ids=str)
    async def test_malformed_or_unknown_session_starts_a_new_one(
        self,
        session_id: str | None,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
    ) -> None:
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            response = await client.post(
                "/chat", json={"message": QUESTION, "session_id": session_id}
            )

        assert response.status_code == 200
        assert response.json()["session_id"] != session_id
        sessions = await stored(database_url, ChatSession)
        assert [str(s.id) for s in sessions] == [response.json()["session_id"]]
        # The model saw no history: a new session starts clean.
        assert sent_prompt(fake_openai)[1].conversation == [QUESTION]


class TestPrompt:
    """What the model is sent."""

    async def test_system_prompt_names_the_book(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(
            sqlite_url, book_title="Robots for Poets", **openai_settings(fake_openai)
        )
        async with app_factory(settings) as client:
            await client.post("/chat", json={"message": QUESTION})

        request = fake_openai.chat_requests()[-1]
        system = request["messages"][0]
        assert system["role"] == "system"
        assert system["content"].startswith(
            'You are the teaching assistant of the textbook "Robots for Poets".'
        )
        assert "Answer only from the numbered sources" in system["content"]
        assert request["temperature"] == pytest.approx(0.2)
        assert request["model"] == "gpt-4o-mini"
        assert fake_openai.requests[-1].headers["authorization"] == "Bearer sk-test-key"

    async def test_only_the_last_ten_messages_oldest_first(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            session_id = None
            for turn in range(7):
                body = (
                    await client.post(
                        "/chat",
                        json={"message": f"{QUESTION} ({turn})", "session_id": session_id},
                    )
                ).json()
                session_id = body["session_id"]
                assert body["mode"] == "rag"

        _, sent = sent_prompt(fake_openai)
        # Turns 0-5 stored 12 messages; the last 10 start at turn 1's question.
        assert sent.conversation == [
            *(
                text
                for turn in range(1, 6)
                for text in (f"{QUESTION} ({turn})", f"Fake answer to: {QUESTION} ({turn})")
            ),
            f"{QUESTION} (6)",
        ]

    async def test_history_setting_is_honoured(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(
            sqlite_url, history_messages=2, **openai_settings(fake_openai)
        )
        async with app_factory(settings) as client:
            session_id = None
            for turn in range(3):
                body = (
                    await client.post(
                        "/chat", json={"message": f"q{turn}", "session_id": session_id}
                    )
                ).json()
                session_id = body["session_id"]

        assert sent_prompt(fake_openai)[1].conversation == ["q1", "Fake answer to: q1", "q2"]

    async def test_selected_text_is_the_only_context(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        selection = "A URDF file describes the links and joints of a robot."
        async with app_factory(settings) as client:
            first = (await client.post("/chat", json={"message": QUESTION})).json()
            response = await client.post(
                "/chat",
                json={
                    "message": "Explain this",
                    "selected_text": selection,
                    "session_id": first["session_id"],
                    "page_context": "https://example.org/book/urdf",
                },
            )

        body = response.json()
        assert body["mode"] == "selected_text"
        assert body["citations"][0]["title"] == "Selected text"
        assert body["citations"][0]["page_url"] == "https://example.org/book/urdf"
        system, sent = sent_prompt(fake_openai)
        # No history and no passage: the selection, then the question.
        assert "solely from the selected text" in system
        assert [(b.name, b.text) for b in sent.blocks] == [
            ("selection", selection),
            ("question", "Explain this"),
        ]
        assert "publisher" not in sent.outside.lower()
        messages = await stored(database_url, Message, order_by=IN_ORDER)
        assert messages[2].selected_text == selection
        assert messages[2].page_context == "https://example.org/book/urdf"


class TestCitations:
    """What the reader sees of the model's `[n]` markers: no gaps, numbered in order of use."""

    async def test_cited_sources_are_numbered_in_order_of_first_use(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        fake_openai.reply = citing_reply
        settings = await book_settings(
            database_url, PUBLISHERS_BOOK, **openai_settings(fake_openai)
        )
        async with app_factory(settings) as client:
            body = await ask(client)
            history = await client.get(f"/api/v1/chat/history/{body['session_id']}")

        given = sources_sent(fake_openai.chat_requests()[-1])  # the model's [1]..[5]
        assert len(given) == 5
        assert body["response"] == CITING_SHOWN
        assert [(c["index"], heading(c), c["cited"]) for c in body["citations"]] == [
            (1, given[2], True),
            (2, given[0], True),
            (3, given[1], False),
            (4, given[3], False),
            (5, given[4], False),
        ]
        [reply] = await stored(database_url, Message, role=MessageRole.ASSISTANT)
        assert (reply.content, reply.citations) == (body["response"], body["citations"])
        answer = history.json()["messages"][1]
        assert (answer["content"], answer["citations"]) == (body["response"], body["citations"])

    async def test_a_selection_is_the_one_source(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        fake_openai.reply = citing_reply
        async with app_factory(make_settings(sqlite_url, **openai_settings(fake_openai))) as client:
            body = await ask(client, "Explain this", selected_text="Nodes talk over topics.")

        assert body["response"] == "A. B [1]. C."
        assert [(c["index"], c["title"], c["cited"]) for c in body["citations"]] == [
            (1, "Selected text", True)
        ]

    async def test_a_question_the_book_does_not_cover_cites_nothing(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            body = await ask(client, "What is the capital of France?")

        assert body["mode"] == "no_context"
        assert body["citations"] == []
        assert "[" not in body["response"]


class TestOfflineAnswers:
    """The extractive answerer labels itself and answers only from what it is given."""

    async def test_book_answers_quote_the_book_with_valid_citations(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(await book_settings(database_url)) as client:
            response = await client.post(
                "/chat", json={"message": "How does a biped keep its balance?"}
            )

        body = response.json()
        assert body["mode"] == "rag"
        assert body["model"] == "extractive"
        assert "zero moment point inside the support polygon" in body["response"]
        cited = [c for c in body["citations"] if c["cited"]]
        assert cited
        assert cited[0]["page_url"] == "https://example.org/book/motion/walking#balance"
        for citation in cited:
            assert f"[{citation['index']}]" in body["response"]

    async def test_selection_is_quoted_with_its_marker(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        selection = (
            "ROS 2 uses DDS as its middleware. Nodes exchange messages over topics. "
            "A launch file starts several nodes at once."
        )
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.post(
                "/chat",
                json={"message": "How do nodes exchange messages?", "selected_text": selection},
            )

        body = response.json()
        assert body["mode"] == "selected_text"
        assert body["response"].startswith("Nodes exchange messages over topics. [1]")
        assert body["citations"][0]["cited"] is True


class TestValidation:
    """Bad input: 400 `validation_error` in the documented shape, nothing stored."""

    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            ({"message": ""}, "message"),
            ({"message": "   \n\t "}, "message"),
            ({"message": "x" * 2001}, "message"),
            ({"message": 42}, "message"),
            ({"message": ["a"]}, "message"),
            ({}, "message"),
            ({"message": "ok", "session_id": 12}, "session_id"),
            ({"message": "ok", "selected_text": "y" * 20_001}, "selected_text"),
            ({"message": "ok", "page_context": "p" * 3000}, "page_context"),
        ],
        ids=[
            "empty",
            "whitespace",
            "too-long",
            "number",
            "list",
            "missing",
            "session-type",
            "selection-too-long",
            "page-too-long",
        ],
    )
    async def test_rejected_with_400(
        self, payload: dict[str, object], field: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.post("/api/v1/chat", json=payload)

        assert response.status_code == 400
        body = response.json()
        assert body["error"]["code"] == "validation_error"
        assert field in body["error"]["message"]
        assert body["request_id"] == response.headers["x-request-id"]
        assert await stored(sqlite_url, Message, order_by=IN_ORDER) == []

    async def test_blank_message_says_so_in_words(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await post_chat(client, "   ")
        assert response.json()["error"]["message"] == "message: must not be empty or only spaces"

    async def test_message_of_exactly_the_limit_is_accepted(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.post("/chat", json={"message": "  " + "x" * 2000 + "  "})
        assert response.status_code == 200

    async def test_selection_limit_is_stated(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.post(
                "/chat", json={"message": "explain", "selected_text": "y" * 20_001}
            )
        assert "20000 characters" in response.json()["error"]["message"]

    @pytest.mark.parametrize(
        "content", [b"{not json", b"", b"[1, 2]", b'"just a string"'], ids=repr
    )
    async def test_malformed_body(
        self, content: bytes, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.post(
                "/chat", content=content, headers={"content-type": "application/json"}
            )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "validation_error"


class TestModelFailures:
    """The model fails: a clear status and code, no vendor text, the question kept."""

    @pytest.mark.parametrize(
        ("inject", "status", "code"),
        [
            ("429", 503, "llm_unavailable"),
            ("500", 503, "llm_unavailable"),
            ("400", 502, "llm_error"),
            ("401", 503, "llm_unavailable"),
            ("hang", 504, "llm_timeout"),
        ],
    )
    async def test_failure_is_mapped_and_question_kept(
        self,
        inject: str,
        status: int,
        code: str,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
    ) -> None:
        # A short timeout only where the model hangs: a failure that answers at once must not
        # turn into a timeout on a loaded machine (seen: 0.55 s for a 500 in CI).
        timeout = 0.5 if inject == "hang" else 2.0
        settings = await book_settings(
            database_url, **{**openai_settings(fake_openai), "llm_timeout_seconds": timeout}
        )
        if inject == "hang":
            fake_openai.hang_next(5.0)
        else:
            fake_openai.fail_next(int(inject), message="secret vendor detail sk-live-123")
        async with app_factory(settings) as client:
            response = await client.post("/chat", json={"message": QUESTION})

        assert response.status_code == status
        body = response.json()
        assert body["error"]["code"] == code
        assert "secret vendor detail" not in response.text
        assert "sk-live" not in response.text
        messages = await stored(database_url, Message, order_by=IN_ORDER)
        # The question, and the failed answer as a stream would store it (nothing was shown).
        assert [(m.role, m.content, m.status) for m in messages] == [
            (MessageRole.USER, QUESTION, MessageStatus.COMPLETE),
            (MessageRole.ASSISTANT, "", MessageStatus.ERROR),
        ]

    async def test_next_turn_after_a_failure_works(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            first = (await client.post("/chat", json={"message": QUESTION})).json()
            # The follow-up's rewrite call fails (it falls back), then the answer call fails.
            fake_openai.fail_next(500, times=2)
            failed = await client.post(
                "/chat", json={"message": "Second", "session_id": first["session_id"]}
            )
            third = await client.post(
                "/chat", json={"message": "Third", "session_id": first["session_id"]}
            )

        assert failed.status_code == 503
        assert third.status_code == 200
        history = sent_prompt(fake_openai)[1].conversation
        assert history == [QUESTION, f"Fake answer to: {QUESTION}", "Second", "Third"]

    async def test_sdk_retries_are_used(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(
            sqlite_url, **{**openai_settings(fake_openai), "llm_max_retries": 1}
        )
        fake_openai.fail_next(500)
        async with app_factory(settings) as client:
            response = await client.post("/chat", json={"message": QUESTION})
        assert response.status_code == 200
        assert len(fake_openai.chat_requests()) == 2


class TestDatabaseOutage:
    async def test_unreachable_database_is_503(self, app_factory: AppFactory) -> None:
        settings = make_settings("postgresql://nobody@127.0.0.1:1/none")
        async with app_factory(settings) as client:
            response = await client.post("/chat", json={"message": "Anyone there?"})

        assert response.status_code == 503
        assert response.json()["error"]["code"] == "dependency_unavailable"
        assert "127.0.0.1" not in response.text


class TestWritesPerTurn:
    """What a turn writes: the question before the model is asked, then the answer."""

    async def test_a_first_question_is_stored_with_its_search_query(
        self, database_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        app = create_app(settings)
        writes: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            words = statement.split()
            if words[0] in {"INSERT", "UPDATE", "DELETE"}:
                table = words[2] if words[0] != "UPDATE" else words[1]
                writes.append(f"{words[0]} {table}")

        async with LifespanManager(app) as manager:
            event.listen(app.state.container.engine.sync_engine, "before_cursor_execute", record)
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                first = (await post_chat(client, QUESTION)).json()
                first_turn, writes[:] = list(writes), []
                await post_chat(client, FOLLOW_UP, session_id=first["session_id"])

        # One write transaction before the model is called, one after; no UPDATE of the
        # question, whose search query (the question as asked) was stored with it.
        assert first_turn == ["INSERT chat_sessions", "INSERT messages", "INSERT messages"]
        # A follow-up's search query is the model's rewrite: it comes with the answer.
        assert writes == [
            "UPDATE chat_sessions",
            "INSERT messages",
            "INSERT messages",
            "UPDATE messages",
        ]
        questions = await stored(database_url, Message, order_by=IN_ORDER, role=MessageRole.USER)
        assert questions[0].search_query == QUESTION
        assert questions[1].search_query not in (None, QUESTION)
