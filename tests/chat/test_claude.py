"""The chat with `LLM_PROVIDER=anthropic`, end to end: the real `anthropic` SDK against the fake
Messages API, on SQLite and PostgreSQL. Passages go as search results, citations come from
Claude's own citation objects, and the reader sees what any other model's answer shows."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import structlog.testing

from bookchat.chat.models import Message, MessageRole, MessageStatus
from bookchat.container import open_container
from bookchat.core.logging import configure_logging
from bookchat.main import log_profile
from tests.chat.test_stream import assistant_messages, parse_sse, tokens_of
from tests.conftest import (
    REWRITE_MARKER,
    AppFactory,
    anthropic_settings,
    live_server,
    make_settings,
)
from tests.factories import PUBLISHERS_BOOK, QUESTION, ask, book_settings, heading, stored
from tests.fakes.anthropic_server import Block, Cite, FakeAnthropicServer, system_of
from tests.metrics.test_router import total
from tests.prompt_layout import read_layout

IN_ORDER = (Message.created_at, Message.id)
SELECTION = "A publisher sends each message on a named topic and never waits for a reply."


def answer_request(fake: FakeAnthropicServer) -> dict[str, Any]:
    """The last request that asked for an answer (not a follow-up rewrite)."""
    return [r for r in fake.messages_requests() if REWRITE_MARKER not in system_of(r)][-1]


def question_text(request: dict[str, Any]) -> str:
    """The user message's text (everything but the search results)."""
    [turn] = request["messages"]
    return "\n".join(b["text"] for b in turn["content"] if b["type"] == "text")


