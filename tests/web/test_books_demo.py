"""The demo serves every book: another book's pages at /book/{slug}/..., with its own title,
chapters and a widget that talks to that book; the default book stays at / and /book/..."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Request

from bookchat.books.schemas import BookCreate
from bookchat.container import open_container
from bookchat.content.loader import load_folder
from bookchat.core.config import Settings
from tests.conftest import AppFactory, free_port, ingest_book, live_server, make_settings
from tests.factories import book_settings
from tests.web.conftest import Tab, static_site

ORCHARD_TITLE = "The Orchard Handbook"
ORCHARD_TITLES = ["The Orchard Handbook", "Pruning", "Grafting"]
MINI_BOOK_TITLES = ["Mini Book", "Messaging", "Cameras", "Walking"]
QUESTION = "When should apple trees be pruned?"
PRUNING_SENTENCE = "Prune apple trees in late winter"

ORCHARD_PAGES = {
    "index.md": "---\ntitle: The Orchard Handbook\nslug: /\n---\n\n# The Orchard Handbook\n\n"
    "How to keep fruit trees healthy, one season at a time.\n",
    "01-trees/_category_.json": '{"label": "Trees", "position": 1}',
    "01-trees/01-pruning.md": "---\ntitle: Pruning\nsidebar_position: 1\n---\n\n# Pruning\n\n"
    "## When to prune\n\n"
    "Prune apple trees in late winter, while they are dormant and before the buds swell. "
    "Cutting then heals fast and opens the crown to light for the coming season.\n",
    "01-trees/02-grafting.md": "---\ntitle: Grafting\nsidebar_position: 2\n---\n\n# Grafting\n\n"
    "## Whip and tongue\n\n"
    "A scion of the wanted variety is joined to a rootstock of the same diameter in spring.\n",
}


def orchard_folder(root: Path) -> Path:
    """The orchard book's docs folder (nothing in it is in the mini book)."""
    folder = root / "orchard"
    for name, text in ORCHARD_PAGES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


async def add_book(
    settings: Settings,
    slug: str,
    title: str,
    *,
    base_url: str,
    folder: Path | None = None,
    cors_origins: tuple[str, ...] = (),
) -> None:
    """Create a book and ingest its folder (before an app opens the stores)."""
    payload = BookCreate(
        slug=slug,
        title=title,
        base_url=base_url,
        cors_origins=list(cors_origins),
    )
    async with open_container(settings) as container:
        async with container.sessionmaker() as db:
            await container.books.create(db, payload)
        if folder is not None:
            await container.ingestor.ingest(load_folder(folder, base_url), book=slug)


def nav_links(page: str) -> list[tuple[str, str]]:
    nav = page.split('<nav class="toc"', 1)[1].split("</nav>", 1)[0]
    return re.findall(r'<a href="([^"]*)"[^>]*>([^<]+)</a>', nav)


def widget_tag(page: str) -> str:
    found = re.search(r'<script src="/widget\.js"[^>]*>', page)
    assert found is not None
    return found.group(0)


@pytest.fixture
async def two_books(sqlite_url: str, tmp_path: Path) -> Settings:
    """The mini book as the default book, and the orchard book beside it."""
    settings = await book_settings(sqlite_url, book_base_url="https://example.org/book")
    await add_book(
        settings,
        "orchard",
        ORCHARD_TITLE,
        base_url="https://example.org/orchard",
        folder=orchard_folder(tmp_path),
    )
    return settings


