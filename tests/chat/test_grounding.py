"""Answers grounded in the book: sources, citations, follow-ups, the not-covered answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from asgi_lifespan import LifespanManager

from bookchat.books.names import DEFAULT_BOOK
from bookchat.chat.models import Message, MessageRole
from bookchat.main import create_app
from bookchat.providers.base import Source
from bookchat.retrieval.service import Retriever
from tests.conftest import AppFactory, make_settings, openai_settings
from tests.factories import QUESTION, book_settings, stored
from tests.fakes.openai_server import FakeOpenAIServer
from tests.prompt_layout import sent_prompt


async def user_messages(database_url: str) -> list[Message]:
    return await stored(
        database_url, Message, role=MessageRole.USER, order_by=(Message.created_at,)
    )


class TestNotCovered:
    async def test_no_relevant_passage_means_no_model_call(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            response = await client.post(
                "/api/v1/chat", json={"message": "What is the capital of France?"}
            )

        body = response.json()
        assert response.status_code == 200
        assert body["mode"] == "no_context"
        assert body["model"] == "none"
        assert "couldn't find this" in body["response"]
        assert body["citations"] == []
        assert fake_openai.chat_requests() == []

    async def test_an_empty_book_is_not_covered_either(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            body = (await client.post("/chat", json={"message": QUESTION})).json()
        assert body["mode"] == "no_context"


class TestSources:
    async def test_the_model_gets_the_retrieved_sources_in_order(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            body = (await client.post("/chat", json={"message": QUESTION})).json()

        _, sent = sent_prompt(fake_openai)
        sources = [(b.number, b.text.split("\n")[0]) for b in sent.blocks if b.name == "source"]
        assert sources == [
            (c["index"], c["title"] + (f" > {c['section']}" if c["section"] else ""))
            for c in body["citations"]
        ]
        assert sources[0] == (1, "Messaging > Publishers and subscribers")
        assert "A publisher sends messages on a named topic" in sent.texts("source")[0]

    async def test_a_passage_under_the_page_title_cites_the_page(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        # Docusaurus gives the page title (the h1) no id: a `#mini-book` link would land nowhere.
        async with app_factory(await book_settings(sqlite_url)) as client:
            body = (
                await client.post("/chat", json={"message": "What is the tiny book for?"})
            ).json()

        [citation] = [c for c in body["citations"] if c["title"] == "Mini Book"]
        assert citation["section"] is None
        assert citation["page_url"] == "https://example.org/book/"

    async def test_markers_become_citations_and_unknown_ones_vanish(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        fake_openai.reply = "A publisher sends on a topic [1]. Nobody waits [1, 9]. Ghost [7]."
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            body = (await client.post("/chat", json={"message": QUESTION})).json()

        assert body["response"] == "A publisher sends on a topic [1]. Nobody waits [1]. Ghost."
        cited = {c["index"]: c["cited"] for c in body["citations"]}
        assert cited[1] is True
        assert all(not flag for index, flag in cited.items() if index != 1)
        stored = await user_messages(database_url)
        assert stored[0].search_query == QUESTION


@dataclass
class CountingRetriever:
    """The real retriever, counting its calls (to prove a path makes none)."""

    inner: Retriever
    queries: list[str] = field(default_factory=list)

    async def retrieve(
        self,
        query: str,
        *,
        book: str = DEFAULT_BOOK,
        limit: int = 5,
        page_context: str | None = None,
        message: str | None = None,
    ) -> list[Source]:
        self.queries.append(query)
        return await self.inner.retrieve(
            query, book=book, limit=limit, page_context=page_context, message=message
        )

    async def covers(self, text: str, *, book: str = DEFAULT_BOOK) -> bool | None:
        self.queries.append(text)
        return await self.inner.covers(text, book=book)

    async def nearest(self, query: str, *, book: str = DEFAULT_BOOK) -> Source | None:
        self.queries.append(query)
        return await self.inner.nearest(query, book=book)


@pytest.fixture
async def counted(sqlite_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, CountingRetriever]]:
    settings = await book_settings(sqlite_url)
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        container = app.state.container
        # The chat service was built in the lifespan with the real retriever: swap it there.
        spy = CountingRetriever(container.chat.retriever)
        container.chat.retriever = spy
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client, spy


class TestSelection:
    async def test_selected_text_makes_no_retrieval_call(
        self, counted: tuple[httpx.AsyncClient, CountingRetriever]
    ) -> None:
        client, spy = counted
        selected = await client.post(
            "/chat",
            json={"message": "Explain this", "selected_text": "Legs swing in the swing phase."},
        )
        asked = await client.post("/chat", json={"message": QUESTION})

        assert selected.json()["mode"] == "selected_text"
        assert asked.json()["mode"] == "rag"
        assert spy.queries == [QUESTION]


class TestFollowUps:
    async def test_the_model_rewrites_a_follow_up_and_it_is_stored(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            first = (await client.post("/chat", json={"message": QUESTION})).json()
            second = (
                await client.post(
                    "/chat",
                    json={"message": "And who gets them?", "session_id": first["session_id"]},
                )
            ).json()

        rewrite = fake_openai.chat_requests()[1]
        system, sent = sent_prompt(fake_openai, 1)
        assert "standalone search query" in system
        assert sent.conversation == [QUESTION, f"Fake answer to: {QUESTION}", "And who gets them?"]
        assert rewrite["temperature"] == 0
        assert second["mode"] == "rag"
        stored = await user_messages(database_url)
        assert stored[0].search_query == QUESTION
        assert stored[1].search_query == "publisher subscriber topic"

    async def test_offline_the_previous_question_is_joined(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(await book_settings(database_url)) as client:
            first = (await client.post("/chat", json={"message": QUESTION})).json()
            await client.post(
                "/chat", json={"message": "And who gets them?", "session_id": first["session_id"]}
            )
        stored = await user_messages(database_url)
        assert stored[1].search_query == f"{QUESTION} And who gets them?"

    async def test_a_failed_rewrite_falls_back(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            first = (await client.post("/chat", json={"message": QUESTION})).json()
            fake_openai.fail_next(500)
            second = await client.post(
                "/chat", json={"message": "And who gets them?", "session_id": first["session_id"]}
            )
        assert second.status_code == 200
        stored = await user_messages(sqlite_url)
        assert stored[1].search_query == f"{QUESTION} And who gets them?"


class TestTopicSwitch:
    """A new question inside a conversation is judged on its own words."""

    SWITCH = "What is the capital of France?"

    async def test_an_off_book_question_in_a_conversation_is_refused_without_a_model_call(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            first = (await client.post("/chat", json={"message": QUESTION})).json()
            calls = len(fake_openai.chat_requests())
            switched = (
                await client.post(
                    "/chat", json={"message": self.SWITCH, "session_id": first["session_id"]}
                )
            ).json()

        assert first["mode"] == "rag"
        assert switched["mode"] == "no_context"
        assert switched["citations"] == []
        assert len(fake_openai.chat_requests()) == calls  # neither a rewrite nor an answer

    async def test_offline_the_previous_question_does_not_carry_it(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(await book_settings(sqlite_url)) as client:
            first = (await client.post("/chat", json={"message": QUESTION})).json()
            follow_up = (
                await client.post(
                    "/chat",
                    json={"message": "And who gets them?", "session_id": first["session_id"]},
                )
            ).json()
            switched = (
                await client.post(
                    "/chat", json={"message": self.SWITCH, "session_id": first["session_id"]}
                )
            ).json()

        assert switched["mode"] == "no_context"
        assert "couldn't find this" in switched["response"]
        # A follow-up that leans on the conversation is still carried by it.
        assert follow_up["mode"] == "rag"
