"""Many readers at once: every stream completes and every conversation is stored whole."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx
from sqlalchemy import select

from bookchat.chat.models import Message, MessageRole, MessageStatus
from tests.conftest import ingest_book, live_server, make_settings, openai_settings
from tests.factories import open_db
from tests.fakes.openai_server import FakeOpenAIServer

STREAMS = 64


async def stream_one(client: httpx.AsyncClient, number: int) -> dict[str, object]:
    """Ask one question over SSE; return the `done` payload (or fail with what came instead)."""
    events: list[tuple[str, dict[str, object]]] = []
    name = ""
    async with client.stream(
        "POST",
        "/api/v1/chat/stream",
        # Distinct questions, in the book's words: a word the book never uses weighs against
        # the question at the relevance gate.
        json={"message": f"How does a publisher send messages? ({number})"},
    ) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                name = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.removeprefix("data:"))))
    assert events[-1][0] == "done", events[-1]
    return events[-1][1]


async def test_64_concurrent_streams_all_finish_and_store_one_turn_each(
    database_url: str, fake_openai: FakeOpenAIServer
) -> None:
    fake_openai.reply = " ".join(f"word{i}" for i in range(20)) + " [1]"
    fake_openai.token_delay = 0.01
    settings = make_settings(
        database_url,
        rate_limit_chat="100000/minute",
        token_budget_anonymous_daily=0,  # 64 answers from one address outgrow its daily budget
        max_streams_per_client=STREAMS,  # 64 readers, all on one address here
        answer_cache_ttl_seconds=0,  # every stream must reach the model
        **{
            **openai_settings(fake_openai),
            # 64 streams from one fake on a 2-core machine shared with other test workers:
            # the model's 2 s timeout is not what this test is about.
            "llm_timeout_seconds": 20.0,
        },
    )
    await ingest_book(settings)
    with live_server(settings) as base:
        limits = httpx.Limits(max_connections=STREAMS)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
            done = await asyncio.gather(*(stream_one(client, n) for n in range(STREAMS)))

    assert len({d["session_id"] for d in done}) == STREAMS
    assert all(str(d["response"]).startswith("word0 word1") for d in done)
    async with open_db(database_url) as db:
        rows = list(await db.execute(select(Message.session_id, Message.role, Message.status)))
    per_session = Counter((session, role) for session, role, _ in rows)
    assert len(rows) == 2 * STREAMS
    assert set(per_session.values()) == {1}
    assert {role for _, role, _ in rows} == {MessageRole.USER, MessageRole.ASSISTANT}
    assert {status for _, _, status in rows} == {MessageStatus.COMPLETE}
