"""The insights of one book: `/api/v1/books/{slug}/insights/...` report that book's
conversations alone, and the unscoped `/api/v1/insights/...` the default book's.

Two seeded histories over the same days (history.py), one per book, each with its own questions,
answers and section URLs, and a third book without a conversation. Each book's insights must be
the numbers computed from its own history alone: a query that forgot the book would count the
other book's rows too, and show the empty book something."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bookchat.books.names import DEFAULT_BOOK
from tests.conftest import AppFactory, make_settings
from tests.factories import bearer, sign_up
from tests.insights.history import (
    BOOK,
    History,
    add_book,
    expected_low_rated,
    expected_sections,
    expected_summary,
    expected_unanswered,
    generate,
    insert_history,
)
from tests.insights.test_seeded import (
    ADMIN,
    DAYS,
    END,
    FIRST,
    KEY,
    RANGE,
    SALT,
    START,
    get_all,
    instant,
)

PUBS, PUBS_URL = "pubs", "https://pubs.example.org/docs"
EMPTY, EMPTY_URL = "empty", "https://empty.example.org/book"
# Every question and answer of the pubs book starts with it; none of the default book's does.
TAG = "[pubs]"
UNSCOPED = "/api/v1/insights"
ROUTES = ["summary", "unanswered", "sections", "low-rated", "questions.csv"]


def scoped(book: str) -> str:
    return f"/api/v1/books/{book}/insights"


def pubs_history() -> History:
    """Another seeded history in the pubs book, over the same days: its own readers, and its
    questions, answers and cited sections told apart from the default book's."""
    history = generate(seed=23, first=FIRST, days=DAYS, sessions=240)
    history.book = PUBS
    for turn in history.turns:
        turn.question = f"{TAG} {turn.question}"
        answer = turn.answer
        if answer is None:
            continue
        answer.content = f"{TAG} {answer.content}"
        answer.citations = [
            {**citation, "page_url": citation["page_url"].replace(BOOK, PUBS_URL, 1)}
            for citation in answer.citations
        ]
        if answer.nearest is not None:
            answer.nearest = {
                **answer.nearest,
                "url": answer.nearest["url"].replace(BOOK, PUBS_URL),
            }
    return history


@dataclass
class Books:
    client: httpx.AsyncClient
    default: History
    pubs: History

    def views(self) -> list[tuple[str, History]]:
        """Where each seeded book's insights are read: the default book at the unscoped
        routes, the pubs book at its own."""
        return [(UNSCOPED, self.default), (scoped(PUBS), self.pubs)]


@pytest.fixture
async def books(database_url: str, app_factory: AppFactory) -> AsyncIterator[Books]:
    default, pubs = generate(first=FIRST, days=DAYS), pubs_history()
    await add_book(database_url, PUBS, PUBS_URL)
    await add_book(database_url, EMPTY, EMPTY_URL)
    await insert_history(database_url, default)
    await insert_history(database_url, pubs)
    settings = make_settings(database_url, admin_api_key=KEY, insights_reader_salt=SALT)
    async with app_factory(settings) as client:
        yield Books(client, default, pubs)