class TestClaudeAnswers:
    async def test_passages_go_as_search_results_and_citations_link_to_their_pages(
        self, database_url: str, fake_anthropic: FakeAnthropicServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, **anthropic_settings(fake_anthropic))
        async with app_factory(settings) as client:
            body = await ask(client)

        results = fake_anthropic.search_results()
        assert len(results) == len(body["citations"]) > 1
        # Each passage, under its page URL with the heading's anchor and its section path.
        by_source = {r["source"]: r for r in results}
        for citation in body["citations"]:
            result = by_source[citation["page_url"]]
            assert result["title"] == heading(citation)
            assert result["citations"] == {"enabled": True}
        # The passages are sent once, as documents: the user message holds the question only.
        request = answer_request(fake_anthropic)
        layout = read_layout(question_text(request))
        assert [b.name for b in layout.blocks] == ["question"]
        assert "Cite the search results you use through citations" in system_of(request)
        # The fake cites the first search result: it is the reader's [1], linked to its page.
        assert body["response"] == f"Fake answer to: {QUESTION} The book explains it [1]."
        first = body["citations"][0]
        assert (first["index"], first["cited"]) == (1, True)
        assert (
            first["page_url"]
            == results[0]["source"]
            == ("https://example.org/book/basics/messaging#publishers-and-subscribers")
        )
        assert [c["cited"] for c in body["citations"]].count(True) == 1
        assert body["model"] == "claude-haiku-4-5"
        messages = await stored(database_url, Message, order_by=IN_ORDER)
        assert [(m.role, m.content, m.status) for m in messages] == [
            (MessageRole.USER, QUESTION, MessageStatus.COMPLETE),
            (MessageRole.ASSISTANT, body["response"], MessageStatus.COMPLETE),
        ]
        assert messages[1].citations == body["citations"]

    async def test_a_fabricated_quote_is_dropped_and_counted(
        self, sqlite_url: str, fake_anthropic: FakeAnthropicServer, app_factory: AppFactory
    ) -> None:
        fake_anthropic.blocks = [
            Block("Publishers never wait", (Cite(0, "Publishers block until read."),)),
            Block(" and send on topics", (Cite(2),)),
            Block("."),
        ]
        settings = await book_settings(
            sqlite_url, PUBLISHERS_BOOK, **anthropic_settings(fake_anthropic)
        )
        async with app_factory(settings) as client:
            body = await ask(client)
            metrics = (await client.get("/metrics")).text

        # Only the citation that quotes its passage is shown, numbered [1] for the reader.
        assert body["response"] == "Publishers never wait and send on topics [1]."
        results = fake_anthropic.search_results()
        cited = [c for c in body["citations"] if c["cited"]]
        assert [c["page_url"] for c in cited] == [results[2]["source"]]
        assert total(metrics, "bookchat_llm_citations_total", outcome="dropped") == 1
        assert total(metrics, "bookchat_llm_citations_total", outcome="kept") == 1

    async def test_a_selection_is_sent_alone(
        self, database_url: str, fake_anthropic: FakeAnthropicServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, **anthropic_settings(fake_anthropic))
        async with app_factory(settings) as client:
            first = await ask(client)
            body = await ask(
                client,
                "What does this mean?",
                selected_text=SELECTION,
                session_id=first["session_id"],
                page_context="https://example.org/book/basics/messaging",
            )

        request = fake_anthropic.messages_requests()[-1]
        [result] = fake_anthropic.search_results()
        assert result["title"] == "Selected text"
        assert [b["text"] for b in result["content"]] == [SELECTION]
        # No retrieval and no history: the question alone besides the selection.
        assert [b.name for b in read_layout(question_text(request)).blocks] == ["question"]
        assert "The reader selected a passage" in system_of(request)
        assert body["mode"] == "selected_text"
        assert body["response"].endswith("The book explains it [1].")
        assert body["citations"][0]["cited"] is True

    async def test_a_follow_up_is_rewritten_by_claude(
        self, sqlite_url: str, fake_anthropic: FakeAnthropicServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url, **anthropic_settings(fake_anthropic))
        async with app_factory(settings) as client:
            first = await ask(client)
            second = await ask(client, "And who gets them?", session_id=first["session_id"])

        requests = fake_anthropic.messages_requests()
        assert len(requests) == 3
        rewrite = requests[1]
        assert REWRITE_MARKER in system_of(rewrite)
        assert fake_anthropic.search_results(1) == []
        conversation = read_layout(question_text(requests[2])).conversation
        assert conversation == [QUESTION, first["response"], "And who gets them?"]
        assert second["response"].startswith("Fake answer to: And who gets them?")
        [stored_question] = await stored(sqlite_url, Message, content="And who gets them?")
        assert stored_question.search_query == "publisher subscriber topic"

    @pytest.mark.parametrize(
        ("inject", "status", "code"),
        [
            ("429", 503, "llm_unavailable"),
            ("529", 503, "llm_unavailable"),
            ("500", 503, "llm_unavailable"),
            ("400", 502, "llm_error"),
            ("hang", 504, "llm_timeout"),
        ],
    )
    async def test_failure_is_mapped_and_the_question_kept(
        self,
        inject: str,
        status: int,
        code: str,
        database_url: str,
        fake_anthropic: FakeAnthropicServer,
        app_factory: AppFactory,
    ) -> None:
        settings = await book_settings(
            database_url, **{**anthropic_settings(fake_anthropic), "llm_timeout_seconds": 0.5}
        )
        if inject == "hang":
            fake_anthropic.hang_next(5.0)
        else:
            fake_anthropic.fail_next(int(inject), message="vendor detail sk-ant-123", retry_after=9)
        async with app_factory(settings) as client:
            response = await client.post("/api/v1/chat", json={"message": QUESTION})

        assert response.status_code == status
        assert response.json()["error"]["code"] == code
        assert "vendor detail" not in response.text
        if inject in ("429", "529"):
            assert response.headers["retry-after"] == "9"
        messages = await stored(database_url, Message, order_by=IN_ORDER)
        assert [(m.role, m.content, m.status) for m in messages] == [
            (MessageRole.USER, QUESTION, MessageStatus.COMPLETE),
            (MessageRole.ASSISTANT, "", MessageStatus.ERROR),
        ]


