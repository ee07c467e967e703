"""The /admin page over HTTP: its shell, its policy and its two static files (the page itself,
signed in and drawn, is tested in Chromium in test_admin_page_browser.py)."""

from __future__ import annotations

import re

import pytest

from bookchat.web.router import ADMIN_CSP, STATIC_CACHE_CONTROL
from tests.conftest import AppFactory, make_settings


class TestAdminPage:
    async def test_serves_the_sign_in_and_the_empty_dashboard(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, book_title="Robots & <Humans>")
        async with app_factory(settings) as client:
            response = await client.get("/admin")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        page = response.text
        assert "<title>Admin · Robots &amp; &lt;Humans&gt;</title>" in page
        assert '<script src="/admin.js" defer></script>' in page
        assert '<link rel="stylesheet" href="/admin.css">' in page
        # Every input has a label that names it.
        inputs = re.findall(r'<input id="([^"]+)"', page)
        assert inputs == ["login-email", "login-password", "admin-key", "range-start", "range-end"]
        for input_id in inputs[:3]:
            assert f'<label for="{input_id}">' in page
        assert re.search(r'<label>From <input id="range-start"', page)
        assert re.search(r'<label>To <input id="range-end"', page)
        # The dashboard waits, hidden, for a sign-in.
        assert '<div id="dashboard" class="dashboard" hidden>' in page
        # Its heading names the book once one is shown; the book picker, labelled, waits hidden
        # for the list of books (a deployment of one book never shows it).
        assert '<h1 id="dashboard-title">Insights</h1>' in page
        assert '<div id="book-picker" class="book-picker" hidden>' in page
        assert '<label for="book-select">Book</label>' in page
        assert re.findall(r'<select id="([^"]+)"', page) == ["book-select"]
        # The notice for a book the address names that is not there, empty until needed.
        assert '<p id="book-notice" class="notice book-notice" role="alert" hidden></p>' in page

    async def test_its_policy_loads_only_its_own_files_and_it_is_never_cached(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.get("/admin")

        assert response.headers["content-security-policy"] == ADMIN_CSP
        directives = dict(
            part.strip().split(" ", 1) for part in ADMIN_CSP.split(";") if part.strip()
        )
        assert directives["script-src"] == "'self'"
        assert directives["style-src"] == "'self'"
        assert directives["connect-src"] == "'self'"
        assert directives["default-src"] == "'none'"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-robots-tag"] == "noindex"
        assert response.headers["x-frame-options"] == "DENY"

    async def test_is_not_in_the_api_schema(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            paths = (await client.get("/openapi.json")).json()["paths"]

        assert not {"/admin", "/admin.js", "/admin.css"} & set(paths)


class TestAdminAssets:
    @pytest.mark.parametrize(
        ("path", "media_type"),
        [("/admin.js", "text/javascript"), ("/admin.css", "text/css")],
    )
    async def test_are_served_with_an_etag_and_answer_304_to_a_cached_copy(
        self, sqlite_url: str, app_factory: AppFactory, path: str, media_type: str
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.get(path)
            head = await client.head(path)
            cached = await client.get(path, headers={"If-None-Match": response.headers["etag"]})

        assert response.status_code == 200
        assert response.headers["content-type"] == f"{media_type}; charset=utf-8"
        assert response.headers["cache-control"] == STATIC_CACHE_CONTROL
        assert head.status_code == 200
        assert head.headers["etag"] == response.headers["etag"]
        assert cached.status_code == 304
        assert cached.content == b""

    async def test_the_script_never_writes_html(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            script = (await client.get("/admin.js")).text

        # Everything from the API goes in through textContent: no HTML parsing anywhere.
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in script
