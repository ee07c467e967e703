"""Conversation management: history pages, deleting a session, feedback on answers; through the
real API on SQLite and PostgreSQL, conversations made by the offline answerer."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from bookchat.accounts.service import create_user
from bookchat.chat.conversations import ConversationService
from bookchat.chat.models import ChatSession, Message, MessageFeedback
from tests.conftest import AppFactory, make_settings
from tests.factories import ask, bearer, count, open_db, sign_up, stored

SELECTION = (
    "ROS 2 uses DDS as its middleware. Nodes exchange messages over topics. "
    "A launch file starts several nodes at once."
)


async def conversation(client: httpx.AsyncClient, turns: int) -> str:
    """A session with `turns` questions and answers; returns its id."""
    session_id: str | None = None
    for turn in range(turns):
        session_id = (await ask(client, f"question {turn}", session_id=session_id))["session_id"]
    assert session_id is not None
    return session_id


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["request_id"] == response.headers["x-request-id"]


class TestChatHistory:
    """`GET /api/v1/chat/history/{session_id}`."""

    async def test_messages_oldest_first_with_citations(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            first = await ask(client, "What is ROS 2?")
            second = await ask(
                client,
                "How do nodes exchange messages?",
                session_id=first["session_id"],
                selected_text=SELECTION,
                page_context="https://example.org/book/ros2",
            )
            response = await client.get(f"/api/v1/chat/history/{first['session_id']}")

        assert response.status_code == 200
        body = response.json()
        assert body["session_id"] == first["session_id"]
        assert body["title"] == "What is ROS 2?"
        assert body["has_more"] is False
        assert body["next_before"] is None
        messages = body["messages"]
        assert [(m["role"], m["content"]) for m in messages] == [
            ("user", "What is ROS 2?"),
            ("assistant", first["response"]),
            ("user", "How do nodes exchange messages?"),
            ("assistant", second["response"]),
        ]
        assert [m["id"] for m in messages][1::2] == [first["message_id"], second["message_id"]]
        stamps = [datetime.fromisoformat(m["created_at"]) for m in messages]
        assert stamps == sorted(stamps)
        assert all(stamp.utcoffset() is not None for stamp in stamps)

        question, answer = messages[2], messages[3]
        assert question["selected_text"] == SELECTION
        assert question["page_context"] == "https://example.org/book/ros2"
        assert question["citations"] == []
        assert question["usage"] is None
        assert question["latency_ms"] is None
        assert answer["citations"] == second["citations"]
        assert answer["citations"][0]["title"] == "Selected text"
        assert answer["citations"][0]["cited"] is True
        assert answer["status"] == "complete"
        assert answer["mode"] == second["mode"]
        assert answer["model"] == second["model"] == "extractive"
        assert answer["usage"] == second["usage"]
        assert answer["latency_ms"] == second["latency_ms"]

    async def test_pages_walk_back_without_gaps_or_duplicates(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            session_id = await conversation(client, turns=5)
            full = (await client.get(f"/api/v1/chat/history/{session_id}")).json()
            pages = []
            before = None
            for _ in range(4):
                params: dict[str, Any] = {"limit": 4}
                if before is not None:
                    params["before"] = before
                response = await client.get(f"/api/v1/chat/history/{session_id}", params=params)
                assert response.status_code == 200
                pages.append(response.json())
                before = pages[-1]["next_before"]
                if before is None:
                    break

        assert [len(p["messages"]) for p in pages] == [4, 4, 2]
        assert [p["has_more"] for p in pages] == [True, True, False]
        for page in pages[:-1]:
            # The cursor is the oldest message of the page it came with.
            assert page["next_before"] == page["messages"][0]["id"]
        # Newest page first; put them back in time order and they make the whole history.
        walked = [m for page in reversed(pages) for m in page["messages"]]
        assert [m["id"] for m in walked] == [m["id"] for m in full["messages"]]
        assert len({m["id"] for m in walked}) == 10
        assert [m["content"] for m in walked[::2]] == [f"question {t}" for t in range(5)]

    async def test_limit_larger_than_the_session(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            session_id = await conversation(client, turns=2)
            body = (
                await client.get(f"/api/v1/chat/history/{session_id}", params={"limit": 4})
            ).json()
        assert len(body["messages"]) == 4
        assert body["has_more"] is False
        assert body["next_before"] is None

    @pytest.mark.parametrize("session_id", [str(uuid.UUID(int=7)), "not-a-uuid"], ids=str)
    async def test_unknown_or_malformed_session_is_404(
        self, session_id: str, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            response = await client.get(f"/api/v1/chat/history/{session_id}")
        assert_error(response, 404, "not_found")

    async def test_before_must_be_a_message_of_the_session(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            session_id = await conversation(client, turns=1)
            other = await ask(client, "Another conversation")
            url = f"/api/v1/chat/history/{session_id}"
            responses = [
                await client.get(url, params={"before": before})
                for before in ["nope", str(uuid.uuid4()), other["message_id"]]
            ]
        for response in responses:
            assert_error(response, 400, "validation_error")
            assert response.json()["error"]["details"][0]["loc"] == ["query", "before"]

    @pytest.mark.parametrize("limit", ["0", "201", "-1", "many"])
    async def test_limit_out_of_range_is_400(
        self, limit: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            session_id = await conversation(client, turns=1)
            response = await client.get(
                f"/api/v1/chat/history/{session_id}", params={"limit": limit}
            )
        assert_error(response, 400, "validation_error")
        assert "limit" in response.json()["error"]["message"]

    async def test_api_alias(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            session_id = await conversation(client, turns=1)
            canonical = await client.get(f"/api/v1/chat/history/{session_id}")
            alias = await client.get(f"/api/chat/history/{session_id}")
        assert alias.status_code == 200
        assert alias.json() == canonical.json()


class TestDeleteChatSession:
    """`DELETE /api/v1/chat/{session_id}`."""

    async def test_deletes_the_session_its_messages_and_feedback(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            kept = await ask(client, "A conversation that stays")
            doomed = await ask(client, "A conversation to forget")
            await ask(client, "And a follow-up", session_id=doomed["session_id"])
            for answer in (kept, doomed):
                rated = await client.post(
                    f"/api/v1/chat/messages/{answer['message_id']}/feedback", json={"rating": 1}
                )
                assert rated.status_code == 201
            assert await count(database_url, MessageFeedback) == 2

            deleted = await client.delete(f"/api/v1/chat/{doomed['session_id']}")
            history = await client.get(f"/api/v1/chat/history/{doomed['session_id']}")
            again = await client.delete(f"/api/v1/chat/{doomed['session_id']}")
            still_there = await client.get(f"/api/v1/chat/history/{kept['session_id']}")

        assert deleted.status_code == 204
        assert deleted.content == b""
        assert_error(history, 404, "not_found")
        assert_error(again, 404, "not_found")
        doomed_id = uuid.UUID(doomed["session_id"])
        assert await count(database_url, ChatSession, id=doomed_id) == 0
        assert await count(database_url, Message, session_id=doomed_id) == 0
        # The other conversation and its feedback are untouched.
        assert len(still_there.json()["messages"]) == 2
        feedback = await stored(database_url, MessageFeedback)
        assert [str(f.message_id) for f in feedback] == [kept["message_id"]]
        assert await count(database_url, Message) == 2

    @pytest.mark.parametrize("session_id", [str(uuid.UUID(int=7)), "not-a-uuid"], ids=str)
    async def test_unknown_or_malformed_session_is_404(
        self, session_id: str, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            response = await client.delete(f"/api/v1/chat/{session_id}")
        assert_error(response, 404, "not_found")

    async def test_does_not_shadow_other_chat_routes(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            session_id = await conversation(client, turns=1)
            chat = await client.post("/api/v1/chat", json={"message": "Still answering?"})
            history = await client.get(f"/api/v1/chat/history/{session_id}")
        assert chat.status_code == 200
        assert history.status_code == 200

    async def test_api_alias(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            session_id = await conversation(client, turns=1)
            response = await client.delete(f"/api/chat/{session_id}")
        assert response.status_code == 204
        assert await count(sqlite_url, ChatSession) == 0


class TestMessageFeedback:
    """`POST /api/v1/chat/messages/{message_id}/feedback`."""

    async def test_created_then_updated_in_place(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            answer = await ask(client, "What is ROS 2?")
            url = f"/api/v1/chat/messages/{answer['message_id']}/feedback"
            created = await client.post(url, json={"rating": 1, "comment": "  Clear answer.  "})
            updated = await client.post(url, json={"rating": -1, "comment": "Wrong, on reflection"})

        assert created.status_code == 201
        first = created.json()
        assert first["message_id"] == answer["message_id"]
        assert first["rating"] == 1
        assert first["comment"] == "Clear answer."
        assert datetime.fromisoformat(first["created_at"]).utcoffset() is not None

        assert updated.status_code == 200
        second = updated.json()
        assert second["id"] == first["id"]
        assert second["rating"] == -1
        assert second["comment"] == "Wrong, on reflection"
        assert second["created_at"] == first["created_at"]
        assert datetime.fromisoformat(second["updated_at"]) >= datetime.fromisoformat(
            first["updated_at"]
        )

        rows = await stored(database_url, MessageFeedback)
        assert len(rows) == 1
        assert str(rows[0].id) == first["id"]
        assert (rows[0].rating, rows[0].comment, rows[0].user_id) == (
            -1,
            "Wrong, on reflection",
            None,
        )

    async def test_ratings_are_rate_limited_and_the_last_allowed_one_stays(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, rate_limit_feedback="2/minute")
        async with app_factory(settings) as client:
            answer = await ask(client, "What is ROS 2?")
            url = f"/api/v1/chat/messages/{answer['message_id']}/feedback"
            allowed = [await client.post(url, json={"rating": r}) for r in (1, -1)]
            refused = await client.post(url, json={"rating": 1, "comment": "third try"})

        assert [r.status_code for r in allowed] == [201, 200]
        assert_error(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) >= 1
        feedback = await stored(sqlite_url, MessageFeedback)
        assert [(f.rating, f.comment) for f in feedback] == [(-1, None)]

    async def test_the_history_shows_each_reader_their_own_rating(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            answer = await ask(client, "What is ROS 2?")  # an anonymous conversation
            url = f"/api/v1/chat/messages/{answer['message_id']}/feedback"
            alice = bearer((await sign_up(client, "alice@example.org"))["access_token"])
            await client.post(url, json={"rating": -1, "comment": "Too short"}, headers=alice)
            await client.post(url, json={"rating": 1})
            history = f"/api/v1/chat/history/{answer['session_id']}"
            as_guest = (await client.get(history)).json()["messages"]
            as_alice = (await client.get(history, headers=alice)).json()["messages"]

        assert [m["own_feedback"] for m in as_guest] == [None, {"rating": 1, "comment": None}]
        assert [m["own_feedback"] for m in as_alice] == [
            None,
            {"rating": -1, "comment": "Too short"},
        ]

    async def test_resending_without_a_comment_clears_it(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            answer = await ask(client, "What is ROS 2?")
            url = f"/api/v1/chat/messages/{answer['message_id']}/feedback"
            await client.post(url, json={"rating": -1, "comment": "Too short"})
            response = await client.post(url, json={"rating": -1})
        assert response.status_code == 200
        assert response.json()["comment"] is None
        feedback = await stored(sqlite_url, MessageFeedback)
        assert [(f.rating, f.comment) for f in feedback] == [(-1, None)]

    @pytest.mark.parametrize(
        "payload",
        [
            {"rating": 0},
            {"rating": 2},
            {"rating": "up"},
            {"rating": "1"},
            {"rating": True},
            {"rating": 1.5},
            {},
            {"rating": 1, "comment": "x" * 2001},
        ],
        ids=["zero", "two", "word", "string", "bool", "float", "missing", "long-comment"],
    )
    async def test_invalid_body_is_400(
        self, payload: dict[str, Any], database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            answer = await ask(client, "What is ROS 2?")
            response = await client.post(
                f"/api/v1/chat/messages/{answer['message_id']}/feedback", json=payload
            )
        assert_error(response, 400, "validation_error")
        field = "comment" if "comment" in payload else "rating"
        assert field in response.json()["error"]["message"]
        assert await stored(database_url, MessageFeedback) == []

    async def test_comment_of_exactly_the_limit_is_accepted(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            answer = await ask(client, "What is ROS 2?")
            response = await client.post(
                f"/api/v1/chat/messages/{answer['message_id']}/feedback",
                json={"rating": 1, "comment": "x" * 2000},
            )
        assert response.status_code == 201

    @pytest.mark.parametrize("message_id", [str(uuid.UUID(int=7)), "not-a-uuid"], ids=str)
    async def test_unknown_or_malformed_message_is_404(
        self, message_id: str, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            response = await client.post(
                f"/api/v1/chat/messages/{message_id}/feedback", json={"rating": 1}
            )
        assert_error(response, 404, "not_found")

    async def test_a_readers_own_message_cannot_be_rated(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            answer = await ask(client, "What is ROS 2?")
            history = (await client.get(f"/api/v1/chat/history/{answer['session_id']}")).json()
            question = history["messages"][0]
            assert question["role"] == "user"
            response = await client.post(
                f"/api/v1/chat/messages/{question['id']}/feedback", json={"rating": 1}
            )
        assert_error(response, 400, "validation_error")
        assert "assistant" in response.json()["error"]["message"]
        assert await stored(database_url, MessageFeedback) == []

    async def test_api_alias(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            answer = await ask(client, "What is ROS 2?")
            response = await client.post(
                f"/api/chat/messages/{answer['message_id']}/feedback", json={"rating": 1}
            )
        assert response.status_code == 201

    async def test_one_feedback_per_reader(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            answer = await ask(client, "What is ROS 2?")
        service = ConversationService()
        async with open_db(database_url) as db:
            alice = (await create_user(db, email="alice@example.org", password=None)).id
            bob = (await create_user(db, email="bob@example.org", password=None)).id
            outcomes = [
                (await service.give_feedback(db, answer["message_id"], rating, None, user))[1]
                for user, rating in [(alice, 1), (bob, -1), (None, 1), (alice, -1), (None, -1)]
            ]

        assert outcomes == [True, True, True, False, False]
        rows = {f.user_id: f.rating for f in await stored(database_url, MessageFeedback)}
        assert rows == {alice: -1, bob: -1, None: -1}


class TestConversationOpenAPI:
    async def test_routes_are_documented(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            schema = (await client.get("/openapi.json")).json()

        paths = schema["paths"]
        history = paths["/api/v1/chat/history/{session_id}"]["get"]
        assert {"200", "400", "404"} <= set(history["responses"])
        assert paths["/api/v1/chat/{session_id}"]["delete"]["responses"].keys() >= {"204", "404"}
        feedback = paths["/api/v1/chat/messages/{message_id}/feedback"]["post"]
        assert {"200", "201", "400", "404"} <= set(feedback["responses"])
        assert "422" not in feedback["responses"]
        rating = schema["components"]["schemas"]["FeedbackCreate"]["properties"]["rating"]
        assert sorted(rating["enum"]) == [-1, 1]
