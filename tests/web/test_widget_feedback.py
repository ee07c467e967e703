"""Rating answers in the widget, in Chromium against a live server: thumbs under finished answers
only, the chosen one pressed, changed, commented, and what the database keeps (one row per answer
per reader); clear words when the server refuses."""

from __future__ import annotations

import httpx
import pytest

from bookchat.chat.models import MessageFeedback
from tests.factories import stored
from tests.fakes.openai_server import FakeOpenAIServer
from tests.web.conftest import QUESTION, Tab, book_answers, demo_server, history

pytestmark = pytest.mark.slow


async def feedback_rows(database_url: str) -> list[tuple[str, int, str | None, object]]:
    rows = await stored(database_url, MessageFeedback, order_by=(MessageFeedback.created_at,))
    return [(str(r.message_id), r.rating, r.comment, r.user_id) for r in rows]


class TestRating:
    async def test_rate_change_the_rating_and_add_a_comment(
        self, tab: Tab, database_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = book_answers
        async with demo_server(database_url, fake_openai) as base:
            page = tab.page
            await page.goto(base + "/")
            await tab.ask(QUESTION)
            answer = await tab.answered()
            up = answer.get_by_role("button", name="Helpful", exact=True)
            down = answer.get_by_role("button", name="Not helpful")
            said = answer.locator(".rating [role=status]")
            assert await up.get_attribute("aria-pressed") == "false"
            assert await down.get_attribute("aria-pressed") == "false"
            assert await answer.locator(".comment").is_hidden()
            reply_id = (await history(base, page))["messages"][1]["id"]

            await up.click()
            await page.wait_for_function(
                "() => document.querySelector('bookchat-widget').shadowRoot"
                ".querySelector('.thumb[aria-pressed=true]')"
            )
            assert await said.inner_text() == "Thanks for the feedback."
            assert await up.get_attribute("aria-pressed") == "true"
            assert await down.get_attribute("aria-pressed") == "false"
            assert await feedback_rows(database_url) == [(reply_id, 1, None, None)]

            # The other thumb changes the rating: still one row for this reader and answer.
            await down.click()
            await answer.locator(".thumb[aria-label='Not helpful'][aria-pressed=true]").wait_for()
            assert await up.get_attribute("aria-pressed") == "false"
            assert await feedback_rows(database_url) == [(reply_id, -1, None, None)]

            # Then a short comment, sent with the rating it explains.
            comment = answer.locator(".comment input")
            assert await comment.get_attribute("placeholder") == (
                "What was wrong or missing? (optional)"
            )
            await comment.fill("  The QoS part skips durability.  ")
            await comment.press("Enter")
            await answer.locator(".comment").wait_for(state="hidden")
            assert await said.inner_text() == "Thanks, your comment was sent."
            assert await feedback_rows(database_url) == [
                (reply_id, -1, "The QoS part skips durability.", None)
            ]
            await tab.shot("20-rated-with-comment")

            # After a reload the reader's thumb is still shown pressed.
            await page.reload()
            reloaded = tab.part(".bot").last
            await reloaded.locator(".rating").wait_for()
            assert (
                await reloaded.get_by_role("button", name="Not helpful").get_attribute(
                    "aria-pressed"
                )
                == "true"
            )
            assert (
                await reloaded.get_by_role("button", name="Helpful", exact=True).get_attribute(
                    "aria-pressed"
                )
                == "false"
            )
        tab.assert_no_console_errors()

    async def test_only_finished_answers_can_be_rated(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = " ".join(f"word{i}" for i in range(60))
        fake_openai.token_delay = 0.05
        async with demo_server(sqlite_url, fake_openai) as base:
            page = tab.page
            await page.goto(base + "/")

            # While it streams: no thumbs; once done: thumbs.
            await tab.ask(QUESTION)
            await tab.part(".bot.typing .md p").wait_for()
            assert await tab.part(".rating").count() == 0
            answer = await tab.answered()
            assert await answer.locator(".thumb").count() == 2

            # Stopped by the reader: no thumbs.
            await tab.part("text=New chat").click()
            await tab.ask("Which QoS policies decide delivery?")
            await tab.part(".bot.typing .md p").wait_for()
            await tab.part(".stop").click()
            await tab.part(".bot .meta").wait_for()
            assert await tab.part(".bot .meta").inner_text() == "Stopped."
            assert await tab.part(".rating").count() == 0

            # Cut by a model failure mid-answer: no thumbs either.
            await tab.part("text=New chat").click()
            fake_openai.token_delay = 0
            fake_openai.cut_stream_next(after_tokens=3)
            await tab.ask("Why do robots fall over?")
            await tab.part(".notice").wait_for()
            assert await tab.part(".bot .meta").inner_text() == "Interrupted by an error."
            assert await tab.part(".rating").count() == 0
            # ...and not after a reload, where the stored answer is marked as failed.
            await page.reload()
            await tab.part(".bot .meta").wait_for()
            assert await tab.part(".bot").count() == 1
            assert await tab.part(".rating").count() == 0
        tab.assert_no_console_errors()

    async def test_a_refused_rating_says_why(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = book_answers
        async with demo_server(sqlite_url, fake_openai) as base:
            page = tab.page
            await page.goto(base + "/")
            await tab.ask(QUESTION)
            answer = await tab.answered()
            session = (await history(base, page))["session_id"]

            # The conversation was deleted meanwhile (another tab, the API): 404.
            async with httpx.AsyncClient(base_url=base) as client:
                assert (await client.delete(f"/api/v1/chat/{session}")).status_code == 204
            await answer.get_by_role("button", name="Helpful", exact=True).click()
            said = answer.locator(".said.error")
            await said.wait_for()
            assert await said.inner_text() == (
                "This answer is no longer stored, so it can't be rated."
            )
            assert await answer.locator(".thumb[aria-pressed=true]").count() == 0
            assert await answer.locator(".comment").is_hidden()

            # A token the server refuses (expired, no provider to refresh it): 401, in words.
            await page.evaluate("window.bookchat.setToken('not-a-valid-token')")
            await answer.get_by_role("button", name="Not helpful").click()
            await page.wait_for_function(
                "() => document.querySelector('bookchat-widget').shadowRoot"
                ".querySelector('.said.error')?.textContent.includes('sign-in')"
            )
            assert await said.inner_text() == (
                "Your sign-in has expired. Sign in again, then retry."
            )
            await tab.shot("21-rating-refused")
            assert await feedback_rows(sqlite_url) == []
        tab.assert_no_console_errors(expected="Failed to load resource")