class TestClaudeStream:
    async def test_events_in_order_with_citations_and_cache_usage(
        self, database_url: str, fake_anthropic: FakeAnthropicServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, **anthropic_settings(fake_anthropic))
        selection = "The robot arm moves one joint at a time. " * 400
        request = {"message": "Why one joint at a time?", "selected_text": selection}
        async with app_factory(settings) as client:
            first = await client.post("/api/v1/chat/stream", json=request)
            again = await client.post("/api/v1/chat/stream", json=request)

        events, _ = parse_sse(first.text)
        names = [name for name, _ in events]
        assert names[:2] == ["start", "sources"]
        assert names[-1] == "done"
        assert set(names[2:-1]) == {"token"}
        done = events[-1][1]
        assert "".join(tokens_of(events)) == done["response"]
        assert done["response"].endswith("The book explains it [1].")
        assert done["citations"][0]["cited"] is True
        # The long selection is cached by the first question and read by the second.
        assert done["usage"]["cache_write_tokens"] > 0
        repeat = parse_sse(again.text)[0][-1][1]
        assert repeat["usage"]["cache_read_tokens"] == done["usage"]["cache_write_tokens"]
        stored_answers = await assistant_messages(database_url)
        assert [m.status for m in stored_answers] == [MessageStatus.COMPLETE] * 2

    async def test_an_answer_without_claudes_stop_is_partial(
        self, sqlite_url: str, fake_anthropic: FakeAnthropicServer, app_factory: AppFactory
    ) -> None:
        fake_anthropic.finish_next(None)
        settings = await book_settings(sqlite_url, **anthropic_settings(fake_anthropic))
        async with app_factory(settings) as client:
            response = await client.post("/api/v1/chat/stream", json={"message": QUESTION})

        events, _ = parse_sse(response.text)
        done = events[-1][1]
        assert events[-1][0] == "done"
        assert (done["status"], done["finish_reason"]) == ("partial", None)
        [reply] = await assistant_messages(sqlite_url)
        assert reply.status == MessageStatus.PARTIAL

    @pytest.mark.parametrize("fault", ["cut", "error_event"])
    async def test_a_broken_stream_ends_in_error_and_keeps_the_text(
        self,
        fault: str,
        database_url: str,
        fake_anthropic: FakeAnthropicServer,
        app_factory: AppFactory,
    ) -> None:
        fake_anthropic.reply = "one two three four five six"
        fake_anthropic.blocks = None
        if fault == "cut":
            fake_anthropic.cut_stream_next(after_tokens=3)
        else:
            fake_anthropic.error_stream_next(after_tokens=3)
        settings = await book_settings(database_url, **anthropic_settings(fake_anthropic))
        async with app_factory(settings) as client:
            response = await client.post("/api/v1/chat/stream", json={"message": QUESTION})

        events, _ = parse_sse(response.text)
        assert [name for name, _ in events] == [
            "start",
            "sources",
            "token",
            "token",
            "token",
            "error",
        ]
        assert events[-1][1]["code"] == "llm_unavailable"
        stored_answers = await assistant_messages(database_url)
        assert [(m.content, m.status) for m in stored_answers] == [
            ("one two three", MessageStatus.ERROR)
        ]


class TestClaudeHangUp:
    async def test_a_reader_who_leaves_keeps_a_partial_answer(
        self, database_url: str, fake_anthropic: FakeAnthropicServer
    ) -> None:
        fake_anthropic.reply = " ".join(f"word{i}" for i in range(60))
        fake_anthropic.token_delay = 0.05
        settings = await book_settings(database_url, **anthropic_settings(fake_anthropic))
        with live_server(settings) as base:
            async with (
                httpx.AsyncClient(base_url=base, timeout=10) as client,
                client.stream("POST", "/api/v1/chat/stream", json={"message": QUESTION}) as reply,
            ):
                tokens = 0
                async for line in reply.aiter_lines():
                    tokens += line.startswith("event: token")
                    if tokens == 3:
                        break
            # The server notices the hang-up, closes Claude's stream and stores what it had.
            for _ in range(200):
                answers = await assistant_messages(database_url)
                if answers:
                    break
                await asyncio.sleep(0.025)
        [answer] = answers
        assert answer.status == MessageStatus.PARTIAL
        assert answer.content.startswith("word0 word1 word2")
        assert len(answer.content.split()) < 60


async def test_health_names_claude(
    sqlite_url: str, fake_anthropic: FakeAnthropicServer, app_factory: AppFactory
) -> None:
    settings = make_settings(sqlite_url, **anthropic_settings(fake_anthropic))
    async with app_factory(settings) as client:
        llm = (await client.get("/api/v1/health")).json()["components"]["llm"]
    assert llm == {
        "status": "ok",
        "profile": "anthropic",
        "detail": "model=claude-haiku-4-5",
        "latency_ms": None,
    }
    # Health costs no model call.
    assert fake_anthropic.messages_requests() == []


async def test_startup_says_which_embedder_serves_claude(
    sqlite_url: str, fake_anthropic: FakeAnthropicServer
) -> None:
    settings = make_settings(sqlite_url, **anthropic_settings(fake_anthropic))
    # Profile lines are INFO; the tests' apps log from WARNING on, as they will again after.
    configure_logging("INFO")
    try:
        async with open_container(settings) as container:
            with structlog.testing.capture_logs() as logs:
                await log_profile(container)
    finally:
        configure_logging(settings.log_level)
    [line] = [entry for entry in logs if entry["event"] == "profile.embeddings"]
    assert line["llm_provider"] == "anthropic"
    assert line["embedder"] == "none (BM25 only)"
    assert line["chosen_by"] == "EMBEDDINGS_PROVIDER=none"
