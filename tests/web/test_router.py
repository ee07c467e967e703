"""The demo site and /widget.js over HTTP: chapters, heading anchors, caching, 404s."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from bookchat.web.router import STATIC_CACHE_CONTROL
from tests.conftest import AppFactory, make_settings
from tests.factories import book_settings

ADMIN_KEY = "admin-test-key"
# The ingested book's page URLs point at this server's own /book pages.
BOOK_URL = "http://127.0.0.1:8000/book"
# The mini book in sidebar order: the root page, then each folder's pages by position.
MINI_BOOK_TITLES = ["Mini Book", "Messaging", "Cameras", "Walking"]


def nav_titles(page: str) -> list[str]:
    nav = page.split('<nav class="toc"', 1)[1].split("</nav>", 1)[0]
    return re.findall(r'<a href="/book[^"]*"[^>]*>([^<]+)</a>', nav)


def heading_ids(page: str) -> list[str]:
    return re.findall(r'<h[1-6] id="([^"]+)"', page)


async def documents(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/content/documents", params={"limit": 100})
    items: list[dict[str, Any]] = response.json()["items"]
    return items


class TestDemoPage:
    async def test_lists_the_chapters_and_includes_the_widget(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(await book_settings(sqlite_url, book_base_url=BOOK_URL)) as client:
            response = await client.get("/")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        page = response.text
        assert nav_titles(page) == MINI_BOOK_TITLES
        assert '<script src="/widget.js"' in page
        assert '<link rel="stylesheet" href="/demo.css">' in page
        # The first chapter is shown, and marked as the current one in the list.
        assert '<a href="/book/" aria-current="page">Mini Book</a>' in page
        assert '<h1 id="mini-book">Mini Book</h1>' in page
        # The modules group the chapters.
        assert '<li class="toc-module"><span>Basics</span>' in page
        # The embed snippet names this server.
        assert '&lt;script src="http://testserver/widget.js" data-api="http://testserver"' in page

    async def test_its_policy_allows_the_widget_and_nothing_else(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(await book_settings(sqlite_url, book_base_url=BOOK_URL)) as client:
            response = await client.get("/")
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "connect-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "default-src 'none'" not in policy  # the API's policy would break the page
        assert response.headers["x-content-type-options"] == "nosniff"

    async def test_an_empty_book_says_how_to_fill_it(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.get("/")
        assert response.status_code == 200
        assert "No chapters yet" in response.text
        assert "bookchat ingest" in response.text

    async def test_is_not_in_the_openapi_schema(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            paths = set((await client.get("/openapi.json")).json()["paths"])
        assert not {"/", "/book", "/book/{route}", "/widget.js", "/demo.css", "/demo.js"} & paths


class TestChapterPage:
    async def test_headings_carry_the_anchors_citations_link_to(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(await book_settings(sqlite_url, book_base_url=BOOK_URL)) as client:
            for document in await documents(client):
                detail = (await client.get(f"/api/v1/content/documents/{document['id']}")).json()
                path = document["page_url"].removeprefix("http://127.0.0.1:8000")
                response = await client.get(path)
                assert response.status_code == 200, path
                ids = heading_ids(response.text)
                # Every chunk's URL is this page plus the #anchor of a heading on it.
                for chunk in detail["chunks"]:
                    page_url, _, anchor = chunk["page_url"].partition("#")
                    assert page_url == document["page_url"]
                    assert not anchor or anchor in ids, (path, anchor, ids)

    async def test_a_chapter_and_its_admonition(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(await book_settings(sqlite_url, book_base_url=BOOK_URL)) as client:
            response = await client.get("/book/basics/camera-guide")
        page = response.text
        assert heading_ids(page) == ["cameras", "depth-cameras"]
        assert '<a href="/book/basics/camera-guide" aria-current="page">Cameras</a>' in page
        assert '<aside class="admonition admonition-tip">' in page
        assert '<p class="admonition-title">Calibration</p>' in page
        assert '<link rel="canonical" href="/book/basics/camera-guide">' in page

    @pytest.mark.parametrize("path", ["/book", "/book/", "/book/basics/camera-guide/"])
    async def test_slashes_do_not_matter(
        self, path: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(await book_settings(sqlite_url, book_base_url=BOOK_URL)) as client:
            response = await client.get(path)
        assert response.status_code == 200
        assert 'aria-current="page"' in response.text

    async def test_an_unknown_chapter_is_a_404_page(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(await book_settings(sqlite_url, book_base_url=BOOK_URL)) as client:
            response = await client.get("/book/basics/no-such-page")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert "Page not found" in response.text
        assert nav_titles(response.text) == MINI_BOOK_TITLES  # a way back into the book
        assert 'aria-current="page"' not in response.text

    async def test_an_edited_chapter_is_rendered_again(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url, book_base_url=BOOK_URL, admin_api_key=ADMIN_KEY)
        async with app_factory(settings) as client:
            before = await client.get("/book/motion/walking")
            walking = next(d for d in await documents(client) if d["title"] == "Walking")
            edited = await client.put(
                f"/api/v1/content/{walking['id']}",
                json={"content": "---\ntitle: Walking\n---\n\n# Walking\n\n## Running\n\nFly.\n"},
                headers={"X-Admin-Key": ADMIN_KEY},
            )
            after = await client.get("/book/motion/walking")
        assert edited.status_code == 200
        assert 'id="balance"' in before.text
        assert heading_ids(after.text) == ["walking", "running"]


class TestStaticFiles:
    async def test_widget_script_is_cacheable(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.get("/widget.js")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/javascript; charset=utf-8"
        assert response.headers["cache-control"] == STATIC_CACHE_CONTROL == "public, max-age=3600"
        assert re.fullmatch(r'"[0-9a-f]{32}"', response.headers["etag"])
        # Other sites load it with a plain <script> tag.
        assert response.headers["cross-origin-resource-policy"] == "cross-origin"
        assert "attachShadow" in response.text
        # Readable source, no build step: about 17 KB once a proxy or CDN compresses it.
        assert len(response.content) < 55_000

    @pytest.mark.parametrize("form", ["{etag}", "W/{etag}", '"other", {etag}', "*"])
    async def test_a_cached_copy_gets_304(
        self, form: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            etag = (await client.get("/widget.js")).headers["etag"]
            response = await client.get(
                "/widget.js", headers={"If-None-Match": form.format(etag=etag)}
            )
        assert response.status_code == 304
        assert response.content == b""
        assert response.headers["etag"] == etag
        assert response.headers["cache-control"] == "public, max-age=3600"

    async def test_a_stale_copy_gets_the_script(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.get("/widget.js", headers={"If-None-Match": '"stale"'})
        assert response.status_code == 200
        assert response.content

    async def test_demo_stylesheet(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.get("/demo.css")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/css; charset=utf-8"
        assert response.headers["cache-control"] == "public, max-age=3600"

    async def test_demo_script(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            page = (await client.get("/")).text
            response = await client.get("/demo.js")
            head = await client.head("/demo.js")
        # Loaded by the page itself (its CSP allows only 'self' scripts), before the body.
        assert '<script src="/demo.js"></script>' in page.split("</head>", 1)[0]
        assert response.status_code == head.status_code == 200
        assert response.headers["content-type"] == "text/javascript; charset=utf-8"
        assert response.headers["cache-control"] == "public, max-age=3600"
        assert "aria-expanded" in response.text