class TestABooksPages:
    async def test_its_home_shows_its_title_chapters_and_a_widget_for_it(
        self, two_books: Settings, app_factory: AppFactory
    ) -> None:
        async with app_factory(two_books) as client:
            response = await client.get("/book/orchard")
        assert response.status_code == 200
        page = response.text
        assert f'<a class="brand" href="/book/orchard">{ORCHARD_TITLE}</a>' in page
        assert f"<title>{ORCHARD_TITLE} · {ORCHARD_TITLE}</title>" in page
        links = nav_links(page)
        assert [title for _, title in links] == ORCHARD_TITLES
        assert [href for href, _ in links] == [
            "/book/orchard/",
            "/book/orchard/trees/pruning",
            "/book/orchard/trees/grafting",
        ]
        assert not set(MINI_BOOK_TITLES) & {title for _, title in links}
        # Its first chapter is shown; its widget asks this book.
        assert '<a href="/book/orchard/" aria-current="page">' in page
        assert '<h1 id="the-orchard-handbook">' in page
        assert 'data-book="orchard"' in widget_tag(page)
        assert 'data-api="http://testserver" data-book="orchard" defer' in page  # the snippet

    async def test_a_chapter_at_its_route_under_the_books_prefix(
        self, two_books: Settings, app_factory: AppFactory
    ) -> None:
        async with app_factory(two_books) as client:
            response = await client.get("/book/orchard/trees/pruning")
            trailing = await client.get("/book/orchard/trees/pruning/")
        page = response.text
        assert response.status_code == 200
        assert trailing.status_code == 200
        assert '<h2 id="when-to-prune">When to prune</h2>' in page
        assert '<a href="/book/orchard/trees/pruning" aria-current="page">Pruning</a>' in page
        assert '<link rel="canonical" href="/book/orchard/trees/pruning">' in page
        assert 'data-book="orchard"' in widget_tag(page)

    async def test_an_unknown_chapter_is_its_404_page(
        self, two_books: Settings, app_factory: AppFactory
    ) -> None:
        async with app_factory(two_books) as client:
            # A default-book chapter is not one of this book's.
            response = await client.get("/book/orchard/basics/messaging")
        assert response.status_code == 404
        assert "Page not found" in response.text
        assert [title for _, title in nav_links(response.text)] == ORCHARD_TITLES
        assert f">{ORCHARD_TITLE}</a>" in response.text


