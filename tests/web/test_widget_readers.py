"""The reader's token in the widget, in Chromium: a course site hands the widget a Better-Auth JWT
(data-token, or a provider that refreshes it after a 401); the server verifies it against the
site's JWKS (real HTTP), the reader finds their conversations on another device, is rate limited
as themselves (on Redis), and signing out leaves nothing of theirs in the widget."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser

from bookchat.accounts.models import User
from bookchat.chat.models import ChatSession, MessageFeedback
from tests.accounts.conftest import AUDIENCE, ISSUER, JWKSServer, SigningKey, claims, new_key
from tests.conftest import free_port
from tests.factories import stored
from tests.fakes.openai_server import FakeOpenAIServer
from tests.web.conftest import (
    QUESTION,
    Tab,
    book_answers,
    demo_server,
    open_tab,
    static_site,
)

pytestmark = pytest.mark.slow

FOLLOW_UP = "And how does durability work?"

HOST_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Course site</title><link rel="icon" href="data:,">
<script src="{api}/widget.js" data-api="{api}"{token} defer></script>
</head><body>
<article class="markdown"><h1>Lesson 3</h1>
<p id="lesson">Quality of Service decides how a topic delivers messages.</p></article>
</body></html>"""


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return new_key("EdDSA")


@pytest.fixture(scope="module")
def jwks(signing_key: SigningKey) -> Iterator[JWKSServer]:
    """The course site's Better-Auth JWKS endpoint, publishing its signing key."""
    with JWKSServer() as server:
        server.publish(signing_key)
        yield server


def better_auth(jwks: JWKSServer) -> dict[str, Any]:
    return {
        "better_auth_jwks_url": jwks.url,
        "better_auth_issuer": ISSUER,
        "better_auth_audience": AUDIENCE,
    }


@asynccontextmanager
async def site_with_api(
    database_url: str, fake: FakeOpenAIServer, tokens: dict[str, str | None], **overrides: Any
) -> AsyncIterator[str]:
    """The API (on the sample book) and a course site with one page per entry of `tokens`:
    `/<name>` embeds the widget with that token in data-token (None: without one)."""
    port = free_port()
    site = f"http://localhost:{port}"
    async with demo_server(database_url, fake, cors_origins=[site], **overrides) as api:
        pages = {
            f"/{name}": HOST_PAGE.replace("{api}", api).replace(
                "{token}", f' data-token="{token}"' if token else ""
            )
            for name, token in tokens.items()
        }
        with static_site(port, pages):
            yield site


async def wait_for_text(tab: Tab, selector: str, text: str) -> None:
    # Polled on a timer, not on animation frames: with two "devices" open, Chromium may
    # throttle the frames of the page that is not in front.
    await tab.page.wait_for_function(
        "([selector, text]) => document.querySelector('bookchat-widget').shadowRoot"
        ".querySelector(selector)?.textContent.includes(text)",
        arg=[selector, text],
        polling=100,
    )


async def stored_session(tab: Tab, api: str) -> str | None:
    value: str | None = await tab.page.evaluate(f"localStorage.getItem('bookchat:{api}:session')")
    return value


