"""Each insight over a seeded history of a few thousand messages, on SQLite and PostgreSQL,
against the numbers computed from that history in plain Python (history.py)."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import AppFactory, make_settings
from tests.insights.history import (
    History,
    expected_low_rated,
    expected_sections,
    expected_summary,
    expected_unanswered,
    generate,
    insert_history,
)

KEY = "insights-admin-key"
ADMIN = {"X-Admin-Key": KEY}
SALT = "a-secret-salt-for-the-export"
# The history spans 2026-11-01..2026-11-20; the range asked is an inner part of it, so that
# questions, answers and ratings on both sides of its edges exist.
FIRST, DAYS = date(2026, 11, 1), 20
START, END = date(2026, 11, 4), date(2026, 11, 16)
RANGE = {"start": START.isoformat(), "end": END.isoformat()}


@pytest.fixture
async def seeded(
    database_url: str, app_factory: AppFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, History]]:
    history = generate(first=FIRST, days=DAYS)
    await insert_history(database_url, history)
    settings = make_settings(database_url, admin_api_key=KEY, insights_reader_salt=SALT)
    async with app_factory(settings) as client:
        yield client, history


async def get_all(client: httpx.AsyncClient, path: str, limit: int = 7) -> list[dict[str, Any]]:
    """Every item of a paged list, read `limit` at a time (so paging is exercised too)."""
    items: list[dict[str, Any]] = []
    while True:
        response = await client.get(
            path, params={**RANGE, "limit": limit, "offset": len(items)}, headers=ADMIN
        )
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["limit"] == limit
        assert page["offset"] == len(items)
        items.extend(page["items"])
        if not page["items"]:
            assert len(items) == page["total"]
            return items


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class TestSeededHistory:
    async def test_the_history_is_a_few_thousand_messages(
        self, seeded: tuple[httpx.AsyncClient, History]
    ) -> None:
        _, history = seeded
        assert 2000 <= history.messages() <= 6000

    async def test_summary(self, seeded: tuple[httpx.AsyncClient, History]) -> None:
        client, history = seeded
        response = await client.get("/api/v1/insights/summary", params=RANGE, headers=ADMIN)
        assert response.status_code == 200, response.text
        body = response.json()
        expected = expected_summary(history, START, END)
        assert body["totals"] == expected["totals"]
        assert len(body["days"]) == 13
        for got, want in zip(body["days"], expected["days"], strict=True):
            assert got == want, got["date"]
        assert body == expected
        # Not a trivially empty history: every kind of number is there.
        totals = body["totals"]
        assert totals["readers"] < totals["conversations"] < totals["questions"]
        assert min(totals["answers"].values()) > 0
        assert totals["cache_hits"] > 0
        assert totals["thumbs_down"] > 0
        assert totals["latency_ms"]["p50"] < totals["latency_ms"]["p95"]

    async def test_sections(self, seeded: tuple[httpx.AsyncClient, History]) -> None:
        client, history = seeded
        items = await get_all(client, "/api/v1/insights/sections", limit=3)
        expected = expected_sections(history, START, END)
        assert items == expected
        # Selections are never a section of the book.
        assert all(item["title"] != "Selected text" for item in items)

    async def test_unanswered_groups_rewordings(
        self, seeded: tuple[httpx.AsyncClient, History]
    ) -> None:
        client, history = seeded
        items = await get_all(client, "/api/v1/insights/unanswered", limit=2)
        expected = expected_unanswered(history, START, END)
        # One group per family of rewordings: five families, five groups.
        assert len(items) == len(expected) == 5
        for got, want in zip(items, expected, strict=True):
            assert instant(got.pop("last_asked_at")) == want.pop("last_asked_at")
            assert got == want

    async def test_low_rated(self, seeded: tuple[httpx.AsyncClient, History]) -> None:
        client, history = seeded
        items = await get_all(client, "/api/v1/insights/low-rated", limit=20)
        expected = expected_low_rated(history, START, END)
        assert len(items) == len(expected) > 20
        for got, want in zip(items, expected, strict=True):
            assert instant(got.pop("rated_at")) == want.pop("rated_at")
            assert got == want

    async def test_csv_export(self, seeded: tuple[httpx.AsyncClient, History]) -> None:
        client, history = seeded
        response = await client.get("/api/v1/insights/questions.csv", params=RANGE, headers=ADMIN)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["content-disposition"] == (
            'attachment; filename="questions-2026-11-04-2026-11-16.csv"'
        )
        rows = list(csv.DictReader(io.StringIO(response.text)))
        turns = sorted(
            (t for t in history.turns if START <= t.asked_at.date() <= END),
            key=lambda t: t.asked_at,
        )
        assert len(rows) == len(turns) > 1000
        for row, turn in zip(rows, turns, strict=True):
            assert instant(row["asked_at"]) == turn.asked_at
            assert row["question"] == turn.question
            answer = turn.answer
            if answer is None:
                assert [row[c] for c in ("mode", "rating", "cached", "latency_ms")] == [""] * 4
            else:
                assert row["mode"] == answer.mode
                assert row["cached"] == ("true" if answer.cached else "false")
                assert row["latency_ms"] == str(answer.latency_ms)
                ratings = [f.rating for f in answer.feedback]
                assert row["rating"] == (str(sum(ratings)) if ratings else "")
                assert section_of(row) == expected_section(answer)
            reader = f"user:{turn.user_id}" if turn.user_id else f"session:{turn.session_id}"
            digest = hmac.new(SALT.encode(), reader.encode(), hashlib.sha256).hexdigest()[:16]
            assert row["reader"] == digest
        # No identity leaves: no email, no account or conversation id, in any form.
        body = response.text
        assert "@example.org" not in body
        for reader_id in [*history.users, *history.sessions]:
            assert str(reader_id) not in body
            assert reader_id.hex not in body


def section_of(row: dict[str, str]) -> tuple[str, str, str]:
    return row["section_title"], row["section_heading"], row["section_url"]


def expected_section(answer: Any) -> tuple[str, str, str]:
    """A rag answer's first cited source; a refusal's nearest section; else nothing."""
    if answer.mode == "rag" and answer.citations and answer.citations[0]["cited"]:
        first = answer.citations[0]
        return first["title"], first["section"], first["page_url"]
    if answer.mode == "no_context" and answer.nearest:
        return answer.nearest["title"], answer.nearest["heading"] or "", answer.nearest["url"]
    return "", "", ""
