"""Quality metrics an operator alerts on: answers by mode, status and cache, and readers' thumbs.

Read from `GET /metrics` after real requests through every way of answering: `POST /chat`,
`POST /chat/stream` and ChatKit; feedback through the REST route and ChatKit's thumbs."""

from __future__ import annotations

from tests.chat.test_stream import parse_sse
from tests.chatkit.protocol import answer_item, create, feedback, send, stream, thread_of
from tests.conftest import AppFactory, openai_settings
from tests.factories import QUESTION, ask, bearer, book_settings, sign_up
from tests.fakes.openai_server import FakeOpenAIServer
from tests.metrics.test_router import samples, value

OFF_TOPIC = "What is the capital of France?"
SELECTION = "A publisher sends messages on a topic; every subscriber of that topic receives them."


def answers(text: str) -> dict[tuple[str, str, str], float]:
    """`bookchat_answers_total` of the default book by (mode, status, cached)."""
    return {
        (labels["mode"], labels["status"], labels["cached"]): count
        for (name, labels_set), count in samples(text).items()
        if name == "bookchat_answers_total"
        for labels in [dict(labels_set)]
        if labels["book"] == "default"
    }


class TestAnswers:
    async def test_each_answer_is_counted_once_by_mode_whatever_delivers_it(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(await book_settings(sqlite_url)) as client:
            assert (await ask(client))["mode"] == "rag"
            # The same first question again: replayed from the answer cache.
            assert (await ask(client))["cached"] is True
            assert (await ask(client, OFF_TOPIC))["mode"] == "no_context"
            response = await client.post(
                "/api/v1/chat/stream",
                json={"message": "What does it say?", "selected_text": SELECTION},
            )
            events, _ = parse_sse(response.text)
            assert events[-1][0] == "done"
            # ChatKit answers through the same turn: counted once, not once per layer.
            await stream(client, create(OFF_TOPIC))
            text = (await client.get("/metrics")).text

        assert answers(text) == {
            ("rag", "complete", "false"): 1,
            ("rag", "complete", "true"): 1,
            ("no_context", "complete", "false"): 2,
            ("selected_text", "complete", "false"): 1,
        }

    async def test_failed_and_cut_answers_are_counted_with_their_status(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url, **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            fake_openai.fail_next(500)
            failed = await client.post("/api/v1/chat", json={"message": QUESTION})
            fake_openai.finish_next("length")
            cut = await client.post("/api/v1/chat/stream", json={"message": QUESTION})
            text = (await client.get("/metrics")).text

        assert failed.status_code == 503
        events, _ = parse_sse(cut.text)
        assert events[-1][1]["status"] == "partial"
        assert answers(text) == {("rag", "error", "false"): 1, ("rag", "partial", "false"): 1}


class TestFeedback:
    async def test_thumbs_are_counted_by_value_and_a_repeat_is_not(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(await book_settings(database_url)) as client:
            first = (await ask(client))["message_id"]
            second = (await ask(client, "How does a subscriber receive messages?"))["message_id"]
            rate = "/api/v1/chat/messages/{}/feedback"
            statuses = [
                (await client.post(rate.format(message), json={"rating": rating})).status_code
                for message, rating in [(first, 1), (first, 1), (second, 1), (second, -1)]
            ]
            text = (await client.get("/metrics")).text

        # Created, sent again (same thumb: not counted), created, changed (counted again).
        assert statuses == [201, 200, 201, 200]
        assert value(text, "bookchat_feedback_total", book="default", rating="up") == 2
        assert value(text, "bookchat_feedback_total", book="default", rating="down") == 1

    async def test_chatkit_thumbs_count_too(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(await book_settings(sqlite_url)) as client:
            reader = bearer((await sign_up(client, "thumbs@example.org"))["access_token"])
            events = await stream(client, create(QUESTION), headers=reader)
            thread, answer = thread_of(events), answer_item(events)
            down = await send(client, feedback(thread.id, [answer.id], "negative"), headers=reader)
            text = (await client.get("/metrics")).text

        assert down.status_code == 200
        assert value(text, "bookchat_feedback_total", book="default", rating="down") == 1
        assert value(text, "bookchat_feedback_total", book="default", rating="up") == 0
