"""What a new reader sees first, in Chromium at 390 px (a phone) and 1366 px (a laptop): the
chapter before the chapter list, a cut passage that says it is cut, and the text beside the
open chat rather than under it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, FloatRect, Locator

from tests.conftest import free_port
from tests.fakes.openai_server import FakeOpenAIServer
from tests.web.conftest import (
    CHAPTER,
    Tab,
    book_answers,
    demo_server,
    open_tab,
    screenshot_dir,
    static_site,
)

pytestmark = pytest.mark.slow


@pytest.fixture
async def laptop(
    browser: Browser, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Tab]:
    """A 1366 x 768 screen, the most common laptop size."""
    shots = screenshot_dir(request, tmp_path)
    opened, context = await open_tab(browser, shots, {"width": 1366, "height": 768})
    yield opened
    await context.close()


async def box(locator: Locator) -> FloatRect:
    found = await locator.bounding_box()
    assert found is not None
    return found


async def focused(locator: Locator) -> bool:
    result: bool = await locator.evaluate("el => el.getRootNode().activeElement === el")
    return result


class TestPhone:
    async def test_the_chapter_comes_first_and_the_chapter_list_is_a_menu(
        self, phone: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        async with demo_server(sqlite_url, fake_openai) as base:
            page = phone.page
            await page.goto(base + CHAPTER)
            title = page.locator("article h1")
            assert (await box(title))["y"] < 120  # on the first screen, near its top
            nav = page.locator("nav#chapters")
            menu = page.get_by_role("button", name="Chapters")
            assert await nav.is_hidden()
            assert await menu.get_attribute("aria-expanded") == "false"
            assert await menu.get_attribute("aria-controls") == "chapters"
            await phone.shot("30-phone-chapter-first")

            # Keyboard: the menu button is the first stop; Enter opens the list, Tab enters it.
            await page.keyboard.press("Tab")
            assert await focused(menu)
            await page.keyboard.press("Enter")
            assert await menu.get_attribute("aria-expanded") == "true"
            assert await nav.is_visible()
            current = nav.locator("a[aria-current=page]")
            assert await current.inner_text() == "Nodes, Topics, Services, and Actions"
            assert await current.is_visible()
            await phone.shot("31-phone-chapter-menu")
            await page.keyboard.press("Tab")  # the book's name, in the top bar
            await page.keyboard.press("Tab")
            first_link = nav.locator("a").first
            assert await focused(first_link)
            # Escape folds it and gives focus back to the button.
            await page.keyboard.press("Escape")
            assert await nav.is_hidden()
            assert await menu.get_attribute("aria-expanded") == "false"
            assert await focused(menu)

            # A chapter picked from the menu opens with the list folded again.
            await menu.click()
            await nav.get_by_role("link", name="Describing Robots with URDF").click()
            await page.wait_for_url(base + "/book/robot-description")  # its frontmatter slug
            assert await nav.is_hidden()
            assert (await box(page.locator("article h1")))["y"] < 120
        phone.assert_no_console_errors()

    async def test_a_long_selected_passage_ends_with_an_ellipsis(
        self, phone: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = book_answers
        async with demo_server(sqlite_url, fake_openai) as base:
            page = phone.page
            await page.goto(base + CHAPTER)
            await page.locator("h2#nodes + p").click(click_count=3)
            await phone.part(".bubble").click()
            await phone.answered()
            quote = phone.part(".user .quote")
            # Four lines are shown and the rest is cut, where line-clamp draws the ellipsis.
            style = await quote.evaluate(
                "q => { const s = getComputedStyle(q);"
                " return [s.webkitLineClamp, q.scrollHeight > q.clientHeight + 2,"
                " Math.round(q.clientHeight / parseFloat(s.lineHeight))]; }"
            )
            assert style == ["4", True, 4]
            await phone.shot("32-phone-passage-ellipsis")
            # A short passage is shown whole.
            await phone.part("text=New chat").click()
            await page.keyboard.press("Escape")  # the panel fills a phone's screen
            await page.get_by_role("heading", name="Nodes", exact=True).click(click_count=3)
            await phone.part(".bubble").click()
            await phone.answered()
            whole = await phone.part(".user .quote").evaluate(
                "q => q.scrollHeight <= q.clientHeight + 2"
            )
            assert whole
        phone.assert_no_console_errors()


class TestLaptop:
    async def test_the_text_moves_beside_the_open_panel_which_can_be_resized(
        self, laptop: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = book_answers
        async with demo_server(sqlite_url, fake_openai) as base:
            page = laptop.page
            await page.goto(base + CHAPTER)
            article = page.locator("article.markdown")
            # The list of chapters is beside the text on a wide screen; no menu button.
            assert await page.locator("nav#chapters").is_visible()
            assert await page.get_by_role("button", name="Chapters").is_hidden()
            closed = await box(article)

            await laptop.part(".launcher").click()
            panel = laptop.part(".panel")
            await panel.wait_for()
            left = (await box(panel))["x"]
            # Closed, the text ran past where the panel now is; open, it ends before it.
            assert closed["x"] + closed["width"] > left
            opened = await box(article)
            assert opened["x"] + opened["width"] <= left
            assert opened["width"] >= 480  # still a readable column
            await laptop.shot("33-laptop-text-beside-panel")

            # The panel's left edge resizes it, with the keyboard...
            handle = laptop.part("[role=separator]")
            assert await handle.get_attribute("aria-label") == "Resize the chat panel"
            width = (await box(panel))["width"]
            assert await handle.get_attribute("aria-valuenow") == str(round(width))
            await handle.focus()
            for _ in range(3):
                await page.keyboard.press("ArrowLeft")
            assert (await box(panel))["width"] == width + 60
            assert await handle.get_attribute("aria-valuenow") == str(round(width + 60))
            wider = await box(panel)
            assert (await box(article))["x"] + (await box(article))["width"] <= wider["x"]

            # ...and with the mouse.
            grip = await box(handle)
            await page.mouse.move(grip["x"] + 4, grip["y"] + 200)
            await page.mouse.down()
            await page.mouse.move(grip["x"] + 4 + 100, grip["y"] + 200, steps=5)
            await page.mouse.up()
            dragged = (await box(panel))["width"]
            assert dragged == pytest.approx(width + 60 - 100, abs=2)
            await laptop.shot("34-laptop-resized-panel")

            # The width is remembered; closing gives the page its full width back.
            await page.reload()
            await panel.wait_for()
            assert (await box(panel))["width"] == pytest.approx(dragged, abs=1)
            await laptop.part(".close").click()
            await panel.wait_for(state="hidden")
            assert await box(article) == closed
        laptop.assert_no_console_errors()

    async def test_a_site_can_keep_its_layout(
        self, laptop: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        """data-reflow="none": the widget leaves the page's layout alone, and still tells it
        that the panel is open and how much room it takes, for the site's own CSS."""
        port = free_port()
        site = f"http://localhost:{port}"
        async with demo_server(sqlite_url, fake_openai, cors_origins=[site]) as api:
            page = (
                '<!doctype html><link rel="icon" href="data:,">'
                f'<script src="{api}/widget.js" data-reflow="none" defer></script>'
                '<article style="margin: 0 40px">Some text.</article>'
            )
            with static_site(port, {"/": page}):
                await laptop.page.goto(site + "/")
                article = laptop.page.locator("article")
                closed = await box(article)
                await laptop.part(".launcher").click()
                await laptop.part(".panel").wait_for()
                assert await box(article) == closed
                told = await laptop.page.evaluate(
                    "[document.documentElement.dataset.bookchatPanel,"
                    " document.documentElement.style.getPropertyValue('--bookchat-panel-space')]"
                )
                assert told == ["open", "446px"]  # the panel's 410 px, its margin and a gap
        laptop.assert_no_console_errors()
