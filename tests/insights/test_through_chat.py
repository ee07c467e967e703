"""The insights of questions asked through the real chat (the mini book, the offline answerer):
what a refusal keeps, how rewordings group, what a thumbs down shows, the CSV as downloaded."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx

from bookchat.chat.models import Message, MessageRole
from tests.conftest import AppFactory, openai_settings
from tests.factories import ask, book_settings, stored
from tests.fakes.openai_server import FakeOpenAIServer

KEY = "insights-admin-key"
ADMIN = {"X-Admin-Key": KEY}
BALANCE = {
    "title": "Walking",
    "heading": "Balance",
    "url": "https://example.org/book/motion/walking#balance",
}
GAIT = {
    "title": "Walking",
    "heading": "Gait cycle",
    "url": "https://example.org/book/motion/walking#gait-cycle",
}


async def insights(client: httpx.AsyncClient, route: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/insights/{route}", headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class TestRefusals:
    async def test_rewordings_land_together_and_the_reader_never_sees_the_nearest_section(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, admin_api_key=KEY)
        async with app_factory(settings) as client:
            france = [
                await ask(client, "What is the capital of France?"),
                await ask(client, "capital of France??"),
            ]
            ostrich = [
                await ask(client, "How do penguins avoid tipping over?"),
                # Other words, the same nearest section: the same gap in the book.
                await ask(client, "Do penguins keep their balance like ostriches do?"),
            ]
            alone = await ask(client, "Who won the 2018 football world cup?")
            answered = await ask(client, "How does a publisher send messages?")
            history = (await client.get(f"/api/v1/chat/history/{ostrich[0]['session_id']}")).json()
            page = await insights(client, "unanswered")

        assert [a["mode"] for a in [*france, *ostrich, alone]] == ["no_context"] * 5
        assert answered["mode"] == "rag"
        # What the reader gets and can read back says nothing of the nearest section.
        assert all(a["citations"] == [] for a in [*france, *ostrich, alone])
        assert "walking#balance" not in str(history)
        assert history["messages"][1]["citations"] == []

        refusals = await stored(
            database_url, Message, role=MessageRole.ASSISTANT, mode="no_context"
        )
        kept = sorted((m.question_key, str(m.nearest_section)) for m in refusals)
        assert kept == sorted(
            [
                ("capit franc", "None"),
                ("capit franc", "None"),
                ("avoid over penguin tip", str(BALANCE)),
                ("balanc keep like ostrich penguin", str(BALANCE)),
                ("2018 cup footbal world", "None"),
            ]
        )
        rag = await stored(database_url, Message, role=MessageRole.ASSISTANT, mode="rag")
        assert [(m.question_key, m.nearest_section) for m in rag] == [(None, None)]

        # Two pairs of two, most recent pair first, then the question asked once.
        assert page["total"] == 3
        items = page["items"]
        assert [(i["question"], i["count"], i["section"]) for i in items] == [
            ("Do penguins keep their balance like ostriches do?", 2, BALANCE),
            ("capital of France??", 2, None),
            ("Who won the 2018 football world cup?", 1, None),
        ]
        # The admin sees that the penguin group is two different questions, and the other one;
        # "capital of France??" is the first question in other words, not another question.
        assert [(i["questions"], i["others"]) for i in items] == [
            (2, ["How do penguins avoid tipping over?"]),
            (1, []),
            (1, []),
        ]
        assert items[0]["session_id"] == ostrich[1]["session_id"]
        assert items[1]["session_id"] == france[1]["session_id"]

    async def test_a_streamed_refusal_is_kept_too(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url, admin_api_key=KEY)
        async with app_factory(settings) as client:
            streamed = await client.post(
                "/api/v1/chat/stream",
                json={"message": "ostrich and penguin walking gait"},
            )
            assert streamed.status_code == 200
            assert '"mode": "no_context"' in streamed.text or '"mode":"no_context"' in (
                streamed.text
            )
            page = await insights(client, "unanswered")
        assert [(i["question"], i["section"]) for i in page["items"]] == [
            ("ostrich and penguin walking gait", GAIT)
        ]


class TestAnswersThatCiteNothing:
    async def test_a_model_that_finds_nothing_to_cite_leaves_the_question_unanswered(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        # The gate let both questions through; the model answered one from its passages and
        # found nothing in the other's: the book did not answer it, whatever the mode says.
        settings = await book_settings(
            database_url, admin_api_key=KEY, **openai_settings(fake_openai)
        )
        async with app_factory(settings) as client:
            fake_openai.reply = "A publisher sends messages on a topic [1]."
            cited = await ask(client, "How does a publisher send messages?")
            fake_openai.reply = "The book does not say how many subscribers a topic can have."
            uncited = [
                await ask(client, "How many subscribers can one topic have?"),
                await ask(client, "how many subscribers can a topic have"),
            ]
            streamed = await client.post(
                "/api/v1/chat/stream", json={"message": "What limits the subscribers of a topic?"}
            )
            assert streamed.status_code == 200
            page = await insights(client, "unanswered")

        # What the reader gets is unchanged: the model's words, from the book's passages.
        assert [a["mode"] for a in [cited, *uncited]] == ["rag"] * 3
        assert [c["cited"] for c in cited["citations"]][:1] == [True]
        assert not any(c["cited"] for a in uncited for c in a["citations"])
        nearest = uncited[1]["citations"][0]
        section = {"title": nearest["title"], "heading": nearest["section"]}
        section["url"] = nearest["page_url"]

        assert page["total"] == 1
        assert [(i["question"], i["count"], i["uncited"]) for i in page["items"]] == [
            ("What limits the subscribers of a topic?", 3, 3)
        ]
        assert page["items"][0]["section"] == section

    async def test_a_refusal_and_an_uncited_answer_near_one_section_group_together(
        self, database_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(
            database_url,
            admin_api_key=KEY,
            **{**openai_settings(fake_openai), "embeddings_provider": "none"},
        )
        async with app_factory(settings) as client:
            refused = await ask(client, "Do penguins keep their balance like ostriches do?")
            fake_openai.reply = "The book does not compare penguins with ostriches."
            uncited = await ask(client, "How do penguins balance when they walk?")
            page = await insights(client, "unanswered")

        assert (refused["mode"], uncited["mode"]) == ("no_context", "rag")
        assert [(i["count"], i["uncited"], i["section"]) for i in page["items"]] == [
            (2, 1, BALANCE)
        ]


class TestRatingsAndSections:
    async def test_a_thumbs_down_lists_the_answer_as_the_reader_saw_it(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(database_url, admin_api_key=KEY)
        async with app_factory(settings) as client:
            liked = await ask(client, "How does a publisher send messages?")
            disliked = await ask(client, "What does a depth camera measure?")
            for answer, rating, comment in ((liked, 1, None), (disliked, -1, "Too short")):
                response = await client.post(
                    f"/api/v1/chat/messages/{answer['message_id']}/feedback",
                    json={"rating": rating, "comment": comment},
                )
                assert response.status_code in (200, 201), response.text
            low = await insights(client, "low-rated")
            sections = await insights(client, "sections")
            summary = await insights(client, "summary")

        assert low["total"] == 1
        (item,) = low["items"]
        assert item["message_id"] == disliked["message_id"]
        assert item["session_id"] == disliked["session_id"]
        assert item["question"] == "What does a depth camera measure?"
        assert item["answer"] == disliked["response"]
        assert item["citations"] == disliked["citations"]
        assert item["comment"] == "Too short"

        # Each answer's cited sections, once per answer.
        cited = {
            c["page_url"]: (c["title"], c["section"] or None)
            for a in (liked, disliked)
            for c in a["citations"]
            if c["cited"]
        }
        assert cited
        assert sorted((s["url"], s["count"]) for s in sections["items"]) == sorted(
            (url, 1) for url in cited
        )
        assert all((s["title"], s["heading"]) == cited[s["url"]] for s in sections["items"])

        totals = summary["totals"]
        assert (totals["thumbs_up"], totals["thumbs_down"]) == (1, 1)
        assert totals["answers"] == {"rag": 2, "selected_text": 0, "no_context": 0}
        assert totals["questions"] == 2
        assert totals["readers"] == 2  # two anonymous conversations


class TestCsv:
    async def test_rows_as_asked_and_no_reader_without_a_salt(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url, admin_api_key=KEY)
        async with app_factory(settings) as client:
            first = await ask(client, "How does a publisher send messages?")
            await ask(client, '=HYPERLINK("http://evil.example", "publisher")')
            await ask(client, "What is the capital of France?")
            response = await client.get("/api/v1/insights/questions.csv", headers=ADMIN)
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [r["question"] for r in rows] == [
            "How does a publisher send messages?",
            # A spreadsheet must not run a reader's text as a formula.
            '\'=HYPERLINK("http://evil.example", "publisher")',
            "What is the capital of France?",
        ]
        assert [r["mode"] for r in rows] == ["rag", "no_context", "no_context"]
        assert all(r["reader"] == "" for r in rows)
        top = first["citations"][0]
        assert (rows[0]["section_title"], rows[0]["section_url"]) == (
            top["title"],
            top["page_url"],
        )
        assert rows[0]["cached"] == "false"
        assert int(rows[0]["latency_ms"]) == first["latency_ms"]
        assert rows[0]["rating"] == ""
