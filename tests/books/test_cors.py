"""CORS per book: a book's routes also allow the book's own origins, nowhere else does."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from bookchat.books.schemas import BookCreate, BookUpdate
from bookchat.container import open_container
from bookchat.core.config import Settings
from tests.conftest import AppFactory, make_settings

GLOBAL = "https://global.example.org"
ALPHA = "https://alpha.example.org"
BETA = "https://beta.example.org"
MISSING_SESSION = "00000000-0000-4000-8000-000000000000"


async def add_books(settings: Settings) -> None:
    """Books `alpha` and `beta`, each allowing its own site (before the app opens the stores)."""
    async with open_container(settings) as container, container.sessionmaker() as db:
        for slug, origin in (("alpha", ALPHA), ("beta", BETA)):
            payload = BookCreate(
                slug=slug,
                title=f"{slug.title()} Book",
                base_url=f"https://{slug}.example.org/book",
                cors_origins=[origin],
            )
            await container.books.create(db, payload)


@pytest.fixture
async def settings(database_url: str) -> Settings:
    settings = make_settings(database_url, cors_origins=GLOBAL)
    await add_books(settings)
    return settings


async def preflight(client: httpx.AsyncClient, path: str, origin: str) -> httpx.Response:
    """What a browser asks before the widget's POST of a question."""
    return await client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )


async def ask(client: httpx.AsyncClient, path: str, origin: str) -> httpx.Response:
    return await client.post(path, json={"message": "hello"}, headers={"Origin": origin})


def allowed(response: httpx.Response) -> str | None:
    origin: str | None = response.headers.get("access-control-allow-origin")
    return origin


class TestABooksOrigin:
    async def test_its_preflight_is_allowed_on_the_books_routes(
        self, settings: Settings, app_factory: AppFactory
    ) -> None:
        async with app_factory(settings) as client:
            response = await preflight(client, "/api/v1/books/alpha/chat/stream", ALPHA)
        assert response.status_code == 200
        assert allowed(response) == ALPHA
        assert response.headers["access-control-allow-credentials"] == "true"
        assert "POST" in response.headers["access-control-allow-methods"]
        assert "Authorization" in response.headers["access-control-allow-headers"]

    async def test_its_requests_get_the_headers_on_the_books_routes(
        self, settings: Settings, app_factory: AppFactory
    ) -> None:
        async with app_factory(settings) as client:
            answer = await ask(client, "/api/v1/books/alpha/chat", ALPHA)
            search = await client.get(
                "/api/v1/books/alpha/content/search", params={"q": "x"}, headers={"Origin": ALPHA}
            )
            # An error too: the widget reads it to say what went wrong.
            missing = await client.get(
                f"/api/v1/books/alpha/chat/history/{MISSING_SESSION}", headers={"Origin": ALPHA}
            )
        assert answer.status_code == 200, answer.text
        assert allowed(answer) == ALPHA
        assert answer.headers["access-control-expose-headers"] == "X-Request-ID, Retry-After"
        assert search.status_code == 200
        assert allowed(search) == ALPHA
        assert missing.status_code == 404
        assert allowed(missing) == ALPHA

    async def test_is_refused_on_another_books_routes(
        self, settings: Settings, app_factory: AppFactory
    ) -> None:
        async with app_factory(settings) as client:
            first = await preflight(client, "/api/v1/books/beta/chat/stream", ALPHA)
            simple = await ask(client, "/api/v1/books/beta/chat", ALPHA)
            # and the other way round
            second = await preflight(client, "/api/v1/books/alpha/chat/stream", BETA)
        assert first.status_code == 400
        assert first.text == "Disallowed CORS origin"
        assert allowed(first) is None
        assert simple.status_code == 200  # answered, but the browser may not read it
        assert allowed(simple) is None
        assert second.status_code == 400
        assert allowed(second) is None

    @pytest.mark.parametrize(
        "path", ["/api/v1/chat/stream", "/api/v1/chat", "/api/chat", "/chat", "/api/v1/books"]
    )
    async def test_is_refused_on_the_unscoped_routes(
        self, path: str, settings: Settings, app_factory: AppFactory
    ) -> None:
        async with app_factory(settings) as client:
            first = await preflight(client, path, ALPHA)
            simple = await ask(client, path, ALPHA)
        assert first.status_code == 400
        assert allowed(first) is None
        assert allowed(simple) is None

    async def test_is_refused_on_the_book_itself(
        self, settings: Settings, app_factory: AppFactory
    ) -> None:
        # `/api/v1/books/alpha` is the books admin API's (read, change, delete the book).
        async with app_factory(settings) as client:
            response = await client.options(
                "/api/v1/books/alpha",
                headers={"Origin": ALPHA, "Access-Control-Request-Method": "PUT"},
            )
        assert response.status_code == 400
        assert allowed(response) is None

    async def test_is_refused_on_an_unknown_book(
        self, settings: Settings, app_factory: AppFactory
    ) -> None:
        async with app_factory(settings) as client:
            first = await preflight(client, "/api/v1/books/gamma/chat/stream", ALPHA)
            simple = await ask(client, "/api/v1/books/gamma/chat", ALPHA)
        assert first.status_code == 400
        assert simple.status_code == 404
        assert simple.json()["error"]["code"] == "not_found"
        assert allowed(simple) is None

    async def test_a_changed_list_applies_at_once_on_this_server(
        self, settings: Settings, app_factory: AppFactory
    ) -> None:
        apps: list[FastAPI] = []
        added = "https://mirror.alpha.example.org"
        async with app_factory(settings, customize=apps.append) as client:
            before = await preflight(client, "/api/v1/books/alpha/chat/stream", added)
            container = apps[0].state.container
            async with container.sessionmaker() as db:
                change = BookUpdate(cors_origins=[ALPHA, added])
                await container.books.update(db, "alpha", change)
            after = await preflight(client, "/api/v1/books/alpha/chat/stream", added)
        assert before.status_code == 400
        assert after.status_code == 200
        assert allowed(after) == added


class TestTheGlobalOrigins:
    @pytest.mark.parametrize(
        "path",
        [
            "/api/v1/books/alpha/chat",
            "/api/v1/books/beta/chat",
            "/api/v1/books/gamma/chat",  # unknown: 404, still readable
            "/api/v1/chat",
            "/chat",
        ],
    )
    async def test_are_allowed_everywhere(
        self, path: str, settings: Settings, app_factory: AppFactory
    ) -> None:
        async with app_factory(settings) as client:
            first = await preflight(client, path, GLOBAL)
            simple = await ask(client, path, GLOBAL)
        assert first.status_code == 200
        assert allowed(first) == GLOBAL
        assert allowed(simple) == GLOBAL
