"""A reader's own data: deleting all of their conversations (`DELETE /api/v1/chat/sessions`)
and downloading them (`GET /api/v1/chat/sessions/export`); through the API on SQLite and
PostgreSQL, next to other readers' and anonymous conversations."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import httpx

from bookchat.chat.models import ChatSession, Message, MessageFeedback
from bookchat.chat.retention import delete_reader_sessions
from bookchat.chat.schemas import ConversationsExport
from bookchat.core.db import utcnow
from tests.conftest import AppFactory, make_settings
from tests.factories import (
    QUESTION,
    ask,
    bearer,
    book_settings,
    count,
    open_db,
    sign_up,
    stored,
)

SELECTION = "A publisher sends messages on a topic; every subscriber of that topic receives them."


async def rate(
    client: httpx.AsyncClient,
    answer: dict[str, Any],
    rating: int,
    *,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> None:
    response = await client.post(
        f"/api/v1/chat/messages/{answer['message_id']}/feedback",
        json={"rating": rating, **fields},
        headers=headers,
    )
    assert response.status_code == 201, response.text


async def reader(client: httpx.AsyncClient, email: str) -> tuple[uuid.UUID, dict[str, str]]:
    account = await sign_up(client, email)
    return uuid.UUID(account["user"]["id"]), bearer(account["access_token"])


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"


class TestDeleteAllSessions:
    async def test_needs_a_signed_in_reader(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            anonymous = await ask(client, "What is ROS 2?")
            nobody = await client.delete("/api/v1/chat/sessions")
            forged = await client.delete("/api/v1/chat/sessions", headers=bearer("not-a-token"))
        assert_unauthorized(nobody)
        assert_unauthorized(forged)
        assert await count(sqlite_url, ChatSession, id=uuid.UUID(anonymous["session_id"])) == 1

    async def test_deletes_the_readers_conversations_and_nobody_elses(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            alice_id, alice = await reader(client, "alice@example.org")
            _, bob = await reader(client, "bob@example.org")
            first = await ask(client, "What is ROS 2?", headers=alice)
            await ask(client, "And DDS?", headers=alice, session_id=first["session_id"])
            await rate(client, first, -1, comment="too short", headers=alice)
            await ask(client, "What is a launch file?", headers=alice)
            bobs = await ask(client, "What is a topic?", headers=bob)
            await rate(client, bobs, 1, headers=bob)
            anonymous = await ask(client, "What is a node?")
            await rate(client, anonymous, 1)
            # Alice's rating of an anonymous conversation is not one of her conversations.
            await client.post(
                f"/api/v1/chat/messages/{anonymous['message_id']}/feedback",
                json={"rating": -1},
                headers=alice,
            )

            deleted = await client.delete("/api/v1/chat/sessions", headers=alice)
            listed = await client.get("/api/v1/chat/sessions", headers=alice)
            bobs_history = await client.get(
                f"/api/v1/chat/history/{bobs['session_id']}", headers=bob
            )
            anonymous_history = await client.get(f"/api/v1/chat/history/{anonymous['session_id']}")
            again = await client.delete("/api/chat/sessions", headers=alice)  # the alias too

        assert (deleted.status_code, deleted.json()) == (200, {"deleted": 2})
        assert listed.json()["total"] == 0
        assert await count(database_url, ChatSession, user_id=alice_id) == 0
        assert [m["role"] for m in bobs_history.json()["messages"]] == ["user", "assistant"]
        assert len(anonymous_history.json()["messages"]) == 2
        assert await count(database_url, Message) == 4  # Bob's turn and the anonymous one
        ratings = {(f.message_id, f.rating) for f in await stored(database_url, MessageFeedback)}
        assert ratings == {
            (uuid.UUID(bobs["message_id"]), 1),
            (uuid.UUID(anonymous["message_id"]), 1),
            (uuid.UUID(anonymous["message_id"]), -1),
        }
        assert (again.status_code, again.json()) == (200, {"deleted": 0})

    async def test_many_conversations_go_in_batches(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            alice_id, alice = await reader(client, "alice@example.org")
            _, bob = await reader(client, "bob@example.org")
            for number in range(5):
                await ask(client, f"question {number}", headers=alice)
            await ask(client, "Bob's question", headers=bob)
        async with open_db(database_url) as db:
            deleted = await delete_reader_sessions(db, alice_id, batch_size=2)

        assert (deleted.sessions, deleted.messages, deleted.batches) == (5, 10, 3)
        assert await count(database_url, ChatSession) == 1


class TestExport:
    async def test_needs_a_signed_in_reader(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.get("/api/v1/chat/sessions/export")
        assert_unauthorized(response)

    async def test_the_readers_conversations_with_messages_citations_and_feedback(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(await book_settings(database_url)) as client:
            alice_id, alice = await reader(client, "alice@example.org")
            _, bob = await reader(client, "bob@example.org")
            first = await ask(client, QUESTION, headers=alice)
            follow_up = await ask(
                client, "And how are they received?", headers=alice, session_id=first["session_id"]
            )
            await rate(client, follow_up, -1, comment="It missed the callback.", headers=alice)
            selection = await ask(
                client, "What does this say?", headers=alice, selected_text=SELECTION
            )
            bobs = await ask(client, QUESTION, headers=bob)

            response = await client.get("/api/v1/chat/sessions/export", headers=alice)
            histories = [
                (await client.get(f"/api/v1/chat/history/{s}", headers=alice)).json()
                for s in (first["session_id"], selection["session_id"])
            ]

        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        today = f"{utcnow():%Y-%m-%d}"
        assert response.headers["content-disposition"] == (
            f'attachment; filename="bookchat-conversations-{today}.json"'
        )
        body = json.loads(response.content)
        export = ConversationsExport.model_validate(body)
        assert export.user_id == alice_id
        assert [str(c.id) for c in export.conversations] == [
            first["session_id"],
            selection["session_id"],
        ]
        assert bobs["session_id"] not in response.text
        for conversation, history in zip(body["conversations"], histories, strict=True):
            assert conversation["title"] == history["title"]
            # Each message exactly as the history shows it, plus the feedback stored on it
            # (where the history shows the asking reader's own rating).
            assert [
                {k: v for k, v in m.items() if k != "feedback"} for m in conversation["messages"]
            ] == [{k: v for k, v in m.items() if k != "own_feedback"} for m in history["messages"]]
        first_messages = body["conversations"][0]["messages"]
        assert [m["role"] for m in first_messages] == ["user", "assistant"] * 2
        assert first_messages[1]["citations"]  # the book's passages, as cited
        assert [len(m["feedback"]) for m in first_messages] == [0, 0, 0, 1]
        [feedback] = first_messages[3]["feedback"]
        assert (feedback["rating"], feedback["comment"]) == (-1, "It missed the callback.")
        assert histories[0]["messages"][3]["own_feedback"] == {
            "rating": -1,
            "comment": "It missed the callback.",
        }
        assert body["conversations"][1]["messages"][0]["selected_text"] == SELECTION

    async def test_many_conversations_each_once_oldest_first(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        """More conversations than one page, half of them created at the same instant."""
        async with app_factory(make_settings(database_url)) as client:
            alice_id, alice = await reader(client, "alice@example.org")
            ids = await _seed_sessions(database_url, alice_id, 120)
            response = await client.get("/api/v1/chat/sessions/export", headers=alice)
            empty_id, empty = await reader(client, "nobody@example.org")
            nothing = await client.get("/api/v1/chat/sessions/export", headers=empty)

        assert response.status_code == 200
        exported = [c["id"] for c in response.json()["conversations"]]
        assert exported == [str(i) for i in ids]
        assert nothing.json()["conversations"] == []
        assert nothing.json()["user_id"] == str(empty_id)


async def _seed_sessions(database_url: str, user_id: uuid.UUID, total: int) -> list[uuid.UUID]:
    """`total` conversations with one question each; the ids in the export's order
    (created_at, then id)."""
    same: datetime = utcnow()
    rows: list[ChatSession] = []
    async with open_db(database_url) as db:
        for number in range(total):
            created = same if number % 2 else utcnow()
            session = ChatSession(user_id=user_id, title=f"q{number}", created_at=created)
            db.add(session)
            rows.append(session)
        await db.flush()
        for session in rows:
            db.add(Message(session_id=session.id, role="user", content=session.title or ""))
        await db.commit()
        return [s.id for s in sorted(rows, key=lambda s: (s.created_at, s.id.hex))]
