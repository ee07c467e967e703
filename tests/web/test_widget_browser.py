"""The widget in a real browser (Debian's Chromium driven by Playwright) against a live server
on the sample book and the fake language model: streaming, citations, selection, history,
limits and failures, safe Markdown, keyboard and phone use."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from tests.conftest import REWRITE_MARKER
from tests.factories import sources_sent
from tests.fakes.openai_server import FakeOpenAIServer
from tests.prompt_layout import sent_prompt
from tests.web.conftest import (
    CHAPTER,
    HOSTILE_ANSWER,
    QUESTION,
    SELECTION_ANSWER,
    Tab,
    book_answers,
    demo_server,
    history,
)


async def watch_answer_lengths(tab: Tab) -> None:
    """Record the length of the answer text each time the widget changes it."""
    await tab.page.evaluate(
        """() => {
            const log = document.querySelector('bookchat-widget').shadowRoot.querySelector('.log');
            window.__lengths = [];
            new MutationObserver(() => {
                const answer = log.querySelector('.bot:last-of-type .md');
                if (answer) window.__lengths.push(answer.textContent.length);
            }).observe(log, {subtree: true, childList: true, characterData: true});
        }"""
    )


class TestConversation:
    async def test_ask_watch_it_stream_follow_the_citation_and_come_back(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = book_answers
        fake_openai.token_delay = 0.04
        async with demo_server(sqlite_url, fake_openai) as base:
            page = tab.page
            await page.goto(base + "/")
            await tab.part(".launcher").wait_for()
            await tab.shot("01-demo-page")

            await tab.part(".launcher").click()
            assert (
                await page.evaluate(
                    "document.querySelector('bookchat-widget').shadowRoot.activeElement.tagName"
                )
                == "TEXTAREA"
            )
            await watch_answer_lengths(tab)
            await tab.ask(QUESTION)
            # While tokens arrive: part of the answer is shown, and the stop button replaces send.
            await tab.part(".bot.typing .md strong").wait_for()
            await tab.part(".stop").wait_for()
            await tab.shot("02-streaming")
            answer = await tab.answered()
            await tab.shot("03-answer")

            text = await answer.locator(".md").inner_text()
            assert "Quality of Service (QoS) policies decide" in text
            assert "compatible [1]" in text
            lengths: list[int] = await page.evaluate("window.__lengths")
            assert len(set(lengths)) >= 5, lengths  # rendered piece by piece, not at once
            assert await tab.part(".send").is_visible()
            assert await tab.part(".stop").is_hidden()

            # The [1] markers and the source list link to the section, on this demo site.
            section = f"{base}{CHAPTER}#qos"
            marker = answer.locator("a.cite").first
            assert await marker.get_attribute("href") == section
            source = answer.locator(".sources a")
            assert await source.count() == 1
            assert await source.get_attribute("href") == section
            assert await source.inner_text() == (
                "Nodes, Topics, Services, and Actions › Quality of Service"
            )

            stored = await history(base, page)
            question, reply = stored["messages"]
            assert question["content"] == QUESTION
            assert question["page_context"] == f"{base}/book/"  # the page's canonical URL
            assert reply["citations"][0]["page_url"] == section

            # Following the citation lands on the heading, with the conversation still open.
            await marker.click()
            await page.wait_for_url(section)
            heading = page.locator("h2#qos")
            assert await heading.inner_text() == "Quality of Service"
            top = await heading.evaluate("h => h.getBoundingClientRect().top")
            assert 0 <= top < 120
            await tab.part(".bot .sources").wait_for()
            assert await tab.part(".user").inner_text() == QUESTION
            await tab.shot("04-cited-section")

            # A reload brings the conversation back from the history API.
            await page.reload()
            await tab.part(".bot .sources").wait_for()
            assert await tab.part(".msg").count() == 2
            assert "compatible [1]" in await tab.part(".bot .md").inner_text()

            # "New chat" forgets it.
            await tab.part("text=New chat").click()
            assert await tab.part(".msg").count() == 0
            assert await page.evaluate(f"localStorage.getItem('bookchat:{base}:session')") is None
        tab.assert_no_console_errors()

    async def test_citations_are_numbered_in_the_order_the_answer_uses_them(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        def out_of_order(request: dict[str, Any]) -> str:
            """Cites the model's last source, then its first, then one it was never given."""
            if REWRITE_MARKER in request["messages"][0]["content"]:
                return "quality of service"
            last = len(sources_sent(request))
            return f"Policies decide delivery [{last}]. Both ends agree [1][{last}]. [{last + 5}]"

        fake_openai.reply = out_of_order
        fake_openai.split = list  # every marker arrives in pieces
        fake_openai.token_delay = 0.02
        async with demo_server(sqlite_url, fake_openai) as base:
            page = tab.page
            await page.goto(base + "/")
            await tab.ask(QUESTION)
            # While the answer streams, a marker is not yet linked to any source.
            await page.wait_for_function(
                "() => document.querySelector('bookchat-widget').shadowRoot"
                ".querySelector('.bot .md')?.textContent.includes('[1]')"
            )
            assert await tab.part(".bot.typing a.cite").count() == 0
            answer = await tab.answered()

            given = [
                h.replace(" > ", " \u203a ") for h in sources_sent(fake_openai.chat_requests()[-1])
            ]
            assert len(given) >= 2
            body = answer.locator(".md")
            assert (
                await body.inner_text() == "Policies decide delivery [1]. Both ends agree [2][1]."
            )
            citations = (await history(base, page))["messages"][1]["citations"]
            url = {c["index"]: c["page_url"] for c in citations}
            markers = body.locator("a.cite")
            assert [await markers.nth(i).get_attribute("href") for i in range(3)] == [
                url[1],
                url[2],
                url[1],
            ]
            listed = answer.locator(".sources li")
            assert [
                (await listed.nth(i).get_attribute("value"), await listed.nth(i).inner_text())
                for i in range(await listed.count())
            ] == [("1", given[-1]), ("2", given[0])]
            await tab.shot("03b-renumbered-citations")

            # Stopped halfway, the answer has no `done` to say which source a number names:
            # its markers stay plain text and no source list is made up.
            await tab.part("text=New chat").click()
            fake_openai.token_delay = 0.1
            await tab.ask("Which QoS policies decide how messages are delivered?")  # not cached
            await page.wait_for_function(
                "() => document.querySelector('bookchat-widget').shadowRoot"
                ".querySelector('.bot.typing .md')?.textContent.includes('[1]')"
            )
            await tab.part(".stop").click()
            await tab.part(".bot .meta").wait_for()
            stopped = tab.part(".bot")
            assert (await stopped.inner_text()).startswith("Policies decide delivery [1]")
            assert await stopped.locator("a.cite, .sources").count() == 0
        tab.assert_no_console_errors()

    async def test_an_answer_that_cites_nothing_lists_no_sources(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        # The model was given passages and found nothing in them: listing them as the answer's
        # sources would say it came from them.
        fake_openai.reply = "The book does not say which QoS profile a drone should use."
        async with demo_server(sqlite_url, fake_openai) as base:
            await tab.page.goto(base + "/")
            await tab.ask(QUESTION)
            answer = await tab.answered()
            assert await answer.locator(".md").inner_text() == fake_openai.reply
            stored = (await history(base, tab.page))["messages"][1]["citations"]
            assert stored
            assert not any(c["cited"] for c in stored)
            assert await answer.locator(".sources").count() == 0
            # Read back from the history, the same.
            await tab.page.reload()
            await tab.part(".bot .md").wait_for()
            assert await tab.part(".bot .sources").count() == 0
        tab.assert_no_console_errors()

    async def test_selected_text_is_answered_alone(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = book_answers
        async with demo_server(sqlite_url, fake_openai) as base:
            page = tab.page
            await page.goto(base + CHAPTER)
            # A passage of the chapter: the bubble appears next to it.
            await page.locator("h2#nodes + p").click(click_count=3)
            bubble = tab.part(".bubble")
            await bubble.wait_for()
            selected = (await page.evaluate("getSelection().toString()")).strip()
            assert selected.startswith("A node is one named participant in the ROS graph")
            await tab.shot("05-selection-bubble")

            await bubble.click()
            answer = await tab.answered()
            assert await answer.locator(".md").inner_text() == SELECTION_ANSWER
            assert await answer.locator(".meta").inner_text() == (
                "Answered from the selected passage."
            )
            assert await tab.part(".user .quote").inner_text() == selected
            await tab.shot("06-selection-answer")

            # The selection reached the backend, and the model saw it and nothing else.
            stored = await history(base, page)
            assert stored["messages"][0]["selected_text"] == selected
            assert stored["messages"][1]["mode"] == "selected_text"
            _, prompt = sent_prompt(fake_openai)
            # The selection and the question, no retrieved passage.
            assert [b.name for b in prompt.blocks] == ["selection", "question"]
            assert prompt.texts("selection") == [selected]

            # Outside the chapter's text (the top bar), no bubble.
            await page.locator(".tag").click(click_count=3)
            await page.wait_for_timeout(400)
            assert await bubble.is_hidden()
        tab.assert_no_console_errors()


class TestProblems:
    async def test_a_rate_limited_question_says_how_long_to_wait(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = book_answers
        async with demo_server(sqlite_url, fake_openai, rate_limit_chat="1/minute") as base:
            await tab.page.goto(base + "/")
            await tab.ask(QUESTION)
            await tab.answered()
            await tab.ask("And what about durability?")
            notice = tab.part(".notice")
            await notice.wait_for()
            assert re.fullmatch(
                r"You're asking faster than this site allows\. Try again in \d+ seconds\.",
                await notice.inner_text(),
            )
            # Nothing was sent: the question is back in the box, ready to retry.
            assert await tab.part("textarea").input_value() == "And what about durability?"
            assert await tab.part(".msg").count() == 2
            await tab.shot("07-rate-limited")
        # The browser itself logs the 429 response; nothing else may appear.
        tab.assert_no_console_errors(expected="status of 429")

    async def test_the_next_question_goes_out_once_the_answer_is_done(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        # The connection may stay open after `done` (a proxy that holds it, a slow close): the
        # answer is complete all the same, and Enter must send the next question, not be
        # swallowed until the connection ends. Here the stream's end never reaches the page.
        await tab.page.add_init_script(
            """(() => {
                const fetched = window.fetch;
                window.fetch = async (...args) => {
                    const response = await fetched(...args);
                    if (!String(args[0]).endsWith('/chat/stream') || !response.body) {
                        return response;
                    }
                    const reader = response.body.getReader();
                    const held = new ReadableStream({
                        async pull(controller) {
                            const { value, done } = await reader.read();
                            if (done) await new Promise(() => {});
                            controller.enqueue(value);
                        },
                    });
                    return new Response(held, {
                        status: response.status, headers: response.headers,
                    });
                };
            })()"""
        )
        fake_openai.reply = book_answers
        async with demo_server(sqlite_url, fake_openai) as base:
            await tab.page.goto(base + "/")
            await tab.ask(QUESTION)
            await tab.answered()
            assert await tab.part(".send").is_visible()
            assert await tab.part(".stop").is_hidden()
            await tab.ask("And what about durability?")
            await tab.part(".msg.user").nth(1).wait_for(timeout=10_000)
            await tab.answered()
            assert await tab.part(".msg").count() == 4
            assert await tab.part("textarea").input_value() == ""
        tab.assert_no_console_errors()

    async def test_model_failure_stop_and_offline(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = " ".join(f"word{i}" for i in range(80))
        fake_openai.token_delay = 0.1
        async with demo_server(sqlite_url, fake_openai) as base:
            page = tab.page
            await page.goto(base + "/")

            # Stop: the stream is aborted, the partial answer stays, the server keeps it too.
            await tab.ask(QUESTION)
            await tab.part(".bot.typing .md p").wait_for()
            await tab.part(".stop").click()
            stopped = tab.part(".bot .meta")
            await stopped.wait_for()
            assert await stopped.inner_text() == "Stopped."
            assert await tab.part(".send").is_visible()
            for _ in range(100):
                messages = (await history(base, page))["messages"]
                if len(messages) == 2 and messages[1]["status"] == "partial":
                    break
                await asyncio.sleep(0.05)
            assert messages[1]["status"] == "partial"

            # The model fails: the reader is told, in words.
            await tab.part("text=New chat").click()  # a first question: one model call
            fake_openai.token_delay = 0
            fake_openai.fail_next(503)
            await tab.ask("Why do robots fall?")
            notice = tab.part(".notice")
            await notice.wait_for()
            assert await notice.inner_text() == (
                "The assistant is unavailable right now. Try again shortly."
            )
            await tab.shot("08-model-unavailable")

            # Offline: nothing is sent, the question stays in the box.
            await page.context.set_offline(True)
            await tab.ask("Are you there?")
            await page.wait_for_function(
                "() => document.querySelector('bookchat-widget').shadowRoot"
                ".querySelector('.notice').textContent.includes('offline')"
            )
            assert await tab.part("textarea").input_value() == "Are you there?"
            await tab.shot("09-offline")
            await page.context.set_offline(False)
        tab.assert_no_console_errors()

    async def test_an_answer_cut_at_the_length_limit_says_so(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = book_answers
        fake_openai.finish_next("length")
        async with demo_server(sqlite_url, fake_openai) as base:
            await tab.page.goto(base + "/")
            await tab.ask(QUESTION)
            answer = await tab.answered()
            assert await answer.locator(".meta").inner_text() == (
                "Cut at the answer's length limit."
            )
            # The history says so too, after a reload (the panel stays open).
            await tab.page.reload()
            await tab.part(".bot .meta").wait_for()
            assert await tab.part(".bot .meta").inner_text() == (
                "Cut at the answer's length limit."
            )
        tab.assert_no_console_errors()

    async def test_answers_render_as_inert_text(
        self, tab: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = HOSTILE_ANSWER
        async with demo_server(sqlite_url, fake_openai) as base:
            await tab.page.goto(base + "/")
            await tab.ask(QUESTION)
            answer = await tab.answered()
            await tab.page.wait_for_timeout(300)  # time for an onerror that must not run
            body = answer.locator(".md")
            assert await tab.page.evaluate("window.__pwned") is None
            assert await body.locator("img, script").count() == 0
            text = await body.inner_text()
            assert '<img src=x onerror="window.__pwned = 1">' in text
            assert "<script>window.__pwned = 3</script>" in await body.locator("pre").inner_text()
            links = body.locator("a")
            assert await links.count() == 1  # the javascript: link is plain text
            assert await links.get_attribute("href") == "https://example.org/a?b=1&c=2"
            assert "a trap" in text
            assert await body.locator("strong").inner_text() == "bold"
            assert await body.locator("code").last.inner_text() == "<b>code</b>"
            await tab.shot("10-inert-markdown")
        tab.assert_no_console_errors()


class TestAccess:
    async def test_keyboard_only_on_a_phone_sized_screen(
        self, phone: Tab, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        fake_openai.reply = book_answers
        async with demo_server(sqlite_url, fake_openai) as base:
            page = phone.page
            await page.goto(base + CHAPTER)
            launcher = phone.part(".launcher")
            assert await launcher.get_attribute("aria-label") == "Open the chat: Ask the book"
            for _ in range(60):  # Tab through the page until the chat button has focus
                await page.keyboard.press("Tab")
                if await launcher.evaluate("b => b.getRootNode().activeElement === b"):
                    break
            else:
                raise AssertionError("the chat button is not reachable with Tab")
            await page.keyboard.press("Enter")
            panel = phone.part(".panel")
            await panel.wait_for()
            assert await launcher.get_attribute("aria-expanded") == "true"
            assert await panel.get_attribute("role") == "dialog"
            assert await phone.part("label[for=question]").inner_text() == "Your question"
            box = await panel.bounding_box()
            assert box == {"x": 0, "y": 0, "width": 390, "height": 760}  # the whole screen

            await page.keyboard.type(QUESTION)
            await page.keyboard.press("Enter")
            await phone.answered()
            assert await phone.part(".log").get_attribute("role") == "log"
            await phone.shot("11-phone")

            await page.keyboard.press("Escape")
            await panel.wait_for(state="hidden")
            assert await launcher.evaluate("b => b.getRootNode().activeElement === b")
        phone.assert_no_console_errors()
