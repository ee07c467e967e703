"""Fixtures of the widget's browser tests: Chromium, pages that record console errors and save
screenshots, and a live server on the sample book whose citations point at its own pages.

Screenshots go to the test's pytest tmp folder, or under `BOOKCHAT_SCREENSHOT_DIR` when set
(that is how docs/images/demo.png was made). Without /usr/bin/chromium the browser tests skip,
and fail instead under BOOKCHAT_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    ViewportSize,
    async_playwright,
)

from tests.conftest import (
    REQUIRE_SERVICES,
    REWRITE_MARKER,
    free_port,
    ingest_book,
    live_server,
    make_settings,
    openai_settings,
)
from tests.fakes.openai_server import FakeOpenAIServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SAMPLE_BOOK = Path(__file__).resolve().parents[2] / "sample_book"
CHAPTER = "/book/ros2/nodes-topics-services"

QUESTION = "What does Quality of Service mean for a topic?"
ANSWER = (
    "**Quality of Service** (QoS) policies decide how a topic's messages are delivered [1]:\n\n"
    "- **Reliability**: `RELIABLE` retransmits lost samples, `BEST_EFFORT` drops them.\n"
    "- **Durability**: `TRANSIENT_LOCAL` keeps recent samples for nodes that join late.\n\n"
    "A publisher and a subscriber connect only when their policies are compatible [1]."
)
SELECTION_ANSWER = "The passage defines a node: one named participant of the ROS graph [1]."
HOSTILE_ANSWER = (
    'Look: <img src=x onerror="window.__pwned = 1"> and '
    "[a trap](javascript:window.__pwned=2) and [the docs](https://example.org/a?b=1&c=2).\n\n"
    "```\n<script>window.__pwned = 3</script>\n```\n\n"
    "**bold** and `<b>code</b>`"
)


def book_answers(request: dict[str, Any]) -> str:
    """The fake model: a selection gets an answer about it, a question the QoS answer."""
    system = request["messages"][0]["content"]
    if "selected a passage" in system:
        return SELECTION_ANSWER
    if REWRITE_MARKER in system:
        return "quality of service"
    return ANSWER


# --- the browser -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium, launched once for the run."""
    if not os.access(CHROMIUM, os.X_OK):
        message = f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
        if REQUIRE_SERVICES:
            pytest.fail(f"{message}; BOOKCHAT_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
        pytest.skip(message)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


@dataclass
class Tab:
    """A page in a fresh browser context, with its console errors and a screenshot folder."""

    page: Page
    shots: Path
    errors: list[str] = field(default_factory=list)

    @property
    def widget(self) -> Locator:
        return self.page.locator("bookchat-widget")

    def part(self, selector: str) -> Locator:
        """An element inside the widget's shadow root (Playwright's CSS pierces it)."""
        return self.widget.locator(selector)

    async def shot(self, name: str) -> None:
        self.shots.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=self.shots / f"{name}.png")

    async def ask(self, question: str) -> None:
        if await self.part(".panel").is_hidden():
            await self.part(".launcher").click()
        await self.part("textarea").fill(question)
        await self.part("textarea").press("Enter")

    async def answered(self) -> Locator:
        """The last answer, once complete."""
        answer = self.part(".bot").last
        await answer.locator(".md").wait_for()
        await self.page.wait_for_function(
            "() => !document.querySelector('bookchat-widget').shadowRoot"
            ".querySelector('.bot.typing')"
        )
        return answer

    def assert_no_console_errors(self, *, expected: str | None = None) -> None:
        unexpected = [e for e in self.errors if expected is None or expected not in e]
        assert unexpected == []


def screenshot_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    chosen = os.environ.get("BOOKCHAT_SCREENSHOT_DIR")
    if chosen:
        return Path(chosen) / str(request.node.name)
    return tmp_path / "screenshots"


async def open_tab(
    browser: Browser, shots: Path, viewport: ViewportSize | None = None
) -> tuple[Tab, BrowserContext]:
    context = await browser.new_context(viewport=viewport or {"width": 1280, "height": 800})
    page = await context.new_page()
    tab = Tab(page, shots)
    page.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: tab.errors.append(f"page error: {error}"))
    return tab, context


@pytest.fixture
async def tab(
    browser: Browser, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Tab]:
    opened, context = await open_tab(browser, screenshot_dir(request, tmp_path))
    yield opened
    await context.close()


@pytest.fixture
async def phone(
    browser: Browser, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Tab]:
    opened, context = await open_tab(
        browser, screenshot_dir(request, tmp_path), {"width": 390, "height": 760}
    )
    yield opened
    await context.close()


# --- the server ----------------------------------------------------------------------------------


@asynccontextmanager
async def demo_server(
    sqlite_url: str, fake: FakeOpenAIServer, **overrides: Any
) -> AsyncIterator[str]:
    """The app on the sample book, its citations pointing at its own /book pages."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = make_settings(
        sqlite_url,
        **{
            **openai_settings(fake),
            "book_docs_dir": str(SAMPLE_BOOK),
            "book_base_url": f"{base}/book",
            **overrides,
        },
    )
    await ingest_book(settings, SAMPLE_BOOK)
    with live_server(settings, port=port) as url:
        yield url


async def history(base: str, page: Page) -> dict[str, Any]:
    """The conversation the widget stored, as the API returns it."""
    session = await page.evaluate(f"localStorage.getItem('bookchat:{base}:session')")
    assert session
    async with httpx.AsyncClient(base_url=base) as client:
        body: dict[str, Any] = (await client.get(f"/api/v1/chat/history/{session}")).json()
        return body


# --- another site that embeds the widget ----------------------------------------------------------


@contextmanager
def static_site(port: int, pages: dict[str, str]) -> Iterator[str]:
    """HTML pages (path -> page) on their own origin: localhost and another port than the API
    (chosen first, since CORS_ORIGINS must name the origin)."""
    handler = functools.partial(_PageHandler, pages)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, name="static-site", daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _PageHandler(http.server.BaseHTTPRequestHandler):
    disable_nagle_algorithm = True  # DESIGN.md section 9

    def __init__(self, pages: dict[str, str], *args: Any, **kwargs: Any) -> None:
        self.pages = pages
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        page = self.pages.get(self.path)
        body = (page or "not found").encode()
        self.send_response(200 if page is not None else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass
