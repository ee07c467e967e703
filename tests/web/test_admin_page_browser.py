"""The /admin page in Chromium against a live server whose history was made through the real
chat API (then moved back in time): sign-in, totals, the per-day chart, top sections, the
unanswered and low-rated lists, pagination, the CSV download, refusals, phone and desktop."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Browser, Page, Route
from sqlalchemy import select

from bookchat.accounts.service import ensure_admin
from bookchat.chat.models import ChatSession, Message, MessageFeedback, MessageRole
from tests.factories import PASSWORD, ask, bearer, open_db, sign_up
from tests.fakes.openai_server import FakeOpenAIServer
from tests.web.conftest import Tab, book_answers, demo_server, open_tab

ADMIN_EMAIL = "admin@example.org"
READER_EMAIL = "reader@example.org"
ADMIN_KEY = "admin-page-key"
SETTINGS = {
    "admin_api_key": ADMIN_KEY,
    "rate_limit_chat": "1000/minute",
    "rate_limit_login": "1000/minute",
}
PIZZA = "What is the best pizza in Naples?"
PIZZA_AGAIN = "what is the best pizza in naples"  # a rewording: same words, case, punctuation
BREAD = "How do I bake sourdough bread at home?"
VAGUE = "Too vague: no example of a QoS profile."
QUESTION_OF_THE_BOOK = "What does Quality of Service mean for a topic?"
CSV_COLUMNS = [
    "asked_at",
    "question",
    "mode",
    "section_title",
    "section_heading",
    "section_url",
    "rating",
    "cached",
    "latency_ms",
    "reader",
]


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def days_ago(days: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=days)).isoformat()


@dataclass
class History:
    """What the seed asked, where it moved it in time, and the ids the page should show."""

    base: str
    database_url: str
    sessions: dict[str, str] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)


async def turn(
    client: httpx.AsyncClient,
    history: History,
    name: str,
    question: str,
    *,
    session: str | None = None,
    headers: dict[str, str] | None = None,
    mode: str = "rag",
) -> str:
    """One question through POST /api/v1/chat; the answer's id (its mode checked)."""
    fields = {"session_id": history.sessions[session]} if session else {}
    body = await ask(client, question, headers=headers, **fields)
    assert body["mode"] == mode, (question, body["mode"])
    history.sessions.setdefault(session or name, body["session_id"])
    history.answers[name] = body["message_id"]
    return str(body["message_id"])


async def rate(
    client: httpx.AsyncClient,
    message_id: str,
    rating: int,
    comment: str | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    response = await client.post(
        f"/api/v1/chat/messages/{message_id}/feedback",
        json={"rating": rating, "comment": comment},
        headers=headers,
    )
    assert response.status_code == 201, response.text


async def move_back(database_url: str, session_id: str, days: int) -> None:
    """Move a conversation, its messages and their ratings `days` days into the past."""
    shift = timedelta(days=days)
    sid = uuid.UUID(session_id)
    async with open_db(database_url) as db:
        session = await db.get(ChatSession, sid)
        assert session is not None
        session.created_at, session.updated_at = (
            session.created_at - shift,
            session.updated_at - shift,
        )
        messages = list(await db.scalars(select(Message).where(Message.session_id == sid)))
        for message in messages:
            message.created_at -= shift
        ratings = await db.scalars(
            select(MessageFeedback).where(MessageFeedback.message_id.in_([m.id for m in messages]))
        )
        for feedback in ratings:
            feedback.created_at, feedback.updated_at = (
                feedback.created_at - shift,
                feedback.updated_at - shift,
            )
        await db.commit()


async def set_latencies(database_url: str, latencies: list[int]) -> None:
    """Give the answers known latencies, in the order they were written."""
    async with open_db(database_url) as db:
        answers = list(
            await db.scalars(
                select(Message)
                .where(Message.role == MessageRole.ASSISTANT)
                .order_by(Message.created_at)
            )
        )
        assert len(answers) == len(latencies)
        for answer, latency in zip(answers, latencies, strict=True):
            answer.latency_ms = latency
        await db.commit()


async def seed(base: str, database_url: str) -> History:
    """Three days of questions: 9 questions in 6 conversations, 3 of them refused.

    day -2: conversation A, two answered QoS questions; B, the pizza question (refused)
    day -1: C, one answered question rated down with a comment; D, the pizza rewording (refused)
    today:  E, the signed-in reader's three answered questions (one up, one down, no comment);
            F, the bread question (refused)
    """
    history = History(base, database_url)
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        reader = bearer((await sign_up(client, READER_EMAIL))["access_token"])
        await sign_up(client, ADMIN_EMAIL)
        async with open_db(database_url) as db:
            await ensure_admin(db, ADMIN_EMAIL, None)

        await turn(client, history, "A1", "What does Quality of Service mean for a topic?")
        await turn(client, history, "A2", "Which QoS policies exist?", session="A1")
        await turn(client, history, "B", PIZZA, mode="no_context")
        await turn(client, history, "C", "What is a node in ROS 2?")
        await rate(client, history.answers["C"], -1, VAGUE)
        await turn(client, history, "D", PIZZA_AGAIN, mode="no_context")
        await turn(client, history, "E1", "How do services differ from topics?", headers=reader)
        await turn(client, history, "E2", "What is a launch file?", session="E1", headers=reader)
        await turn(
            client, history, "E3", "How do actions report feedback?", session="E1", headers=reader
        )
        await rate(client, history.answers["E1"], 1, headers=reader)
        await rate(client, history.answers["E3"], -1, headers=reader)
        await turn(client, history, "F", BREAD, mode="no_context")

    await set_latencies(database_url, [100, 200, 300, 500, 500, 500, 700, 1500, 1500])
    for name, days in {"A1": 2, "B": 2, "C": 1, "D": 1}.items():
        await move_back(database_url, history.sessions[name], days)
    return history


@asynccontextmanager
async def seeded_server(database_url: str, fake: FakeOpenAIServer) -> AsyncIterator[History]:
    fake.reply = book_answers
    async with demo_server(database_url, fake, **SETTINGS) as base:
        yield await seed(base, database_url)


async def insights(base: str, path: str, **params: Any) -> Any:
    """What the insights API itself says (with the admin key), to compare the page with."""
    async with httpx.AsyncClient(base_url=base, headers={"X-Admin-Key": ADMIN_KEY}) as client:
        response = await client.get(f"/api/v1/insights/{path}", params=params)
        assert response.status_code == 200, response.text
        return response.json()


async def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    await page.get_by_label("Email", exact=True).fill(email)
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def total(page: Page, key: str) -> str:
    return await page.locator(f'[data-total="{key}"] dd').inner_text()


async def table_rows(page: Page, table: str) -> list[list[str]]:
    rows: list[list[str]] = await page.eval_on_selector_all(
        f"#{table} tbody tr",
        "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))",
    )
    return rows


async def full_shot(page: Page, shots: Path, name: str) -> None:
    """The whole page, top to bottom (to look at, not to compare)."""
    await asyncio.to_thread(shots.mkdir, parents=True, exist_ok=True)
    await page.screenshot(path=shots / f"{name}.png", full_page=True)


async def bar_heights(page: Page) -> dict[str, float]:
    heights: dict[str, float] = await page.eval_on_selector_all(
        "#per-day-chart rect.bar",
        "bars => Object.fromEntries(bars.map(b => [b.dataset.date, b.height.baseVal.value]))",
    )
    return heights


async def downloaded_csv(page: Page) -> tuple[str, list[dict[str, str]], list[str]]:
    """Click "Download CSV": the file's suggested name, its rows, and its header."""
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Download CSV").click()
    download = await info.value
    path = await download.path()
    text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    return download.suggested_filename, rows, list(reader.fieldnames or [])


class TestAdminSeesTheHistory:
    async def test_totals_chart_lists_and_csv_of_three_days(
        self,
        browser: Browser,
        tab: Tab,
        database_url: str,
        fake_openai: FakeOpenAIServer,
    ) -> None:
        async with seeded_server(database_url, fake_openai) as history:
            base = history.base
            page = tab.page
            await page.set_viewport_size({"width": 1366, "height": 900})
            await page.goto(base + "/admin")
            await sign_in(page, ADMIN_EMAIL)
            await page.locator("#dashboard").wait_for()
            await page.locator("#per-day-chart svg").wait_for()

            # The default range: the last 30 days, ending today.
            assert await page.get_by_label("From", exact=True).input_value() == days_ago(29)
            assert await page.get_by_label("To", exact=True).input_value() == today()
            assert await page.locator("#who").inner_text() == ADMIN_EMAIL

            # Totals, as counted by hand from the seed.
            assert await total(page, "questions") == "9"
            assert await total(page, "conversations") == "6"
            # The signed-in reader, and each of the five anonymous conversations.
            assert await total(page, "readers") == "6"
            assert await total(page, "refusal-rate") == "33.3%"  # 3 of 9 answers
            assert await total(page, "thumbs-up") == "1"
            assert await total(page, "thumbs-down") == "2"
            assert await total(page, "latency-p50") == "500 ms"
            assert await total(page, "latency-p95") == "1.5 s"

            # One bar per day, as tall as that day's questions are many: 3, 2 and 4.
            heights = await bar_heights(page)
            assert len(heights) == 30
            assert list(heights)[:: len(heights) - 1] == [days_ago(29), today()]
            busy = {days_ago(2): 3, days_ago(1): 2, today(): 4}
            assert {day for day, height in heights.items() if height > 0} == set(busy)
            unit = heights[today()] / 4
            for day, questions in busy.items():
                assert abs(heights[day] - questions * unit) < 0.01
            # The refusal rate per day: 1 of 3, 1 of 2, 1 of 4 (no point on quiet days).
            rates: dict[str, float] = await page.eval_on_selector_all(
                "#per-day-chart circle.rate-point",
                "points => Object.fromEntries(points.map(p => [p.dataset.date, +p.dataset.rate]))",
            )
            assert rates == {days_ago(2): 1 / 3, days_ago(1): 1 / 2, today(): 1 / 4}
            # Its text alternative: the SVG's title and description, and the table.
            label = await page.locator("#per-day-chart svg").get_attribute("aria-labelledby")
            assert label == "per-day-svg-title per-day-svg-desc"
            description = await page.locator("#per-day-svg-desc").text_content()
            assert description is not None
            assert description.startswith(f"9 questions from {days_ago(29)} to {today()}")
            await page.get_by_text("The numbers as a table").click()
            rows = await table_rows(page, "per-day-table")
            assert len(rows) == 30
            assert rows[-3:] == [
                [days_ago(2), "3", "3", "1", "33.3%"],
                [days_ago(1), "2", "2", "1", "50%"],
                [today(), "4", "4", "1", "25%"],
            ]
            assert rows[0] == [days_ago(29), "0", "0", "0", "–"]

            # Top sections: the API's list, each a link to the section, bars to scale.
            sections = await insights(base, "sections", limit=10)
            assert sum(item["count"] for item in sections["items"]) == 6  # one per answer
            shown = page.locator("#sections-chart li")
            assert await shown.count() == len(sections["items"])
            top = sections["items"][0]["count"]
            for index, item in enumerate(sections["items"]):
                bar_row = shown.nth(index)
                link = bar_row.locator("a")
                parts = [item["title"], item["heading"]] if item["heading"] else [item["title"]]
                assert await link.inner_text() == " › ".join(parts)
                assert await link.get_attribute("href") == item["url"]
                assert await bar_row.locator(".bar-count").inner_text() == str(item["count"])
                width = await bar_row.locator("rect").get_attribute("width")
                assert abs(float(width or 0) - 100 * item["count"] / top) < 0.01

            # Unanswered: the pizza question and its rewording as one row, then the bread.
            unanswered = await insights(base, "unanswered")
            rows = await table_rows(page, "unanswered-table")
            assert [row[:2] for row in rows] == [[PIZZA_AGAIN, "2"], [BREAD, "1"]]
            for cells, item in zip(rows, unanswered["items"], strict=True):
                asked = datetime.fromisoformat(item["last_asked_at"]).astimezone(UTC)
                assert cells[2] == asked.strftime("%Y-%m-%d %H:%M UTC")
                section = item["section"]
                if section is None:
                    assert cells[3] == "none close"
                else:
                    assert cells[3].startswith(section["title"])
            assert unanswered["items"][0]["last_asked_at"].startswith(days_ago(1))

            # Low-rated: newest first, with the reader's comment and the conversation.
            rows = await table_rows(page, "low-rated-table")
            assert [(row[0], row[2], row[4]) for row in rows] == [
                ("How do actions report feedback?", "no comment", history.sessions["E1"]),
                ("What is a node in ROS 2?", VAGUE, history.sessions["C"]),
            ]
            excerpt = "Quality of Service (QoS) policies decide"  # the Markdown marks dropped
            assert all(row[1].startswith(excerpt) for row in rows)
            assert all(len(row[1]) <= 160 for row in rows)
            assert await page.locator("#unanswered-pager button").count() == 0  # one page
            await full_shot(page, tab.shots, "admin-1366")

            # The CSV of the range: every question, no identities.
            name, csv_rows, header = await downloaded_csv(page)
            assert name == f"questions-{days_ago(29)}-{today()}.csv"  # the server's name
            assert header == CSV_COLUMNS
            assert len(csv_rows) == 9
            assert sorted(r["question"] for r in csv_rows if r["mode"] == "no_context") == sorted(
                [PIZZA, PIZZA_AGAIN, BREAD]
            )
            assert sorted(r["rating"] for r in csv_rows if r["rating"]) == ["-1", "-1", "1"]
            assert "@" not in "".join(str(r) for r in csv_rows)
            status = await page.locator("#status").inner_text()
            assert status.startswith("Downloaded the questions")

            # A narrower range: today only.
            await page.get_by_label("From", exact=True).fill(today())
            await page.get_by_role("button", name="Show", exact=True).click()
            await page.wait_for_function(
                "() => document.querySelectorAll('#per-day-chart rect.bar').length === 1"
            )
            assert await total(page, "questions") == "4"
            assert await total(page, "refusal-rate") == "25%"

            # The same page on a phone: nothing wider than the screen.
            phone, context = await open_tab(browser, tab.shots, {"width": 390, "height": 844})
            try:
                await phone.page.goto(base + "/admin")
                await sign_in(phone.page, ADMIN_EMAIL)
                await phone.page.locator("#per-day-chart svg").wait_for()
                assert len(await bar_heights(phone.page)) == 30
                overflow = await phone.page.evaluate(
                    "document.documentElement.scrollWidth - window.innerWidth"
                )
                assert overflow <= 0
                chart_width = await phone.page.locator("#per-day-chart svg").evaluate(
                    "svg => svg.getBoundingClientRect().width"
                )
                assert chart_width <= 390
                await full_shot(phone.page, phone.shots, "admin-390")
                phone.assert_no_console_errors()
            finally:
                await context.close()

            # The tab keeps the sign-in: a reload goes straight back to the dashboard.
            await page.reload()
            await page.locator("#per-day-chart svg").wait_for()
            assert await page.locator("#sign-in").is_hidden()
            assert await total(page, "questions") == "9"

            # Signing out forgets the token: a reload asks to sign in again.
            await page.get_by_role("button", name="Sign out").click()
            assert await page.locator("#sign-in").is_visible()
            assert await page.evaluate("sessionStorage.length") == 0
            await page.reload()
            assert await page.locator("#sign-in").is_visible()
            assert await page.locator("#dashboard").is_hidden()
        tab.assert_no_console_errors()


OFF_TOPIC = [
    "What is the best pizza in Naples?",
    "Who won the football world cup in 1998?",
    "How do I bake sourdough bread at home?",
    "What is the capital city of Australia?",
    "How many calories are in a banana?",
    "Which wine goes well with grilled salmon?",
    "What goes into a French onion soup?",
    "How long should I boil an egg?",
    "Which poet wrote The Raven?",
    "Where do penguins spend the winter months?",
    '<img src=x onerror="window.__pwned = 1"> lasagna recipe?',
]


class TestSignIn:
    async def test_a_reader_is_told_the_account_is_not_an_admin(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        async with demo_server(sqlite_url, fake_openai, **SETTINGS) as base:
            async with httpx.AsyncClient(base_url=base) as client:
                await sign_up(client, READER_EMAIL)
                wrong = await client.post(
                    "/api/v1/auth/login", json={"email": READER_EMAIL, "password": "not it at all"}
                )
                wrong_key = await client.get(
                    "/api/v1/insights/summary", headers={"X-Admin-Key": "not the key"}
                )
            page = tab.page
            await page.goto(base + "/admin")

            # A wrong password: the API's own message, and still signed out.
            await sign_in(page, READER_EMAIL, "not it at all")
            status = page.locator("#login-status")
            await status.get_by_text(wrong.json()["error"]["message"]).wait_for()
            assert await page.locator("#dashboard").is_hidden()

            # The right password of a reader's account: the API answers 403, the page says why.
            await sign_in(page, READER_EMAIL)
            await status.get_by_text("This account is not an admin").wait_for()
            assert await page.locator("#dashboard").is_hidden()
            assert await page.evaluate("sessionStorage.length") == 0
            assert await page.get_by_label("Password", exact=True).input_value() == ""

            # A wrong admin key: the API's 401 message next to the key field.
            await page.get_by_label("Admin key").fill("not the key")
            await page.get_by_role("button", name="Use the key").click()
            await (
                page.locator("#key-status")
                .get_by_text(wrong_key.json()["error"]["message"])
                .wait_for()
            )
            assert await page.locator("#dashboard").is_hidden()
            await tab.shot("admin-refused")
        # The refused calls are 401 and 403 responses, which Chromium reports in the console.
        assert all("status of 40" in error for error in tab.errors), tab.errors


class TestEmptyAndLongLists:
    async def test_empty_states_range_errors_and_pages_by_keyboard(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = book_answers
        async with demo_server(sqlite_url, fake_openai, **SETTINGS) as base:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                for question in OFF_TOPIC:
                    body = await ask(client, question)
                    assert body["mode"] == "no_context", question
            page = tab.page
            await page.goto(base + "/admin")

            # Signed in with the admin key, from the keyboard alone.
            await page.get_by_label("Admin key").focus()
            await page.keyboard.type(ADMIN_KEY)
            await page.keyboard.press("Enter")
            await page.locator("#dashboard").wait_for()
            await page.locator("#unanswered-table tbody tr").first.wait_for()
            assert await page.locator("#who").inner_text() == "signed in with the admin key"
            assert await total(page, "refusal-rate") == "100%"

            # Eleven unanswered questions: ten on the first page, the eleventh on the next.
            assert len(await table_rows(page, "unanswered-table")) == 10
            pager = page.locator("#unanswered-pager")
            assert await pager.locator(".page-info").inner_text() == "1–10 of 11"
            assert await pager.get_by_role("button", name="Previous").is_disabled()
            await pager.get_by_role("button", name="Next").focus()
            await page.keyboard.press("Enter")
            await pager.get_by_text("11–11 of 11").wait_for()
            rows = await table_rows(page, "unanswered-table")
            assert len(rows) == 1
            # The last one was the first asked; Next is now disabled, so Previous has the focus.
            assert rows[0][0] == OFF_TOPIC[0]
            focused = await page.evaluate("document.activeElement.textContent")
            assert focused == "Previous"
            await page.keyboard.press("Enter")
            await pager.get_by_text("1–10 of 11").wait_for()
            # The question with markup is shown as the text the reader typed, never run.
            hostile = page.locator("#unanswered-table .question", has_text="lasagna recipe?")
            assert await hostile.inner_text() == OFF_TOPIC[-1]
            assert await page.evaluate("window.__pwned") is None
            assert await page.locator("#unanswered-table img").count() == 0
            await tab.shot("admin-paged")

            # A range with nothing in it: every part says what to do instead of staying blank.
            await page.get_by_label("From", exact=True).fill(days_ago(60))
            await page.get_by_label("To", exact=True).fill(days_ago(40))
            await page.get_by_role("button", name="Show", exact=True).click()
            empty = page.locator("#per-day-empty")
            await empty.wait_for()
            assert "Widen the date range" in await empty.inner_text()
            assert await page.locator("#per-day-chart svg").count() == 0
            assert (
                "every question was answered from a passage of the book"
                in await page.locator("#unanswered-empty").inner_text()
            )
            assert (
                "No thumbs-down in this range"
                in await page.locator("#low-rated-empty").inner_text()
            )
            assert "No answer cited a section" in await page.locator("#sections-empty").inner_text()
            assert await page.locator("#unanswered-table").is_hidden()
            assert await total(page, "questions") == "0"
            assert await total(page, "refusal-rate") == "–"
            assert await total(page, "latency-p50") == "–"
            await tab.shot("admin-empty")

            # A range the API refuses: its message, and the page stays signed in.
            await page.get_by_label("From", exact=True).fill(days_ago(400))
            await page.get_by_label("To", exact=True).fill(today())
            await page.get_by_role("button", name="Show", exact=True).click()
            async with httpx.AsyncClient(base_url=base) as client:
                refused = await client.get(
                    "/api/v1/insights/summary",
                    params={"start": days_ago(400), "end": today()},
                    headers={"X-Admin-Key": ADMIN_KEY},
                )
            assert refused.status_code == 400
            await page.locator("#status").get_by_text(refused.json()["error"]["message"]).wait_for()
            assert await page.locator("#dashboard").is_visible()
            # A reversed range is caught before any call.
            await page.get_by_label("From", exact=True).fill(today())
            await page.get_by_label("To", exact=True).fill(days_ago(1))
            await page.get_by_role("button", name="Show", exact=True).click()
            await page.locator("#status").get_by_text("must not be after").wait_for()
        tab.assert_no_console_errors(expected="status of 400")


# --- more than one book ------------------------------------------------------------------------

ROBOTS = "robots"
ROBOTS_TITLE = "Robots & <Humans> Handbook"  # markup in a title is shown as text, never parsed
LIDAR = "How do I calibrate the lidar?"
LIDAR_AGAIN = "how do I calibrate the lidar"
BATTERY = "Which battery does the arm take?"


async def add_robots_book(client: httpx.AsyncClient) -> None:
    """A second book, empty: every question asked of it is refused (and so unanswered)."""
    response = await client.post(
        "/api/v1/admin/books",
        headers={"X-Admin-Key": ADMIN_KEY},
        json={"slug": ROBOTS, "title": ROBOTS_TITLE, "base_url": "https://robots.example.org"},
    )
    assert response.status_code == 201, response.text
    for question in (LIDAR, LIDAR_AGAIN, BATTERY):
        asked = await client.post(f"/api/v1/books/{ROBOTS}/chat", json={"message": question})
        assert asked.status_code == 200, asked.text
        assert asked.json()["mode"] == "no_context", question


async def default_title(base: str) -> str:
    async with httpx.AsyncClient(base_url=base, headers={"X-Admin-Key": ADMIN_KEY}) as client:
        response = await client.get("/api/v1/admin/books/default")
        assert response.status_code == 200, response.text
        return str(response.json()["title"])


async def sign_in_with_key(page: Page) -> None:
    await page.get_by_label("Admin key").fill(ADMIN_KEY)
    await page.get_by_role("button", name="Use the key").click()
    await page.locator("#dashboard").wait_for()


async def heading(page: Page) -> str:
    return await page.get_by_role("heading", level=1).and_(page.locator(":visible")).inner_text()


async def unanswered_shown(page: Page, questions: list[list[str]]) -> None:
    """Wait until the unanswered list shows these [question, times asked] rows."""
    await page.wait_for_function(
        """want => JSON.stringify([...document.querySelectorAll('#unanswered-table tbody tr')]
            .map(r => [...r.cells].slice(0, 2).map(c => c.innerText.trim()))) ===
            JSON.stringify(want)""",
        arg=questions,
    )


class TestAnswersThatCiteNothing:
    async def test_the_row_says_how_many_were_answered_citing_no_passage(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        # The model was given passages and found nothing in them: the reader got no answer
        # from the book, and the course team should know that apart from a refusal.
        fake_openai.reply = "I cannot tell that from these passages."
        async with demo_server(sqlite_url, fake_openai, **SETTINGS) as base:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                for question in (QUESTION_OF_THE_BOOK, QUESTION_OF_THE_BOOK.lower()):
                    body = await ask(client, question)
                    assert (body["mode"], body["citations"][0]["cited"]) == ("rag", False)
                assert (await ask(client, BREAD))["mode"] == "no_context"
            page = tab.page
            await page.goto(base + "/admin")
            await page.get_by_label("Admin key").fill(ADMIN_KEY)
            await page.get_by_label("Admin key").press("Enter")
            await page.locator("#unanswered-table tbody tr").first.wait_for()

            rows = await table_rows(page, "unanswered-table")
            assert [row[:2] for row in rows] == [
                [QUESTION_OF_THE_BOOK.lower(), "2\n2 answered, citing no passage"],
                [BREAD, "1"],  # refused: nothing more to say
            ]

    async def test_a_group_of_different_questions_lists_the_others(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        # Three different questions near one section, the first asked twice: the row must not
        # read as its latest question asked four times.
        fake_openai.reply = "I cannot tell that from these passages."
        asked = [
            QUESTION_OF_THE_BOOK,
            "Why does a reliable subscriber never hear a best-effort publisher?",
            QUESTION_OF_THE_BOOK,
            "Which durability keeps samples for late joiners?",
        ]
        async with demo_server(sqlite_url, fake_openai, **SETTINGS) as base:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                for question in asked:
                    body = await ask(client, question)
                    assert body["citations"][0]["section"] == "Quality of Service", question
            page = tab.page
            await page.goto(base + "/admin")
            await sign_in_with_key(page)
            row = page.locator("#unanswered-table tbody tr").first
            await row.wait_for()

            assert (await table_rows(page, "unanswered-table"))[0][:2] == [
                f"{asked[-1]}\n2 other questions near the same section",
                "4\n4 answered, citing no passage",
            ]
            others = row.locator("details.others")
            assert not await others.locator("li").first.is_visible()  # folded until asked for
            await others.get_by_text("2 other questions near the same section").click()
            assert await others.locator("li").all_inner_texts() == [QUESTION_OF_THE_BOOK, asked[1]]


class TestBookPicker:
    async def test_the_admin_picks_a_book_and_sees_its_readers_alone(
        self, browser: Browser, tab: Tab, database_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = book_answers
        async with demo_server(database_url, fake_openai, **SETTINGS) as base:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                await ask(client, QUESTION_OF_THE_BOOK)
                for question in OFF_TOPIC:
                    assert (await ask(client, question))["mode"] == "no_context", question
                await add_robots_book(client)
            title = await default_title(base)
            page = tab.page
            await page.goto(base + "/admin")
            await sign_in_with_key(page)
            await page.locator("#unanswered-table tbody tr").first.wait_for()

            # The default book first, named in the heading; the picker lists both books.
            assert await heading(page) == f"Insights · {title}"
            picker = page.get_by_label("Book", exact=True)
            assert await picker.is_visible()
            options = await picker.locator("option").all_inner_texts()
            assert options == [f"{title} (default)", f"{ROBOTS_TITLE} ({ROBOTS})"]
            assert await picker.input_value() == "default"
            assert await total(page, "questions") == "12"
            pager = page.locator("#unanswered-pager")
            await pager.get_by_role("button", name="Next").click()
            await pager.get_by_text("11–11 of 11").wait_for()

            # The robots book chosen while its last list is held on the way; the default book
            # chosen back before it arrives: the robots answers, once in, are not drawn.
            held: list[Route] = []
            arrived = asyncio.Event()

            async def hold(route: Route) -> None:
                held.append(route)
                arrived.set()

            await page.route(f"**/api/v1/books/{ROBOTS}/insights/low-rated?*", hold)
            await picker.select_option(ROBOTS)
            await arrived.wait()
            assert page.url == f"{base}/admin?book={ROBOTS}"
            await picker.select_option("default")
            await pager.get_by_text("1–10 of 11").wait_for()  # its pager back on page one
            assert page.url == f"{base}/admin"
            async with page.expect_request_finished(lambda r: "/low-rated?" in r.url):
                await held[0].continue_()
            await page.unroute(f"**/api/v1/books/{ROBOTS}/insights/low-rated?*")
            await pager.get_by_role("button", name="Next").click()  # a round trip after it
            await pager.get_by_text("11–11 of 11").wait_for()
            assert await heading(page) == f"Insights · {title}"
            assert await total(page, "questions") == "12"

            # The robots book: its numbers and its unanswered questions, none of the default's.
            await picker.select_option(ROBOTS)
            await unanswered_shown(page, [[LIDAR_AGAIN, "2"], [BATTERY, "1"]])
            assert await heading(page) == f"Insights · {ROBOTS_TITLE}"
            assert await page.title() == f"Admin · {ROBOTS_TITLE}"
            assert page.url == f"{base}/admin?book={ROBOTS}"
            assert await total(page, "questions") == "3"
            assert await total(page, "refusal-rate") == "100%"
            assert await pager.locator("button").count() == 0
            assert await page.locator("#sections-empty").is_visible()
            assert await page.locator("#low-rated-empty").is_visible()
            await full_shot(page, tab.shots, "admin-robots")

            # Its CSV: the robots book's questions alone, under the server's name for it.
            name, csv_rows, _ = await downloaded_csv(page)
            assert name == f"questions-{ROBOTS}-{days_ago(29)}-{today()}.csv"
            assert sorted(row["question"] for row in csv_rows) == sorted(
                [LIDAR, LIDAR_AGAIN, BATTERY]
            )
            status = await page.locator("#status").inner_text()
            assert status.startswith(f"Downloaded the questions of {ROBOTS_TITLE}")

            # A reload, or the address shared: the same book.
            await page.reload()
            await unanswered_shown(page, [[LIDAR_AGAIN, "2"], [BATTERY, "1"]])
            assert await picker.input_value() == ROBOTS
            assert await total(page, "questions") == "3"

            # The shared address on a phone: that book, its picker within the screen.
            phone, context = await open_tab(browser, tab.shots, {"width": 390, "height": 844})
            try:
                await phone.page.goto(f"{base}/admin?book={ROBOTS}")
                await sign_in_with_key(phone.page)
                await unanswered_shown(phone.page, [[LIDAR_AGAIN, "2"], [BATTERY, "1"]])
                assert await heading(phone.page) == f"Insights · {ROBOTS_TITLE}"
                assert await phone.page.get_by_label("Book", exact=True).is_visible()
                overflow = await phone.page.evaluate(
                    "document.documentElement.scrollWidth - window.innerWidth"
                )
                assert overflow <= 0
                await full_shot(phone.page, phone.shots, "admin-robots-390")
                phone.assert_no_console_errors()
            finally:
                await context.close()

            # A book that is not there: the default book, and a notice saying so.
            await page.goto(base + "/admin?book=nowhere")
            notice = page.locator("#book-notice")
            await notice.wait_for()
            assert await notice.inner_text() == (
                "There is no book “nowhere” here: showing the default book instead."
            )
            await page.locator("#unanswered-table tbody tr").first.wait_for()
            assert await heading(page) == f"Insights · {title}"
            assert await total(page, "questions") == "12"
            assert page.url == f"{base}/admin"
            assert await picker.input_value() == "default"
            # Picking a book puts the notice away.
            await picker.select_option(ROBOTS)
            await unanswered_shown(page, [[LIDAR_AGAIN, "2"], [BATTERY, "1"]])
            assert await notice.is_hidden()
        tab.assert_no_console_errors()

    async def test_a_single_book_has_no_picker(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = book_answers
        async with demo_server(sqlite_url, fake_openai, **SETTINGS) as base:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                await ask(client, PIZZA)
            title = await default_title(base)
            page = tab.page
            await page.goto(base + "/admin")
            await sign_in_with_key(page)
            await page.locator("#unanswered-table tbody tr").first.wait_for()
            assert await heading(page) == f"Insights · {title}"
            assert await page.get_by_label("Book", exact=True).is_hidden()
            assert await page.locator("#book-notice").is_hidden()
            assert await total(page, "questions") == "1"
            await tab.shot("admin-one-book")
        tab.assert_no_console_errors()

    async def test_without_the_list_of_books_the_default_book_is_shown(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = book_answers
        async with demo_server(sqlite_url, fake_openai, **SETTINGS) as base:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                await ask(client, PIZZA)
                await add_robots_book(client)
            title = await default_title(base)
            page = tab.page
            # The list cannot be fetched (the network fails it); the insights calls still work.
            await page.route("**/api/v1/admin/books?*", lambda route: route.abort())
            await page.goto(f"{base}/admin?book={ROBOTS}")
            await sign_in_with_key(page)
            await unanswered_shown(page, [[PIZZA, "1"]])
            assert await heading(page) == f"Insights · {title}"
            assert await page.get_by_label("Book", exact=True).is_hidden()
            notice = await page.locator("#book-notice").inner_text()
            assert notice == (
                f"The list of books could not be read: showing the default book, not “{ROBOTS}”."
            )
            assert await total(page, "questions") == "1"
            # The address keeps the book asked for, for when the list can be read again.
            assert page.url == f"{base}/admin?book={ROBOTS}"
        tab.assert_no_console_errors(expected="ERR_FAILED")
