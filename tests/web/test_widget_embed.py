"""Another site embeds the widget with the one-line snippet: cross-origin calls (CORS), and
CSS isolation both ways."""

from __future__ import annotations

import re

from tests.conftest import free_port
from tests.fakes.openai_server import FakeOpenAIServer
from tests.web.conftest import QUESTION, Tab, book_answers, demo_server, history, static_site

HOST_PAGE = """<!doctype html>
<html><head><title>Course site</title>
<style>
  body { font: 30px/3 serif; color: green; text-transform: uppercase; }
  button { display: none !important; }
  div, section, p { font-size: 40px !important; color: red !important; }
  .primary { color: rgb(1, 2, 3); }
</style>
<script src="{api}/widget.js" data-api="{api}" defer></script>
</head><body>
<nav><span class="primary" id="brand">Course</span> navigation</nav>
<article><div class="markdown"><p class="primary" id="lesson">Quality of Service decides
how a topic delivers messages.</p></div></article>
</body></html>"""


class TestEmbedding:
    async def test_another_site_embeds_it_with_one_line(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = book_answers
        site_port = free_port()
        site = f"http://localhost:{site_port}"
        async with demo_server(
            sqlite_url, fake_openai, cors_origins=[site], rate_limit_chat="1/minute"
        ) as api:
            pages = {"/docs/qos": HOST_PAGE.replace("{api}", api), "/favicon.ico": ""}
            with static_site(site_port, pages) as url:
                page = tab.page
                await page.goto(url + "/docs/qos")
                launcher = tab.part(".launcher")
                await launcher.wait_for()
                # The host's CSS does not reach the widget...
                box = await launcher.bounding_box()
                assert box is not None
                assert (box["width"], box["height"]) == (56, 56)
                await tab.ask(QUESTION)
                answer = await tab.answered()
                styles = await answer.evaluate(
                    "el => [getComputedStyle(el).fontSize, getComputedStyle(el).color,"
                    " getComputedStyle(el).textTransform]"
                )
                assert styles == ["15px", "rgb(28, 36, 48)", "none"]
                # ...and the widget's CSS does not reach the host (it has a .primary too).
                brand = await page.locator("#brand").evaluate(
                    "el => [getComputedStyle(el).color, getComputedStyle(el).backgroundColor]"
                )
                assert brand == ["rgb(1, 2, 3)", "rgba(0, 0, 0, 0)"]
                # The answer came cross-origin, and knows the page it was asked from.
                stored = await history(api, page)
                assert stored["messages"][0]["page_context"] == url + "/docs/qos"
                await page.locator("#lesson").click(click_count=3)
                await tab.part(".bubble").wait_for()
                await tab.shot("12-embedded")
                # CORS lets the widget read Retry-After from another origin.
                await tab.part(".bubble").click()
                notice = tab.part(".notice")
                await notice.wait_for()
                assert re.search(r"Try again in \d+ seconds\.", await notice.inner_text())
        tab.assert_no_console_errors(expected="status of 429")
