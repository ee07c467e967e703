"""The chat API, end to end through the real SDK and the fake model, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from bookchat.chat.models import ChatSession, Message, MessageRole
from tests.conftest import AppFactory, make_settings, openai_settings
from tests.factories import QUESTION, book_settings, post_chat, stored
from tests.fakes.openai_server import FakeOpenAIServer

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
        sent = fake_openai.chat_requests()[-1]["messages"]
        assert [(m["role"], m["content"]) for m in sent[1:]] == [
            ("user", QUESTION),
            ("assistant", f"Fake answer to: {QUESTION}"),
            ("user", FOLLOW_UP),
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
        assert len(fake_openai.chat_requests()[-1]["messages"]) == 2


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
        assert '"Robots for Poets"' in system["content"]
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

        sent = fake_openai.chat_requests()[-1]["messages"]
        assert sent[0]["role"] == "system"
        history = [m["content"] for m in sent[1:-1]]
        # Turns 0-5 stored 12 messages; the last 10 start at turn 1's question.
        assert history == [
            text
            for turn in range(1, 6)
            for text in (f"{QUESTION} ({turn})", f"Fake answer to: {QUESTION} ({turn})")
        ]
        assert sent[-1] == {"role": "user", "content": f"{QUESTION} (6)"}

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

        sent = fake_openai.chat_requests()[-1]["messages"]
        assert [m["content"] for m in sent[1:]] == ["q1", "Fake answer to: q1", "q2"]

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
        sent = fake_openai.chat_requests()[-1]["messages"]
        # No history: the system prompt with the selection, then the question.
        assert [m["role"] for m in sent] == ["system", "user"]
        assert selection in sent[0]["content"]
        assert "solely from the selected text" in sent[0]["content"]
        assert "publisher" not in sent[0]["content"].lower()
        assert sent[1]["content"] == "Explain this"
        messages = await stored(database_url, Message, order_by=IN_ORDER)
        assert messages[2].selected_text == selection
        assert messages[2].page_context == "https://example.org/book/urdf"


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
        settings = await book_settings(
            database_url, **{**openai_settings(fake_openai), "llm_timeout_seconds": 0.5}
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
        assert [(m.role, m.content) for m in messages] == [(MessageRole.USER, QUESTION)]

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
        history = [m["content"] for m in fake_openai.chat_requests()[-1]["messages"][1:]]
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