class TestTheDefaultBook:
    @pytest.mark.parametrize("path", ["/", "/book/basics/messaging"])
    async def test_stays_where_it_was(
        self, path: str, two_books: Settings, app_factory: AppFactory
    ) -> None:
        async with app_factory(two_books) as client:
            response = await client.get(path)
        page = response.text
        assert response.status_code == 200
        assert '<a class="brand" href="/">' in page
        links = nav_links(page)
        assert [title for _, title in links] == MINI_BOOK_TITLES
        assert all(href.startswith("/book/") for href, _ in links)
        assert not any(href.startswith("/book/orchard") for href, _ in links)
        assert ORCHARD_TITLE not in page
        assert "data-book" not in page  # the widget keeps the unscoped routes

    async def test_an_unknown_slug_is_a_default_chapter_route(
        self, two_books: Settings, app_factory: AppFactory
    ) -> None:
        async with app_factory(two_books) as client:
            response = await client.get("/book/orchards/trees/pruning")
        assert response.status_code == 404
        assert [title for _, title in nav_links(response.text)] == MINI_BOOK_TITLES

    async def test_a_books_slug_wins_over_a_default_chapter_route(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        # The mini book has a chapter at /motion/walking; a book named `motion` takes /book/motion.
        settings = await book_settings(sqlite_url, book_base_url="https://example.org/book")
        async with app_factory(settings) as client:
            before = await client.get("/book/motion/walking")
        await add_book(settings, "motion", "Motion Book", base_url="https://example.org/motion")
        async with app_factory(settings) as client:
            after = await client.get("/book/motion/walking")
        assert before.status_code == 200
        assert '<h1 id="walking">Walking</h1>' in before.text
        assert after.status_code == 404
        assert ">Motion Book</a>" in after.text
        assert "Walking" not in after.text


# --- in a browser --------------------------------------------------------------------------------


async def serve_two_books(sqlite_url: str, tmp_path: Path, port: int, **book: object) -> Settings:
    """Settings of a live server on `port` whose orchard book's citations point at its pages."""
    base = f"http://127.0.0.1:{port}"
    settings = make_settings(sqlite_url, book_base_url=f"{base}/book")
    await ingest_book(settings)
    await add_book(
        settings,
        "orchard",
        ORCHARD_TITLE,
        base_url=f"{base}/book/orchard",
        folder=orchard_folder(tmp_path),
        **book,  # type: ignore[arg-type]
    )
    return settings


def chat_calls(requests: list[Request]) -> list[str]:
    return [r.url for r in requests if "/api/" in r.url and r.method != "OPTIONS"]


@pytest.mark.slow
class TestInTheBrowser:
    async def test_the_books_page_chats_with_that_book(
        self, tab: Tab, sqlite_url: str, tmp_path: Path
    ) -> None:
        port = free_port()
        settings = await serve_two_books(sqlite_url, tmp_path, port)
        with live_server(settings, port=port) as base:
            page = tab.page
            sent: list[Request] = []
            page.on("request", lambda request: sent.append(request))
            await page.goto(base + "/book/orchard")
            await tab.part(".launcher").wait_for()
            await tab.ask(QUESTION)
            answer = await tab.answered()
            text = await answer.locator(".md").inner_text()
            await tab.shot("book-orchard-answer")
            # The extractive model quotes the book: this sentence is in the orchard book only.
            assert PRUNING_SENTENCE in text
            source = answer.locator(".sources a").first
            assert await source.get_attribute("href") == (
                f"{base}/book/orchard/trees/pruning#when-to-prune"
            )
            assert chat_calls(sent) == [f"{base}/api/v1/books/orchard/chat/stream"]
            # The conversation is the orchard book's, kept apart from the default book's.
            session = await page.evaluate(
                f"localStorage.getItem('bookchat:{base}/books/orchard:session')"
            )
            assert session
            assert await page.evaluate(f"localStorage.getItem('bookchat:{base}:session')") is None
            async with httpx.AsyncClient(base_url=base) as client:
                book = await client.get(f"/api/v1/books/orchard/chat/history/{session}")
                default = await client.get(f"/api/v1/chat/history/{session}")
            assert book.status_code == 200
            assert book.json()["messages"][0]["content"] == QUESTION
            assert default.status_code == 404

            # A reload asks the book's history route for it.
            sent.clear()
            await page.reload()
            await tab.part(".bot .sources").wait_for()
            assert chat_calls(sent) == [
                f"{base}/api/v1/books/orchard/chat/history/{session}?limit=50"
            ]
        tab.assert_no_console_errors()

    async def test_another_site_embeds_a_book_allowed_by_the_books_origins_alone(
        self, tab: Tab, sqlite_url: str, tmp_path: Path
    ) -> None:
        port, site_port = free_port(), free_port()
        site = f"http://localhost:{site_port}"
        # CORS_ORIGINS keeps its default (localhost:3000): only the book lets this site in.
        settings = await serve_two_books(sqlite_url, tmp_path, port, cors_origins=(site,))
        with live_server(settings, port=port) as api:
            tag = f'<script src="{api}/widget.js" data-api="{api}"{{attrs}} defer></script>'
            article = "<article><p>Orchard notes.</p></article>"
            pages = {
                "/orchard": tag.format(attrs=' data-book="orchard"') + article,
                "/default": tag.format(attrs="") + article,
                "/favicon.ico": "",
            }
            with static_site(site_port, pages) as url:
                page = tab.page
                await page.goto(url + "/orchard")
                await tab.ask(QUESTION)
                answer = await tab.answered()
                assert PRUNING_SENTENCE in await answer.locator(".md").inner_text()

                # Without data-book the widget asks the unscoped routes, which refuse this site.
                await page.goto(url + "/default")
                await tab.ask(QUESTION)
                notice = tab.part(".notice")
                await notice.wait_for()
                assert (
                    await notice.inner_text()
                    == "Couldn't reach the chat server. Try again in a moment."
                )
        assert any("blocked by CORS policy" in error for error in tab.errors)
        assert all("/api/v1/books/orchard/" not in error for error in tab.errors)
