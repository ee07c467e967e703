"""The books admin API: who may use it, what it stores, and what deleting a book takes away."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bookchat.books.models import Book
from bookchat.chapters.models import GeneratedContent, GeneratedKind
from bookchat.chat.models import ChatSession, Message, MessageFeedback
from bookchat.content.models import Chunk, Document, IngestJob
from bookchat.core.config import Settings
from tests.conftest import AppFactory, ingest_book, make_settings
from tests.factories import PUBLISHERS_BOOK, bearer, count, open_db, sign_up, stored

KEY = "admin-test-key"
ADMIN = {"X-Admin-Key": KEY}
BOOKS = "/api/v1/admin/books"
ROBOTS_URL = "https://robots.example.org/docs"
ROBOTS = {"slug": "robots", "title": "Robots Handbook", "base_url": ROBOTS_URL}
QUESTION = "How does a publisher send messages on a topic?"


def admin_settings(database_url: str, **overrides: Any) -> Settings:
    return make_settings(database_url, admin_api_key=KEY, **overrides)


async def add_book(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    """Create a book through the API (the robots book unless `fields` say otherwise)."""
    response = await client.post(BOOKS, headers=ADMIN, json={**ROBOTS, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def finished_job(client: httpx.AsyncClient, slug: str, job_id: str) -> dict[str, Any]:
    """Book `slug`'s ingestion job `job_id` once it has finished."""
    for _ in range(400):
        url = f"/api/v1/books/{slug}/content/jobs/{job_id}"
        job: dict[str, Any] = (await client.get(url, headers=ADMIN)).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        await asyncio.sleep(0.025)
    raise AssertionError(f"job {job_id} did not finish")


async def ingest_publishers(client: httpx.AsyncClient, slug: str) -> dict[str, Any]:
    """Send the publishers book's pages to book `slug` as an ingestion job; the finished job."""
    documents = [
        {"source_path": page.name, "content": page.read_text()}
        for page in sorted(PUBLISHERS_BOOK.glob("*.md"))
    ]
    url = f"/api/v1/books/{slug}/content/ingest"
    response = await client.post(url, headers=ADMIN, json={"documents": documents})
    assert response.status_code == 202, response.text
    job = await finished_job(client, slug, response.json()["id"])
    assert job["status"] == "succeeded", job
    return job