async def get_json(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    response = await client.get(path, params=RANGE, headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def questions(history: History) -> set[str]:
    return {turn.question for turn in history.turns}


def own(text: str, prefix: str) -> bool:
    """Whether `text` is one of the book's at `prefix` (the pubs book's are tagged)."""
    return text.startswith(TAG) == (prefix == scoped(PUBS))


class TestEachBookItsOwn:
    async def test_summary(self, books: Books) -> None:
        for prefix, history in books.views():
            body = await get_json(books.client, f"{prefix}/summary")
            assert body == expected_summary(history, START, END), prefix
        # The two books' numbers differ: neither could pass with the other's rows added.
        default, pubs = (expected_summary(h, START, END)["totals"] for _, h in books.views())
        assert pubs["questions"] > 0
        assert pubs["questions"] != default["questions"]

        empty = await get_json(books.client, f"{scoped(EMPTY)}/summary")
        nothing = expected_summary(History(users=[], sessions={}, turns=[]), START, END)
        assert empty == nothing
        assert empty["totals"]["latency_ms"] == {"p50": None, "p95": None}

    async def test_unanswered(self, books: Books) -> None:
        for prefix, history in books.views():
            items = await get_all(books.client, f"{prefix}/unanswered", limit=2)
            expected = expected_unanswered(history, START, END)
            assert len(items) == len(expected) == 5, prefix
            for got, want in zip(items, expected, strict=True):
                assert instant(got.pop("last_asked_at")) == want.pop("last_asked_at")
                assert got == want
            assert all(own(item["question"], prefix) for item in items)
        assert await get_all(books.client, f"{scoped(EMPTY)}/unanswered") == []

    async def test_sections(self, books: Books) -> None:
        for prefix, history in books.views():
            items = await get_all(books.client, f"{prefix}/sections", limit=3)
            assert items == expected_sections(history, START, END), prefix
            base = PUBS_URL if prefix == scoped(PUBS) else f"{BOOK}/"
            assert items
            assert all(item["url"].startswith(base) for item in items)
        assert await get_all(books.client, f"{scoped(EMPTY)}/sections") == []

    async def test_low_rated(self, books: Books) -> None:
        for prefix, history in books.views():
            items = await get_all(books.client, f"{prefix}/low-rated", limit=20)
            expected = expected_low_rated(history, START, END)
            assert len(items) == len(expected) > 0, prefix
            for got, want in zip(items, expected, strict=True):
                assert instant(got.pop("rated_at")) == want.pop("rated_at")
                assert got == want
            assert all(own(item["question"], prefix) for item in items)
            assert all(own(item["answer"], prefix) for item in items)
        assert await get_all(books.client, f"{scoped(EMPTY)}/low-rated") == []

    async def test_csv_export(self, books: Books) -> None:
        for prefix, history in books.views():
            response = await books.client.get(
                f"{prefix}/questions.csv", params=RANGE, headers=ADMIN
            )
            assert response.status_code == 200
            rows = list(csv.DictReader(io.StringIO(response.text)))
            turns = sorted(
                (t for t in history.turns if START <= t.asked_at.date() <= END),
                key=lambda t: t.asked_at,
            )
            assert len(rows) == len(turns) > 0, prefix
            for row, turn in zip(rows, turns, strict=True):
                assert instant(row["asked_at"]) == turn.asked_at
                assert row["question"] == turn.question
                assert row["mode"] == (turn.answer.mode if turn.answer else "")
            assert {row["question"] for row in rows} <= questions(history)
            assert all(own(row["question"], prefix) for row in rows)

        empty = await books.client.get(
            f"{scoped(EMPTY)}/questions.csv", params=RANGE, headers=ADMIN
        )
        assert empty.status_code == 200
        # A book's download names the book: two books' files of one range do not collide.
        assert f'filename="questions-{EMPTY}-' in empty.headers["content-disposition"]
        assert empty.text.splitlines() == [
            "asked_at,question,mode,section_title,section_heading,section_url,rating,cached,"
            "latency_ms,reader"
        ]


class TestUnscoped:
    async def test_the_unscoped_routes_are_the_default_books(self, books: Books) -> None:
        for route in ROUTES:
            params: dict[str, str | int] = dict(RANGE)
            if route in ("unanswered", "low-rated"):
                params["limit"] = 100  # every item, not the first page alone
            unscoped = await books.client.get(f"{UNSCOPED}/{route}", params=params, headers=ADMIN)
            default = await books.client.get(
                f"{scoped(DEFAULT_BOOK)}/{route}", params=params, headers=ADMIN
            )
            assert unscoped.status_code == default.status_code == 200, route
            assert unscoped.text == default.text, route
            # Not the pubs book's: its questions are not in the default book's answers.
            assert TAG not in unscoped.text, route


class TestAccess:
    @pytest.mark.parametrize("route", ROUTES)
    async def test_a_books_insights_need_an_admin(
        self, sqlite_url: str, app_factory: AppFactory, route: str
    ) -> None:
        await add_book(sqlite_url, PUBS, PUBS_URL)
        async with app_factory(make_settings(sqlite_url, admin_api_key=KEY)) as client:
            anonymous = await client.get(f"{scoped(PUBS)}/{route}")
            token = (await sign_up(client, "reader@example.org"))["access_token"]
            reader = await client.get(f"{scoped(PUBS)}/{route}", headers=bearer(token))
            admin = await client.get(f"{scoped(PUBS)}/{route}", headers=ADMIN)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "unauthorized"
        assert reader.status_code == 403
        assert reader.json()["error"]["code"] == "forbidden"
        assert admin.status_code == 200

    @pytest.mark.parametrize("route", ROUTES)
    async def test_an_unknown_book_404(
        self, sqlite_url: str, app_factory: AppFactory, route: str
    ) -> None:
        async with app_factory(make_settings(sqlite_url, admin_api_key=KEY)) as client:
            response = await client.get(f"{scoped('no-such-book')}/{route}", headers=ADMIN)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