class TestSignedInReader:
    async def test_history_follows_the_reader_to_another_device_and_limits_are_theirs(
        self,
        browser: Browser,
        tab: Tab,
        tmp_path: Path,
        database_url: str,
        redis_url: str,
        fake_openai: FakeOpenAIServer,
        jwks: JWKSServer,
        signing_key: SigningKey,
    ) -> None:
        fake_openai.reply = book_answers
        token = signing_key.sign(claims("ba-reader-ada", email="ada@example.org"))
        async with site_with_api(
            database_url,
            fake_openai,
            {"reader": token, "guest": None},
            redis_url=redis_url,
            rate_limit_chat="2/minute",
            **better_auth(jwks),
        ) as site:
            laptop = tab
            await laptop.page.goto(site + "/reader")
            await laptop.ask(QUESTION)
            first = await laptop.answered()
            await first.get_by_role("button", name="Not helpful").click()
            await first.locator(".thumb[aria-pressed=true]").wait_for()

            # The conversation is the reader's: a Better-Auth user made on first sight owns it.
            [user] = await stored(database_url, User)
            assert (user.external_id, user.email) == ("ba-reader-ada", "ada@example.org")
            [session] = await stored(database_url, ChatSession)
            assert session.user_id == user.id

            # Another device (a fresh browser context): History lists it, and it continues.
            phone, context = await open_tab(browser, laptop.shots, {"width": 390, "height": 760})
            try:
                await phone.page.goto(site + "/reader")
                await phone.part(".launcher").click()
                history = phone.part("button.history")
                assert await history.get_attribute("aria-expanded") == "false"
                await history.click()
                assert await history.get_attribute("aria-expanded") == "true"
                listed = phone.part(".session")
                await listed.first.wait_for()
                assert await listed.count() == 1
                assert (await listed.locator("span").first.inner_text()) == QUESTION
                await phone.shot("22-history-on-another-device")
                # Keyboard: the list took focus; Enter opens the conversation.
                assert await listed.evaluate("b => b.getRootNode().activeElement === b")
                await phone.page.keyboard.press("Enter")
                await phone.part(".bot .rating").wait_for()
                assert await phone.part(".user").inner_text() == QUESTION
                assert await phone.part(".sessions").is_hidden()
                # The thumb pressed on the laptop shows pressed here (the history's own rating).
                not_helpful = phone.part(".bot").get_by_role("button", name="Not helpful")
                assert await not_helpful.get_attribute("aria-pressed") == "true"

                # Rated again from this device: still one rating by this reader, replaced.
                helpful = phone.part(".bot").get_by_role("button", name="Helpful", exact=True)
                await helpful.click()
                await phone.part(".thumb[aria-label=Helpful][aria-pressed=true]").wait_for()
                [feedback] = await stored(database_url, MessageFeedback)
                assert (feedback.user_id, feedback.rating) == (user.id, 1)

                await phone.ask(FOLLOW_UP)
                await phone.answered()
                assert await stored_session(phone, await api_origin(phone)) == str(session.id)
                await phone.shot("23-continued-on-another-device")

                # Back on the laptop, the conversation has the follow-up.
                await laptop.page.bring_to_front()
                await laptop.page.reload()
                await wait_for_text(laptop, ".log", FOLLOW_UP)
                assert await laptop.part(".msg").count() == 4

                # Two questions in the window: this reader is at RATE_LIMIT_CHAT...
                await laptop.ask("One more?")
                await wait_for_text(laptop, ".notice", "faster than this site allows")
                assert await laptop.part(".msg").count() == 4
            finally:
                await context.close()

            # ...but a guest from the same address is not: the limit counts readers, not IPs.
            guest, context = await open_tab(browser, laptop.shots)
            try:
                await guest.page.goto(site + "/guest")
                await guest.ask(QUESTION)
                await guest.answered()
                assert await guest.part("button.history").is_hidden()
                guest.assert_no_console_errors()
            finally:
                await context.close()
            sessions = await stored(database_url, ChatSession, order_by=(ChatSession.created_at,))
            assert [s.user_id for s in sessions] == [user.id, None]
        laptop.assert_no_console_errors(expected="status of 429")

    async def test_a_token_provider_is_asked_again_after_a_401_and_sign_out_forgets(
        self,
        tab: Tab,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        jwks: JWKSServer,
        signing_key: SigningKey,
    ) -> None:
        fake_openai.reply = book_answers
        expired = signing_key.sign(claims("ba-reader-bo", lifetime=-600))
        fresh = signing_key.sign(claims("ba-reader-bo"))
        async with site_with_api(
            sqlite_url, fake_openai, {"lesson": None}, **better_auth(jwks)
        ) as site:
            page = tab.page
            await page.goto(site + "/lesson")
            await tab.part(".launcher").click()
            assert await tab.part("button.history").is_hidden()  # nobody signed in yet
            # The site's auth client: its cached token has expired; asked to refresh, it
            # fetches a new one (as Better-Auth's authClient.token() would).
            await page.evaluate(
                """([expired, fresh]) => {
                    window.asked = [];
                    let current = expired;
                    window.bookchat.setTokenProvider(async ({ refresh }) => {
                        window.asked.push(refresh);
                        if (refresh) current = fresh;
                        return current;
                    });
                }""",
                [expired, fresh],
            )
            await tab.part("button.history").wait_for()
            await tab.ask(QUESTION)
            await tab.answered()
            assert await tab.part(".notice").is_hidden()
            # Asked when set, before the request, then again with refresh after the 401.
            asked = await page.evaluate("window.asked")
            assert asked[:3] == [False, False, True]
            [user] = await stored(sqlite_url, User)
            assert user.external_id == "ba-reader-bo"
            [session] = await stored(sqlite_url, ChatSession)
            assert session.user_id == user.id
            api = await api_origin(tab)
            assert await stored_session(tab, api) == str(session.id)

            # The next request uses the refreshed token without another 401.
            await tab.part("button.history").click()
            await tab.part(".session").wait_for()
            assert (await page.evaluate("window.asked"))[3:] == [False]

            # Signing out: the reader's conversation leaves the widget and its storage.
            await page.evaluate("window.bookchat.setToken(null)")
            await tab.part(".empty").wait_for()
            assert await tab.part(".msg").count() == 0
            assert await tab.part("button.history").is_hidden()
            assert await tab.part(".sessions").is_hidden()
            assert await stored_session(tab, api) is None
            assert await page.evaluate(f"localStorage.getItem('bookchat:{api}:reader')") is None
            await tab.shot("24-signed-out")

            # A guest again: a new, anonymous conversation.
            await tab.ask("What is a node?")
            await tab.answered()
            sessions = await stored(sqlite_url, ChatSession, order_by=(ChatSession.created_at,))
            assert [s.user_id for s in sessions] == [user.id, None]
        tab.assert_no_console_errors(expected="status of 401")

    async def test_a_reload_keeps_the_conversation_until_the_token_arrives(
        self,
        tab: Tab,
        sqlite_url: str,
        fake_openai: FakeOpenAIServer,
        jwks: JWKSServer,
        signing_key: SigningKey,
    ) -> None:
        """A site that sets the token after the widget started (a React effect, say): the
        reader's open conversation is not dropped for the anonymous 404 in between."""
        fake_openai.reply = book_answers
        token = signing_key.sign(claims("ba-reader-cy"))
        async with site_with_api(
            sqlite_url, fake_openai, {"lesson": None}, **better_auth(jwks)
        ) as site:
            page = tab.page
            await page.goto(site + "/lesson")
            await page.evaluate("token => window.bookchat.setToken(token)", token)
            await tab.ask(QUESTION)
            await tab.answered()
            api = await api_origin(tab)
            session = await stored_session(tab, api)

            await page.reload()  # the panel reopens, and asks for the history with no token
            await page.wait_for_timeout(500)
            assert await stored_session(tab, api) == session
            await page.evaluate("token => window.bookchat.setToken(token)", token)
            await tab.part(".bot .rating").wait_for()
            assert await tab.part(".user").inner_text() == QUESTION

            # Another reader on this browser: the first one's conversation is not shown.
            other = signing_key.sign(claims("ba-reader-di", email="di@example.org"))
            await page.evaluate("token => window.bookchat.setToken(token)", other)
            await tab.part(".empty").wait_for()
            assert await stored_session(tab, api) is None
        tab.assert_no_console_errors(expected="status of 404")


async def api_origin(tab: Tab) -> str:
    """The API origin the widget on this page talks to (from its script tag)."""
    origin: str = await tab.page.evaluate(
        "document.querySelector('script[data-api]').getAttribute('data-api')"
    )
    return origin