class TestAuthorisation:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", BOOKS),
            ("POST", BOOKS),
            ("GET", f"{BOOKS}/default"),
            ("PATCH", f"{BOOKS}/default"),
            ("DELETE", f"{BOOKS}/robots"),
        ],
    )
    async def test_only_admins(
        self, method: str, path: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(admin_settings(sqlite_url)) as client:
            reader = await sign_up(client, "reader@example.org")
            await add_book(client)
            anonymous = await client.request(method, path, json=ROBOTS)
            wrong_key = await client.request(
                method, path, json=ROBOTS, headers={"X-Admin-Key": "nope"}
            )
            signed_in = await client.request(
                method, path, json=ROBOTS, headers=bearer(reader["access_token"])
            )
            still_there = await client.get(f"{BOOKS}/robots", headers=ADMIN)

        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "unauthorized"
        assert wrong_key.status_code == 401
        assert signed_in.status_code == 403
        assert signed_in.json()["error"]["code"] == "forbidden"
        assert still_there.status_code == 200
        assert still_there.json()["title"] == ROBOTS["title"]

    async def test_documented_with_the_error_shape(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(admin_settings(sqlite_url)) as client:
            schema = (await client.get("/openapi.json")).json()
        one = schema["paths"]["/api/v1/admin/books/{slug}"]
        assert set(one) == {"get", "patch", "delete"}
        assert one["delete"]["tags"] == ["books"]
        assert {"401", "403", "404", "409"} <= set(one["delete"]["responses"])
        assert "422" not in schema["paths"]["/api/v1/admin/books"]["post"]["responses"]
        assert "/api/admin/books" not in schema["paths"]  # the alias is served, not documented


class TestListBooks:
    async def test_the_default_book_shows_the_settings(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = admin_settings(sqlite_url)
        async with app_factory(settings) as client:
            response = await client.get(BOOKS, headers=ADMIN)

        assert response.status_code == 200
        page = response.json()
        assert (page["total"], page["limit"], page["offset"]) == (1, 50, 0)
        [default] = page["items"]
        assert default["slug"] == "default"
        assert default["title"] == settings.book_title
        assert default["base_url"] == settings.book_base_url
        assert default["docs_dir"] == settings.book_docs_dir
        assert default["rate_limit_chat"] == settings.rate_limit_chat
        assert default["cors_origins"] == []

    async def test_by_slug_a_page_at_a_time(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(admin_settings(database_url)) as client:
            await add_book(client, slug="zeta")
            await add_book(client, slug="alpha")
            first = (await client.get(BOOKS, headers=ADMIN, params={"limit": 2})).json()
            rest = (await client.get(BOOKS, headers=ADMIN, params={"offset": 2})).json()

        assert [b["slug"] for b in first["items"]] == ["alpha", "default"]
        assert first["total"] == 3
        assert [b["slug"] for b in rest["items"]] == ["zeta"]

    @pytest.mark.parametrize(
        "params", [{"limit": 0}, {"limit": 201}, {"offset": -1}, {"offset": 10**12}]
    )
    async def test_bad_paging(
        self, params: dict[str, int], sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(admin_settings(sqlite_url)) as client:
            response = await client.get(BOOKS, headers=ADMIN, params=params)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "validation_error"


class TestCreateBook:
    async def test_stores_the_book_and_serves_its_routes(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        settings = admin_settings(database_url)
        async with app_factory(settings) as client:
            created = await add_book(
                client,
                persona="Speak to first-year students.",
                cors_origins=["https://robots.example.org/"],
                rate_limit_search="5/minute",
            )
            documents = await client.get("/api/v1/books/robots/content/documents")

        assert created["slug"] == "robots"
        assert created["base_url"] == ROBOTS_URL
        assert created["cors_origins"] == ["https://robots.example.org"]
        assert created["rate_limit_search"] == "5/minute"
        # Not given: the service's settings.
        assert created["rate_limit_chat"] == settings.rate_limit_chat
        assert created["docs_dir"] is None
        [row] = await stored(database_url, Book, slug="robots")
        assert (row.title, row.persona, row.rate_limit_chat) == (
            "Robots Handbook",
            "Speak to first-year students.",
            None,
        )
        assert documents.status_code == 200
        assert documents.json()["total"] == 0

    async def test_a_taken_slug_is_a_conflict(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(admin_settings(database_url)) as client:
            await add_book(client)
            again = await client.post(BOOKS, headers=ADMIN, json={**ROBOTS, "title": "Other"})
            default = await client.post(BOOKS, headers=ADMIN, json={**ROBOTS, "slug": "default"})

        assert again.status_code == default.status_code == 409
        assert again.json()["error"]["code"] == "conflict"
        assert "robots" in again.json()["error"]["message"]
        [row] = await stored(database_url, Book, slug="robots")
        assert row.title == "Robots Handbook"

    @pytest.mark.parametrize(
        "body",
        [
            {**ROBOTS, "slug": "Robots"},
            {**ROBOTS, "slug": "-robots"},
            {**ROBOTS, "slug": "r" * 65},
            {**ROBOTS, "slug": "robots/../x"},
            {"slug": "robots", "base_url": ROBOTS_URL},
            {**ROBOTS, "title": ""},
            {**ROBOTS, "base_url": "not a url"},
            {**ROBOTS, "cors_origins": ["https://robots.example.org/app"]},
            {**ROBOTS, "cors_origins": ["robots"]},
            {**ROBOTS, "rate_limit_chat": "lots"},
            {**ROBOTS, "owner": "me"},
        ],
        ids=[
            "uppercase",
            "leading-dash",
            "too-long",
            "path",
            "no-title",
            "empty-title",
            "bad-url",
            "origin-with-path",
            "origin-not-a-url",
            "bad-rate",
            "unknown-field",
        ],
    )
    async def test_invalid_bodies(
        self, body: dict[str, Any], sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(admin_settings(sqlite_url)) as client:
            response = await client.post(BOOKS, headers=ADMIN, json=body)

        assert response.status_code == 400
        assert response.json()["error"]["code"] == "validation_error"
        assert await count(sqlite_url, Book) == 1  # the default book alone


class TestDocsFolder:
    """A book's docs folder set over HTTP must lie in BOOK_DOCS_ROOT: the admin key must not be
    a way to ingest, and so publish, any Markdown the server can read."""

    async def test_a_folder_in_the_root_is_stored_resolved_and_ingested(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = admin_settings(sqlite_url, book_docs_root=str(PUBLISHERS_BOOK.parent))
        async with app_factory(settings) as client:
            created = await add_book(client, docs_dir=PUBLISHERS_BOOK.name)
            started = await client.post(
                "/api/v1/books/robots/content/ingest", headers=ADMIN, json={}
            )
            job = await finished_job(client, "robots", started.json()["id"])
            found = await client.get("/api/v1/books/robots/content/search", params={"q": QUESTION})

        assert created["docs_dir"] == str(PUBLISHERS_BOOK.resolve())
        assert started.status_code == 202, started.text
        assert job["status"] == "succeeded"
        assert found.json()["results"][0]["page_url"].startswith(ROBOTS_URL)

    @pytest.mark.parametrize(
        "docs_dir",
        ["/etc", "..", "publishers_book/../..", "/" + "x" * 1000, "0" * 1024],
        ids=["etc", "parent", "back-out", "long-absolute", "too-long-once-resolved"],
    )
    async def test_a_folder_outside_the_root_is_refused(
        self, docs_dir: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = admin_settings(sqlite_url, book_docs_root=str(PUBLISHERS_BOOK.parent))
        async with app_factory(settings) as client:
            created = await client.post(BOOKS, headers=ADMIN, json={**ROBOTS, "docs_dir": docs_dir})
            await add_book(client)
            changed = await client.patch(
                f"{BOOKS}/robots", headers=ADMIN, json={"docs_dir": docs_dir}
            )
            after = (await client.get(f"{BOOKS}/robots", headers=ADMIN)).json()

        for response in (created, changed):
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["code"] == "validation_error"
            assert error["details"][0]["loc"] == ["body", "docs_dir"]
            assert "BOOK_DOCS_ROOT" in error["details"][0]["msg"]
        assert after["docs_dir"] is None


class TestReadBook:
    async def test_one_book(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(admin_settings(sqlite_url)) as client:
            created = await add_book(client)
            response = await client.get(f"{BOOKS}/robots", headers=ADMIN)
        assert response.status_code == 200
        assert response.json() == created

    @pytest.mark.parametrize("slug", ["nothing", "NOT-A-SLUG"])
    async def test_a_missing_book(
        self, slug: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(admin_settings(sqlite_url)) as client:
            response = await client.get(f"{BOOKS}/{slug}", headers=ADMIN)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


class TestUpdateBook:
    async def test_changes_only_the_fields_sent(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        settings = admin_settings(database_url)
        async with app_factory(settings) as client:
            created = await add_book(client, persona="Friendly.", rate_limit_chat="3/minute")
            renamed = await client.patch(
                f"{BOOKS}/robots", headers=ADMIN, json={"title": "Robots, 2nd edition"}
            )
            reset = await client.patch(
                f"{BOOKS}/robots",
                headers=ADMIN,
                json={"rate_limit_chat": None, "cors_origins": None},
            )

        assert renamed.status_code == 200
        assert renamed.json()["title"] == "Robots, 2nd edition"
        assert renamed.json()["persona"] == "Friendly."
        assert renamed.json()["rate_limit_chat"] == "3/minute"
        assert renamed.json()["created_at"] == created["created_at"]
        assert renamed.json()["updated_at"] >= created["updated_at"]
        # `null` returns a field to the service's settings.
        assert reset.json()["rate_limit_chat"] == settings.rate_limit_chat
        assert reset.json()["cors_origins"] == []
        assert reset.json()["title"] == "Robots, 2nd edition"
        [row] = await stored(database_url, Book, slug="robots")
        assert (row.title, row.persona, row.rate_limit_chat) == (
            "Robots, 2nd edition",
            "Friendly.",
            None,
        )

    @pytest.mark.parametrize("slug", ["default", "robots"])
    @pytest.mark.parametrize("field", ["title", "base_url"])
    async def test_a_books_title_and_site_cannot_be_nulled(
        self, slug: str, field: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        """The schema says so (a string, not null): falling back to the settings would show the
        default book's title on another book, or link its citations to the default book's
        site."""
        async with app_factory(admin_settings(sqlite_url)) as client:
            await add_book(client)
            before = (await client.get(f"{BOOKS}/{slug}", headers=ADMIN)).json()
            response = await client.patch(f"{BOOKS}/{slug}", headers=ADMIN, json={field: None})
            after = (await client.get(f"{BOOKS}/{slug}", headers=ADMIN)).json()
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "validation_error"
        assert after == before

    @pytest.mark.parametrize(
        ("slug", "body", "status", "code"),
        [
            ("nothing", {"title": "X"}, 404, "not_found"),
            ("robots", {"slug": "other"}, 400, "validation_error"),
            ("robots", {"base_url": "ftp://x"}, 400, "validation_error"),
            ("robots", {"rate_limit_search": "often"}, 400, "validation_error"),
        ],
        ids=["missing", "slug-is-not-editable", "bad-url", "bad-rate"],
    )
    async def test_refusals(
        self,
        slug: str,
        body: dict[str, Any],
        status: int,
        code: str,
        sqlite_url: str,
        app_factory: AppFactory,
    ) -> None:
        async with app_factory(admin_settings(sqlite_url)) as client:
            created = await add_book(client)
            response = await client.patch(f"{BOOKS}/{slug}", headers=ADMIN, json=body)
            after = (await client.get(f"{BOOKS}/robots", headers=ADMIN)).json()
        assert response.status_code == status
        assert response.json()["error"]["code"] == code
        assert after == created


class TestDeleteBook:
    async def test_takes_the_book_and_everything_it_holds_and_nothing_else(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        settings = admin_settings(database_url)
        await ingest_book(settings)  # the default book: the mini book
        async with app_factory(settings) as client:
            await add_book(client)
            await ingest_publishers(client, "robots")
            robots_answer = (
                await client.post("/api/v1/books/robots/chat", json={"message": QUESTION})
            ).json()
            default_answer = (await client.post("/api/v1/chat", json={"message": QUESTION})).json()
            for answer, scope in ((robots_answer, "/api/v1/books/robots"), (default_answer, "")):
                rated = await client.post(
                    f"{scope or '/api/v1'}/chat/messages/{answer['message_id']}/feedback",
                    json={"rating": 1},
                )
                assert rated.status_code == 201, rated.text
            await add_generated_chapters(database_url)
            robots_counts = await book_rows(database_url, "robots")

            deleted = await client.delete(f"{BOOKS}/robots", headers=ADMIN)
            gone = await client.get(f"{BOOKS}/robots", headers=ADMIN)
            robots_search = await client.get(
                "/api/v1/books/robots/content/search", params={"q": QUESTION}
            )
            robots_chat = await client.post("/api/v1/books/robots/chat", json={"message": QUESTION})
            default_search = await client.get("/api/v1/content/search", params={"q": QUESTION})
            default_history = await client.get(
                f"/api/v1/chat/history/{default_answer['session_id']}"
            )
            listed = (await client.get(BOOKS, headers=ADMIN)).json()

        assert robots_answer["mode"] == "rag"
        assert robots_answer["citations"][0]["page_url"].startswith(ROBOTS_URL)
        assert min(robots_counts.values()) >= 1  # the book held one of everything
        assert deleted.status_code == 204
        assert deleted.content == b""
        assert gone.status_code == 404
        assert robots_search.status_code == robots_chat.status_code == 404
        assert robots_search.json()["error"]["code"] == "not_found"
        assert [b["slug"] for b in listed["items"]] == ["default"]
        assert await book_rows(database_url, "robots") == dict.fromkeys(robots_counts, 0)
        # The default book keeps its pages, its conversation with its rating, and its search.
        default_counts = await book_rows(database_url, "default")
        assert default_counts["documents"] == 4
        assert default_counts["sessions"] == 1
        assert default_counts["messages"] == 2
        assert default_counts["feedback"] == 1
        assert default_counts["generated"] == 1
        assert default_history.status_code == 200
        assert default_search.status_code == 200
        results = default_search.json()["results"]
        assert results
        assert all(r["page_url"].startswith(settings.book_base_url) for r in results)

    async def test_a_book_added_again_starts_empty(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        """Its index points and cached answers went with it: nothing of the old book answers."""
        async with app_factory(admin_settings(sqlite_url)) as client:
            await add_book(client)
            await ingest_publishers(client, "robots")
            before = await client.post("/api/v1/books/robots/chat", json={"message": QUESTION})
            await client.delete(f"{BOOKS}/robots", headers=ADMIN)
            await add_book(client)
            search = await client.get("/api/v1/books/robots/content/search", params={"q": QUESTION})
            after = await client.post("/api/v1/books/robots/chat", json={"message": QUESTION})

        assert before.json()["citations"]
        assert search.status_code == 200
        assert search.json()["results"] == []
        assert after.status_code == 200
        assert after.json()["citations"] == []
        assert after.json()["response"] != before.json()["response"]

    async def test_the_default_book_stays(self, database_url: str, app_factory: AppFactory) -> None:
        settings = admin_settings(database_url)
        await ingest_book(settings)
        async with app_factory(settings) as client:
            response = await client.delete(f"{BOOKS}/default", headers=ADMIN)
            documents = (await client.get("/api/v1/content/documents")).json()
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "conflict"
        assert documents["total"] == 4
        assert await count(database_url, Book, slug="default") == 1

    async def test_a_missing_book(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(admin_settings(sqlite_url)) as client:
            response = await client.delete(f"{BOOKS}/nothing", headers=ADMIN)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


async def add_generated_chapters(database_url: str) -> None:
    """One translated chapter per book, as the translate route would have stored it."""
    async with open_db(database_url) as db:
        for document in await db.scalars(select(Document).order_by(Document.source_path)):
            if await db.scalar(
                select(GeneratedContent.id)
                .join(Document, Document.id == GeneratedContent.document_id)
                .where(Document.book == document.book)
            ):
                continue
            db.add(
                GeneratedContent(
                    kind=GeneratedKind.TRANSLATED,
                    document_id=document.id,
                    variant="ur",
                    source_hash=document.content_hash,
                    model="fake",
                    body="ترجمہ",
                )
            )
            await db.flush()
        await db.commit()


async def book_rows(database_url: str, book: str) -> dict[str, int]:
    """How many rows of each kind belong to `book`."""
    async with open_db(database_url) as db:
        documents = select(Document.id).where(Document.book == book)
        sessions = select(ChatSession.id).where(ChatSession.book == book)
        messages = select(Message.id).where(Message.session_id.in_(sessions))
        queries = {
            "documents": documents,
            "chunks": select(Chunk.id).where(Chunk.document_id.in_(documents)),
            "generated": select(GeneratedContent.id).where(
                GeneratedContent.document_id.in_(documents)
            ),
            "sessions": sessions,
            "messages": messages,
            "feedback": select(MessageFeedback.id).where(MessageFeedback.message_id.in_(messages)),
            "jobs": select(IngestJob.id).where(IngestJob.book == book),
        }
        return {name: len((await db.scalars(query)).all()) for name, query in queries.items()}
