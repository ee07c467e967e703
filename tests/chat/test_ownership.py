"""Whose conversation is it: readers see their own sessions, anonymous ones by id alone."""

from __future__ import annotations

import httpx
import pytest

from tests.chat.test_stream import parse_sse
from tests.conftest import AppFactory, make_settings, openai_settings
from tests.factories import (
    CITING_SHOWN,
    PUBLISHERS_BOOK,
    QUESTION,
    ask,
    bearer,
    book_settings,
    citing_reply,
    post_chat,
    sign_up,
)
from tests.fakes.openai_server import FakeOpenAIServer


async def reader(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    """Sign a reader up; their `Authorization` header."""
    return bearer((await sign_up(client, email))["access_token"])


class TestOwnership:
    async def test_another_reader_gets_404_everywhere(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            alice = await reader(client, "alice@example.org")
            bob = await reader(client, "bob@example.org")
            answer = (await post_chat(client, headers=alice)).json()
            session, message = answer["session_id"], answer["message_id"]

            responses = {
                "history": await client.get(f"/api/v1/chat/history/{session}", headers=bob),
                "continue": await post_chat(client, headers=bob, session_id=session),
                "feedback": await client.post(
                    f"/api/v1/chat/messages/{message}/feedback", json={"rating": 1}, headers=bob
                ),
                "delete": await client.delete(f"/api/v1/chat/{session}", headers=bob),
                "anonymous history": await client.get(f"/api/v1/chat/history/{session}"),
                "anonymous continue": await post_chat(client, session_id=session),
            }
            still_there = await client.get(f"/api/v1/chat/history/{session}", headers=alice)

        assert {name: r.status_code for name, r in responses.items()} == dict.fromkeys(
            responses, 404
        )
        assert all(r.json()["error"]["code"] == "not_found" for r in responses.values())
        assert still_there.status_code == 200
        assert len(still_there.json()["messages"]) == 2

    async def test_an_anonymous_session_is_claimed_by_the_first_signed_in_writer(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            session = (await post_chat(client)).json()["session_id"]
            public = await client.get(f"/api/v1/chat/history/{session}")
            alice = await reader(client, "alice@example.org")
            bob = await reader(client, "bob@example.org")
            claimed = await post_chat(client, headers=alice, session_id=session)
            after_claim = await client.get(f"/api/v1/chat/history/{session}")
            for_bob = await client.get(f"/api/v1/chat/history/{session}", headers=bob)
            for_alice = await client.get(f"/api/v1/chat/history/{session}", headers=alice)

        assert public.status_code == 200
        assert claimed.json()["session_id"] == session
        assert after_claim.status_code == 404
        assert for_bob.status_code == 404
        assert len(for_alice.json()["messages"]) == 4

    async def test_sessions_lists_only_the_callers_newest_first(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            alice = await reader(client, "alice@example.org")
            bob = await reader(client, "bob@example.org")
            first = (await post_chat(client, headers=alice)).json()["session_id"]
            second = (await post_chat(client, "What is a depth camera?", headers=alice)).json()
            await post_chat(client, headers=bob)
            await post_chat(client)
            await post_chat(client, "And who receives them?", headers=alice, session_id=first)
            listing = (await client.get("/api/v1/chat/sessions", headers=alice)).json()
            page = (await client.get("/api/v1/chat/sessions?limit=1", headers=alice)).json()
            anonymous = await client.get("/api/v1/chat/sessions")

        assert [s["id"] for s in listing["items"]] == [first, second["session_id"]]
        assert listing["total"] == 2
        assert listing["items"][0]["message_count"] == 4
        assert listing["items"][0]["title"] == QUESTION
        assert [s["id"] for s in page["items"]] == [first]
        assert anonymous.status_code == 401


class TestSignInRequired:
    async def test_chat_needs_a_reader_when_configured(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, require_auth_for_chat=True)
        async with app_factory(settings) as client:
            anonymous = await post_chat(client)
            stream = await client.post("/api/v1/chat/stream", json={"message": QUESTION})
            seed = await client.post("/chat", json={"message": QUESTION})
            alice = await reader(client, "alice@example.org")
            signed_in = await post_chat(client, headers=alice)

        assert (anonymous.status_code, stream.status_code, seed.status_code) == (401, 401, 401)
        assert anonymous.json()["error"]["code"] == "unauthorized"
        assert signed_in.status_code == 200

    async def test_a_bad_token_is_never_anonymous(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await post_chat(client, headers=bearer("not-a-token"))
        assert response.status_code == 401


class TestChatRateLimit:
    @pytest.mark.parametrize("path", ["/api/v1/chat", "/chat", "/api/chat"])
    async def test_every_chat_route_counts(
        self, path: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, rate_limit_chat="2/minute")
        async with app_factory(settings) as client:
            codes = [
                (await client.post(path, json={"message": QUESTION})).status_code for _ in range(3)
            ]
            refused = await client.post("/api/v1/chat/stream", json={"message": QUESTION})
        assert codes == [200, 200, 429]
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1

    async def test_signed_in_readers_have_their_own_quota(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, rate_limit_chat="1/minute")
        async with app_factory(settings) as client:
            alice = await reader(client, "alice@example.org")
            bob = await reader(client, "bob@example.org")
            codes = [
                (await post_chat(client, headers=alice)).status_code,
                (await post_chat(client, headers=alice)).status_code,
                (await post_chat(client, headers=bob)).status_code,
                (await post_chat(client)).status_code,
            ]
        assert codes == [200, 429, 200, 200]


class TestAnswerCache:
    @pytest.mark.parametrize("store", ["memory", "redis"])
    async def test_the_same_first_question_costs_one_model_call(
        self,
        store: str,
        request: pytest.FixtureRequest,
        database_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
    ) -> None:
        redis = request.getfixturevalue("redis_url") if store == "redis" else None
        settings = await book_settings(
            database_url, redis_url=redis, **openai_settings(fake_openai)
        )
        async with app_factory(settings) as client:
            first = (await post_chat(client)).json()
            second = (await post_chat(client, "  how does a PUBLISHER send messages ")).json()
            streamed = await client.post("/api/v1/chat/stream", json={"message": QUESTION})
            follow_up = (await post_chat(client, session_id=second["session_id"])).json()
            history = (await client.get(f"/api/v1/chat/history/{second['session_id']}")).json()

        answer_calls = [
            r
            for r in fake_openai.chat_requests()
            if "standalone" not in r["messages"][0]["content"]
        ]
        # The first question, then the follow-up (history makes it uncacheable).
        assert len(answer_calls) == 2
        assert (first["cached"], second["cached"], follow_up["cached"]) == (False, True, False)
        assert second["response"] == first["response"]
        assert second["citations"] == first["citations"]
        assert second["session_id"] != first["session_id"]
        assert '"cached": true' in streamed.text
        assert [m["role"] for m in history["messages"]][:2] == ["user", "assistant"]

    @pytest.mark.parametrize("first_by", ["chat", "stream"])
    async def test_a_replayed_answer_shows_the_same_numbers(
        self,
        first_by: str,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        app_factory: AppFactory,
    ) -> None:
        fake_openai.reply = citing_reply
        settings = await book_settings(sqlite_url, PUBLISHERS_BOOK, **openai_settings(fake_openai))
        answers = []
        async with app_factory(settings) as client:
            for way in (first_by, "chat", "stream"):
                if way == "chat":
                    answers.append(await ask(client))
                    continue
                response = await client.post("/api/v1/chat/stream", json={"message": QUESTION})
                events, _ = parse_sse(response.text)
                done = events[-1][1]
                assert (
                    "".join(d["text"] for name, d in events if name == "token")
                    == (done["response"])
                )
                answers.append(done)

        first, *replays = answers
        assert len(fake_openai.chat_requests()) == 1
        assert (first["cached"], first["response"]) == (False, CITING_SHOWN)
        assert [(a["cached"], a["response"], a["citations"]) for a in replays] == [
            (True, first["response"], first["citations"])
        ] * 2

    async def test_ingestion_invalidates_cached_answers(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(
            sqlite_url, admin_api_key="key", **openai_settings(fake_openai)
        )
        async with app_factory(settings) as client:
            await post_chat(client)
            fake_openai.reply = "A newer answer [1]."
            update = await client.post(
                "/api/v1/content/ingest",
                headers={"X-Admin-Key": "key"},
                json={"documents": [{"source_path": "extra.md", "content": "# Extra\n\nNew."}]},
            )
            for _ in range(200):
                job = (
                    await client.get(
                        f"/api/v1/content/jobs/{update.json()['id']}",
                        headers={"X-Admin-Key": "key"},
                    )
                ).json()
                if job["status"] == "succeeded":
                    break
            again = (await post_chat(client)).json()

        assert job["status"] == "succeeded"
        assert again["cached"] is False
        assert again["response"] == "A newer answer [1]."
