"""Tables in the widget's answers, in Chromium: a GitHub-flavoured pipe table from the model (or
quoted from the book by the offline answerer) is a table the reader can read, with its
alignment, its citations and its cells as inert text, while it streams in and on a phone."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Locator

from tests.conftest import REWRITE_MARKER
from tests.fakes.openai_server import FakeOpenAIServer, split_tokens
from tests.web.conftest import CHAPTER, QUESTION, Tab, demo_server, history

pytestmark = pytest.mark.slow

TABLE_ANSWER = (
    "The two robots differ mostly in how they stand [1]:\n\n"
    "| Feature | Go2 | G1 |\n"
    "|:---|:-:|---:|\n"
    "| **Legs** | 4 | 2 [1] |\n"
    '| Command | `go2 \\| tee` | <img src=x onerror="window.__pwned = 1"> |\n'
    "| Mass | 15 kg |\n"
    "| Height | 0.4 m | 1.3 m | a cell too many |\n\n"
    "The G1 climbs stairs better."
)

# A table as a model streams it: the header alone, the delimiter row in pieces, a row cut
# in the middle of a cell.
STREAMED_PIECES = [
    "The two robots compare like this:\n\n| Robot | Mass | Height |\n",
    "|:--",
    "-|--",
    "-:|---:|\n| Go2 | 15",
    " kg | 0.4 m |\n| G1 | 35 kg | 1.3 m |\n\nThe G1 is the heavier one.",
]
STREAMED_ANSWER = "".join(STREAMED_PIECES)
STREAMED_HEADER = ["Robot", "Mass", "Height"]

WIDE_ANSWER = (
    "The camera's topics:\n\n"
    "| Topic | Message type | Node | QoS |\n"
    "|---|---|---|---|\n"
    "| /camera/depth/image_rect_raw | sensor_msgs/msg/Image"
    " | realsense2_camera_node | BEST_EFFORT |\n"
)

# The table's header cells, and each body row's cells, as the reader sees them.
READ_TABLE = """t => ({
    head: [...t.tHead.rows[0].cells].map(c => c.innerText),
    body: [...t.tBodies].flatMap(b => [...b.rows]).map(r => [...r.cells].map(c => c.innerText)),
})"""


def answering(text: str) -> Any:
    """The fake model, answering every question with `text`."""

    def reply(request: dict[str, Any]) -> str:
        if REWRITE_MARKER in request["messages"][0]["content"]:
            return "quality of service"
        return text

    return reply


async def read_table(table: Locator) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = await table.evaluate(READ_TABLE)
    return found


class TestTables:
    async def test_a_table_shows_its_cells_aligned_cited_and_inert(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = answering(TABLE_ANSWER)
        async with demo_server(sqlite_url, fake_openai) as base:
            await tab.page.goto(base + "/")  # its CSP allows no inline style
            await tab.ask(QUESTION)
            answer = await tab.answered()
            body = answer.locator(".md")
            assert await body.locator("table").count() == 1
            table = body.locator("table")
            assert await read_table(table) == {
                "head": ["Feature", "Go2", "G1"],
                "body": [
                    ["Legs", "4", "2 [1]"],
                    ["Command", "go2 | tee", '<img src=x onerror="window.__pwned = 1">'],
                    ["Mass", "15 kg", ""],  # a short row is filled up
                    ["Height", "0.4 m", "1.3 m"],  # a long one loses its extra cell
                ],
            }
            # The text around the table stays paragraphs; no pipes are left over.
            paragraphs = await body.locator("p").all_inner_texts()
            assert paragraphs == [
                "The two robots differ mostly in how they stand [1]:",
                "The G1 climbs stairs better.",
            ]

            # Inline Markdown works in cells, and a cell's [1] links to its source.
            assert await table.locator("strong").inner_text() == "Legs"
            assert await table.locator("code").inner_text() == "go2 | tee"
            citations = (await history(base, tab.page))["messages"][1]["citations"]
            section = {c["index"]: c["page_url"] for c in citations}[1]
            assert section.startswith(f"{base}{CHAPTER}#")
            assert await table.locator("a.cite").get_attribute("href") == section

            # HTML in a cell is text: nothing was injected, nothing ran.
            await tab.page.wait_for_timeout(300)  # time for an onerror that must not run
            assert await body.locator("img").count() == 0
            assert await tab.page.evaluate("window.__pwned") is None

            # Each column keeps the delimiter row's alignment, header and body alike.
            aligned = await table.evaluate(
                "t => [...t.rows].map(r => [...r.cells].map(c => getComputedStyle(c).textAlign))"
            )
            assert aligned == [["left", "center", "right"]] * 5
            header = await table.locator("th").first.evaluate(
                "th => Number(getComputedStyle(th).fontWeight)"
            )
            assert header >= 600
            await tab.shot("40-table")
        tab.assert_no_console_errors()  # a refused inline style would be reported here

    async def test_pipes_without_a_delimiter_row_stay_text(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = answering("Options:\n| Go2 | G1 |\n| fast | tall |")
        async with demo_server(sqlite_url, fake_openai) as base:
            await tab.page.goto(base + "/")
            await tab.ask(QUESTION)
            body = (await tab.answered()).locator(".md")
            assert await body.locator("table").count() == 0
            assert await body.inner_text() == "Options:\n| Go2 | G1 |\n| fast | tall |"
        tab.assert_no_console_errors()

    async def test_a_heading_or_quote_right_after_a_table_ends_it(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = answering(
            "| Robot | Legs |\n|---|---|\n| Go2 | 4 |\n"
            "## Go2 | G1 in practice\n> Go2 | the cheaper one\n"
        )
        async with demo_server(sqlite_url, fake_openai) as base:
            await tab.page.goto(base + "/")
            await tab.ask(QUESTION)
            body = (await tab.answered()).locator(".md")
            table = await read_table(body.locator("table"))
            assert table == {"head": ["Robot", "Legs"], "body": [["Go2", "4"]]}
            assert await body.locator("h3, h4, h5").first.inner_text() == "Go2 | G1 in practice"
            assert await body.locator("blockquote").inner_text() == "Go2 | the cheaper one"
        tab.assert_no_console_errors()

    async def test_a_streamed_table_grows_row_by_row_into_the_stored_one(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = answering(STREAMED_ANSWER)
        fake_openai.split = lambda text: (
            list(STREAMED_PIECES) if text == STREAMED_ANSWER else split_tokens(text)
        )
        # Long enough between pieces for each to be drawn before the next one arrives.
        fake_openai.token_delay = 0.3
        async with demo_server(sqlite_url, fake_openai) as base:
            page = tab.page
            await page.goto(base + "/")
            await tab.part(".launcher").click()
            # Every state of the answer's table the widget draws, in order (null: no table).
            await page.evaluate(
                """() => {
                    const log = document.querySelector('bookchat-widget').shadowRoot
                        .querySelector('.log');
                    const readTable = """
                + READ_TABLE
                + """;
                    window.__tables = [];
                    new MutationObserver(() => {
                        const table = log.querySelector('.bot:last-of-type .md table');
                        window.__tables.push(table ? readTable(table) : null);
                    }).observe(log, {subtree: true, childList: true});
                }"""
            )
            await tab.ask(QUESTION)
            answer = await tab.answered()
            assert await answer.locator(".md .table").count() == 1
            streamed = await answer.locator(".md .table").evaluate("t => t.outerHTML")

            seen: list[Any] = []
            for state in await page.evaluate("window.__tables"):
                if not seen or seen[-1] != state:
                    seen.append(state)
            header_only = {"head": STREAMED_HEADER, "body": []}
            cut_row = {"head": STREAMED_HEADER, "body": [["Go2", "15", ""]]}
            final = {
                "head": STREAMED_HEADER,
                "body": [["Go2", "15 kg", "0.4 m"], ["G1", "35 kg", "1.3 m"]],
            }
            assert header_only in seen  # the header under a delimiter row still arriving
            assert cut_row in seen  # a row cut in a cell shows what it has
            assert seen[-1] == final
            # Once it is a table, it stays one: no raw pipes flash back in between.
            first = seen.index(header_only)
            assert all(s is not None and s["head"] == STREAMED_HEADER for s in seen[first:])

            # The stored answer, rendered whole from the history, is the same table.
            await page.reload()
            await tab.part(".bot .md .table").wait_for()
            stored = await tab.part(".bot .md .table").evaluate("t => t.outerHTML")
            assert stored == streamed
        tab.assert_no_console_errors()

    async def test_the_offline_answerer_quotes_a_table_of_the_book(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        async with demo_server(sqlite_url, fake_openai, llm_provider="extractive") as base:
            await tab.page.goto(base + "/")
            await tab.ask(
                "Which sensors are common, what do they measure and at what typical rate?"
            )
            answer = await tab.answered()
            assert await answer.locator(".meta").inner_text() == (
                "Offline answer: sentences quoted from the book."
            )
            table = answer.locator(".md table")
            assert await table.count() == 1
            quoted = await read_table(table)
            assert quoted["head"] == ["Sensor", "What it measures", "Typical rate", "Typical use"]
            assert [
                "IMU",
                "Linear acceleration and angular velocity",
                "100 to 1000 Hz",
                "Balance, orientation estimation, odometry",
            ] in quoted["body"]
            assert len(quoted["body"]) == 8  # the whole table: all of it was asked about
            assert "|" not in await answer.locator(".md").inner_text()
            await tab.shot("41-offline-table")
        tab.assert_no_console_errors()


class TestPhone:
    async def test_a_wide_table_scrolls_inside_the_answer(
        self, phone: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = answering(WIDE_ANSWER)
        async with demo_server(sqlite_url, fake_openai) as base:
            page = phone.page
            await page.goto(base + "/")
            await phone.ask(QUESTION)
            answer = await phone.answered()
            assert await answer.locator(".md table").count() == 1

            # Neither the page nor the panel nor the conversation got wider than the phone.
            panel = await phone.part(".panel").bounding_box()
            assert panel == {"x": 0, "y": 0, "width": 390, "height": 760}
            assert await page.evaluate("document.documentElement.scrollWidth") == 390
            log = phone.part(".log")
            assert await log.evaluate("l => l.scrollWidth <= l.clientWidth")
            bubble = await answer.bounding_box()
            assert bubble is not None
            assert bubble["x"] + bubble["width"] <= 390

            # The table is wider than its box, which scrolls to show the last column.
            wrapper = answer.locator(".md .table")
            assert await wrapper.evaluate("w => w.scrollWidth > w.clientWidth + 50")
            last = answer.locator("th").last
            assert await last.evaluate(
                "th => th.getBoundingClientRect().left"
                " >= th.closest('.table').getBoundingClientRect().right"
            )
            await wrapper.evaluate("w => { w.scrollLeft = w.scrollWidth; }")
            shown = await last.evaluate(
                "th => { const box = th.closest('.table').getBoundingClientRect();"
                " const cell = th.getBoundingClientRect();"
                " return cell.left >= box.left && cell.right <= box.right + 1; }"
            )
            assert shown
            await phone.shot("42-phone-wide-table")
        phone.assert_no_console_errors()
