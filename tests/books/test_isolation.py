"""Two books in one deployment: one database, one Qdrant collection, one cache. Both books talk
about publishers and topics, so a missing book filter anywhere shows as the other book's pages.

The default book is the mini book (`https://example.org/book`); the second, `pubs`, is the
publishers book under its own base URL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from bookchat.books.schemas import BookCreate
from bookchat.container import open_container
from bookchat.content.loader import load_folder
from bookchat.content.models import Chunk, document_id_for
from bookchat.core.config import Settings
from bookchat.providers.sparse import Bm25Encoder
from bookchat.retrieval.index import IndexedChunk
from tests.chapters.fakes import shouting_reply, system_prompt
from tests.chatkit.protocol import (
    answer_item,
    create,
    events_of,
    get_thread,
    list_threads,
    send,
    thread_of,
)
from tests.conftest import AppFactory, openai_settings
from tests.factories import PUBLISHERS_BOOK, book_settings, count, sign_up
from tests.fakes.openai_server import FakeOpenAIServer
from tests.metrics.test_router import total

DEFAULT_URL = "https://example.org/book"
PUBS_URL = "https://pubs.example.org/docs"
PUBS = "/api/v1/books/pubs"
ADMIN_KEY = "an-admin-key-long-enough-for-the-settings"
ADMIN = {"X-Admin-Key": ADMIN_KEY}
SHARED_QUESTION = "How does a publisher send messages on a topic?"


async def add_pubs(settings: Settings, **fields: Any) -> None:
    """The second book, created and ingested through the services the admin API and the CLI
    use."""
    async with open_container(settings) as container:
        async with container.sessionmaker() as db:
            await container.books.create(
                db,
                BookCreate(slug="pubs", title="Publishers Handbook", base_url=PUBS_URL, **fields),
            )
        report = await container.ingestor.ingest(
            load_folder(PUBLISHERS_BOOK, PUBS_URL), book="pubs"
        )
        assert report.counts["added"] == 5


async def two_books(database_url: str, **overrides: Any) -> Settings:
    settings = await book_settings(database_url, **overrides)
    await add_pubs(settings)
    return settings


def urls(results: list[dict[str, Any]]) -> set[str]:
    return {result["page_url"].split("#")[0].rsplit("/", 1)[0] for result in results}


class TestSearch:
    async def test_each_book_finds_only_its_own_pages(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        settings = await two_books(database_url)
        await self.check_search(settings, app_factory, mode="bm25")

    async def test_dense_search_finds_only_the_books_own_pages(
        self, sqlite_url: str, app_factory: AppFactory, fake_openai: FakeOpenAIServer
    ) -> None:
        # With an embedder, Qdrant's dense query is filtered by the book too.
        settings = await two_books(
            sqlite_url, **openai_settings(fake_openai), embeddings_provider="openai"
        )
        await self.check_search(settings, app_factory, mode="hybrid")

    @staticmethod
    async def check_search(settings: Settings, app_factory: AppFactory, *, mode: str) -> None:
        async with app_factory(settings) as client:
            scoped = await client.get(f"{PUBS}/content/search", params={"q": SHARED_QUESTION})
            unscoped = await client.get("/api/v1/content/search", params={"q": SHARED_QUESTION})

        assert scoped.status_code == unscoped.status_code == 200
        assert scoped.json()["mode"] == unscoped.json()["mode"] == mode
        pubs, default = scoped.json()["results"], unscoped.json()["results"]
        assert pubs
        assert default
        assert all(r["page_url"].startswith(PUBS_URL) for r in pubs), urls(pubs)
        assert all(r["page_url"].startswith(DEFAULT_URL) for r in default), urls(default)

    async def test_documents_and_their_ids_stay_in_their_book(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        settings = await two_books(database_url)
        async with app_factory(settings) as client:
            listed = (await client.get(f"{PUBS}/content/documents")).json()
            default = (await client.get("/api/v1/content/documents")).json()
            pubs_id = listed["items"][0]["id"]
            elsewhere = await client.get(f"/api/v1/content/documents/{pubs_id}")
            own = await client.get(f"{PUBS}/content/documents/{pubs_id}")

        assert listed["total"] == 5
        assert {d["source_path"] for d in listed["items"]} == {
            p.name for p in PUBLISHERS_BOOK.glob("*.md")
        }
        assert not {d["id"] for d in listed["items"]} & {d["id"] for d in default["items"]}
        assert elsewhere.status_code == 404
        assert own.status_code == 200

    async def test_an_unknown_book_is_a_404_in_the_error_shape(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        settings = await two_books(database_url)
        async with app_factory(settings) as client:
            for path in ("nope", "Not-A-Slug", "a" * 80):
                response = await client.post(
                    f"/api/v1/books/{path}/chat", json={"message": SHARED_QUESTION}
                )
                assert response.status_code == 404, path
                body = response.json()
                assert body["error"]["code"] == "not_found"


class TestChat:
    async def test_answers_cite_only_the_books_own_pages(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        settings = await two_books(database_url)
        async with app_factory(settings) as client:
            pubs = await client.post(f"{PUBS}/chat", json={"message": SHARED_QUESTION})
            default = await client.post("/api/v1/chat", json={"message": SHARED_QUESTION})

        assert pubs.status_code == default.status_code == 200
        assert pubs.json()["mode"] == default.json()["mode"] == "rag"
        pubs_cited = [c["page_url"] for c in pubs.json()["citations"]]
        default_cited = [c["page_url"] for c in default.json()["citations"]]
        assert pubs_cited
        assert all(url.startswith(PUBS_URL) for url in pubs_cited)
        assert default_cited
        assert all(url.startswith(DEFAULT_URL) for url in default_cited)

    async def test_a_question_only_the_other_book_covers_is_refused_by_name(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        settings = await two_books(database_url)
        question = "How does a biped keep its balance while walking?"
        async with app_factory(settings) as client:
            default = (await client.post("/api/v1/chat", json={"message": question})).json()
            pubs = (await client.post(f"{PUBS}/chat", json={"message": question})).json()

        assert default["mode"] == "rag"
        assert pubs["mode"] == "no_context"
        assert "Publishers Handbook" in pubs["response"]
        assert pubs["citations"] == []

    async def test_a_conversation_cannot_cross_books(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        settings = await two_books(database_url)
        async with app_factory(settings) as client:
            first = (await client.post(f"{PUBS}/chat", json={"message": SHARED_QUESTION})).json()
            session = first["session_id"]
            answer = first["message_id"]
            crossed = await client.post(
                "/api/v1/chat", json={"message": "And the reply?", "session_id": session}
            )
            history_elsewhere = await client.get(f"/api/v1/chat/history/{session}")
            history_own = await client.get(f"{PUBS}/chat/history/{session}")
            feedback_elsewhere = await client.post(
                f"/api/v1/chat/messages/{answer}/feedback", json={"rating": 1}
            )
            feedback_own = await client.post(
                f"{PUBS}/chat/messages/{answer}/feedback", json={"rating": 1}
            )
            delete_elsewhere = await client.delete(f"/api/v1/chat/{session}")
            still_there = await client.get(f"{PUBS}/chat/history/{session}")

        assert crossed.status_code == 404
        assert history_elsewhere.status_code == 404
        assert history_own.status_code == 200
        assert [m["role"] for m in history_own.json()["messages"]] == ["user", "assistant"]
        assert feedback_elsewhere.status_code == 404
        assert feedback_own.status_code == 201
        assert delete_elsewhere.status_code == 404
        assert still_there.status_code == 200

    async def test_a_readers_conversations_are_listed_per_book(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        settings = await two_books(database_url)
        async with app_factory(settings) as client:
            token = (await sign_up(client, "ada@example.org"))["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            await client.post(f"{PUBS}/chat", json={"message": SHARED_QUESTION}, headers=headers)
            await client.post(
                "/api/v1/chat", json={"message": "What is a camera?"}, headers=headers
            )
            pubs = (await client.get(f"{PUBS}/chat/sessions", headers=headers)).json()
            default = (await client.get("/api/v1/chat/sessions", headers=headers)).json()
            deleted = (await client.delete(f"{PUBS}/chat/sessions", headers=headers)).json()
            after = (await client.get("/api/v1/chat/sessions", headers=headers)).json()

        assert [s["title"] for s in pubs["items"]] == [SHARED_QUESTION]
        assert [s["title"] for s in default["items"]] == ["What is a camera?"]
        assert deleted == {"deleted": 1}
        assert after["total"] == 1  # the other book's conversation is left alone

    async def test_the_books_persona_reaches_the_model_and_the_other_book_keeps_its_rules(
        self, database_url: str, app_factory: AppFactory, fake_openai: FakeOpenAIServer
    ) -> None:
        settings = await book_settings(database_url, **openai_settings(fake_openai))
        await add_pubs(settings, persona="Readers are first-year students; keep it short.")
        async with app_factory(settings) as client:
            await client.post(f"{PUBS}/chat", json={"message": SHARED_QUESTION})
            await client.post("/api/v1/chat", json={"message": SHARED_QUESTION})

        pubs, default = (r["messages"][0]["content"] for r in fake_openai.chat_requests())
        assert '"Publishers Handbook"' in pubs
        assert pubs.endswith("For this book: Readers are first-year students; keep it short.")
        assert "first-year" not in default
        assert '"Publishers Handbook"' not in default


class TestCache:
    async def test_cached_answers_never_cross_books(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        settings = await two_books(database_url, answer_cache_ttl_seconds=600)
        async with app_factory(settings) as client:
            answers = [
                (await client.post(path, json={"message": SHARED_QUESTION})).json()
                for path in (f"{PUBS}/chat", f"{PUBS}/chat", "/api/v1/chat", "/api/v1/chat")
            ]

        assert [a["cached"] for a in answers] == [False, True, False, True]
        assert answers[0]["response"] == answers[1]["response"]
        assert answers[2]["response"] == answers[3]["response"]
        assert answers[0]["response"] != answers[2]["response"]
        assert all(c["page_url"].startswith(DEFAULT_URL) for c in answers[3]["citations"])

    async def test_a_new_ingestion_of_one_book_keeps_the_others_cached_answers(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        settings = await two_books(
            database_url, answer_cache_ttl_seconds=600, admin_api_key=ADMIN_KEY
        )
        async with app_factory(settings) as client:
            await client.post("/api/v1/chat", json={"message": SHARED_QUESTION})
            await client.post(f"{PUBS}/chat", json={"message": SHARED_QUESTION})
            changed = await client.post(
                f"{PUBS}/content/ingest",
                headers=ADMIN,
                json={"documents": [{"source_path": "06-new.md", "content": "# New\n\nText."}]},
            )
            assert changed.status_code == 202, changed.text
            job = changed.json()["id"]
            for _ in range(100):
                status = (await client.get(f"{PUBS}/content/jobs/{job}", headers=ADMIN)).json()[
                    "status"
                ]
                if status not in ("pending", "running"):
                    break
                await asyncio.sleep(0.05)
            default = await client.post("/api/v1/chat", json={"message": SHARED_QUESTION})
            pubs = await client.post(f"{PUBS}/chat", json={"message": SHARED_QUESTION})

        assert status == "succeeded"
        assert default.json()["cached"] is True
        assert pubs.json()["cached"] is False


class TestLimits:
    async def test_a_books_own_chat_rate_is_counted_apart_from_the_others(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, rate_limit_chat="3/minute")
        await add_pubs(settings, rate_limit_chat="1/minute")
        async with app_factory(settings) as client:
            first = await client.post(f"{PUBS}/chat", json={"message": SHARED_QUESTION})
            second = await client.post(f"{PUBS}/chat", json={"message": SHARED_QUESTION})
            default = [
                (await client.post("/api/v1/chat", json={"message": SHARED_QUESTION})).status_code
                for _ in range(3)
            ]

        assert first.status_code == 200
        assert second.status_code == 429
        assert second.json()["error"]["code"] == "rate_limited"
        assert default == [200, 200, 200]


class TestChatKit:
    async def test_a_books_threads_are_its_own(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = await two_books(sqlite_url)
        async with app_factory(settings) as client:
            token = (await sign_up(client, "ada@example.org"))["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            created = await send(
                client, create(SHARED_QUESTION), headers=headers, path=f"{PUBS}/chatkit"
            )
            events = events_of(created)
            thread = thread_of(events).id
            listed_own = await send(client, list_threads(), headers=headers, path=f"{PUBS}/chatkit")
            listed_default = await send(client, list_threads(), headers=headers)
            read_elsewhere = await send(client, get_thread(thread), headers=headers)

        cited = answer_item(events).content[0].annotations
        assert cited
        assert all(a.source.url.startswith(PUBS_URL) for a in cited)  # type: ignore[union-attr]
        assert [t["id"] for t in listed_own.json()["data"]] == [thread]
        assert listed_default.json()["data"] == []
        assert read_elsewhere.status_code == 404
        assert read_elsewhere.json()["error"]["code"] == "not_found"


class TestMetrics:
    async def test_answers_are_counted_per_book(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = await two_books(sqlite_url)
        async with app_factory(settings) as client:
            await client.post(f"{PUBS}/chat", json={"message": SHARED_QUESTION})
            await client.post(f"{PUBS}/chat", json={"message": "What is the capital of France?"})
            await client.post("/api/v1/chat", json={"message": SHARED_QUESTION})
            text = (await client.get("/metrics")).text

        assert total(text, "bookchat_answers_total", book="pubs") == 2
        assert total(text, "bookchat_answers_total", book="pubs", mode="no_context") == 1
        assert total(text, "bookchat_answers_total", book="default") == 1


class TestIngest:
    async def test_a_books_upload_gets_the_upload_limit_not_the_request_limit(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = await two_books(
            sqlite_url, admin_api_key=ADMIN_KEY, max_request_bytes=4_000, max_upload_bytes=100_000
        )
        page = "# Services\n\n" + "A service answers one request with one reply. " * 200
        async with app_factory(settings) as client:
            response = await client.post(
                f"{PUBS}/content/ingest",
                headers=ADMIN,
                files=[("files", ("06-services.md", page.encode(), "text/markdown"))],
            )
            too_big = await client.post(f"{PUBS}/chat", json={"message": "x" + " publisher" * 600})

        assert response.status_code == 202, response.text
        assert too_big.status_code == 413  # other routes keep MAX_REQUEST_BYTES


class TestChapters:
    async def test_a_chapter_is_found_and_rewritten_only_in_its_own_book(
        self, database_url: str, app_factory: AppFactory, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = shouting_reply
        settings = await two_books(database_url, **openai_settings(fake_openai))
        pubs_page = {"source_path": "01-topics.md"}
        default_page = {"source_path": "01-basics/01-messaging.md"}
        async with app_factory(settings) as client:
            elsewhere = await client.post("/api/v1/translate", json=pubs_page)
            crossed = await client.post(f"{PUBS}/translate", json=default_page)
            own = await client.post(f"{PUBS}/translate", json=pubs_page)
            again = await client.post(f"{PUBS}/translate", json=pubs_page)
            default = await client.post("/api/v1/translate", json=default_page)

        assert elsewhere.status_code == crossed.status_code == 404
        assert own.status_code == default.status_code == 200
        assert own.json()["document_id"] == str(document_id_for("01-topics.md", "pubs"))
        assert again.json()["cached"] is True
        assert default.json()["cached"] is False  # another book's chapter, its own cache
        instructions = [system_prompt(r) for r in fake_openai.chat_requests()]
        assert any('"Publishers Handbook"' in text for text in instructions)
        assert any(f'"{settings.book_title}"' in text for text in instructions)


class TestReindex:
    async def test_a_rebuilt_index_keeps_every_point_in_its_book(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = await two_books(sqlite_url)
        stored_chunks = await count(sqlite_url, Chunk)
        async with open_container(settings) as container:
            chunks = await container.ingestor.reindex()
        async with app_factory(settings) as client:
            pubs = (
                await client.get(f"{PUBS}/content/search", params={"q": SHARED_QUESTION})
            ).json()["results"]
            default = (
                await client.get("/api/v1/content/search", params={"q": SHARED_QUESTION})
            ).json()["results"]

        assert chunks == stored_chunks > 0  # every chunk of both books, none twice
        assert pubs
        assert all(r["page_url"].startswith(PUBS_URL) for r in pubs)
        assert default
        assert all(r["page_url"].startswith(DEFAULT_URL) for r in default)


class TestRecreate:
    async def test_a_book_made_again_starts_empty_even_after_a_late_write(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = await two_books(sqlite_url)
        late = IndexedChunk(
            chunk_id=uuid.uuid4(),
            document_id=uuid.uuid4(),
            source_path="01-topics.md",
            title="Topics",
            heading_path=["Topics"],
            page_url=f"{PUBS_URL}/topics",
            module=None,
            text="A publisher sends messages on a topic.",
            sparse=(await Bm25Encoder().encode_documents(["publisher messages topic"]))[0],
            book="pubs",
        )
        async with open_container(settings) as container:
            async with container.sessionmaker() as db:
                await container.books.delete(db, "pubs")
            # An ingestion of the book that was still running writes one more point.
            await container.index.upsert([late])
            async with container.sessionmaker() as db:
                await container.books.create(
                    db, BookCreate(slug="pubs", title="Publishers, again", base_url=PUBS_URL)
                )
        async with app_factory(settings) as client:
            found = await client.get(f"{PUBS}/content/search", params={"q": SHARED_QUESTION})

        assert found.status_code == 200
        assert found.json()["results"] == []
