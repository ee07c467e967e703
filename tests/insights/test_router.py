"""The insights routes: who may read them, what a date range and a page may be, and a small
history whose numbers are worked out by hand below."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import AppFactory, make_settings
from tests.factories import bearer, execute_sql, sign_up
from tests.insights.history import Answer, Feedback, History, Turn, insert_history

KEY = "insights-admin-key"
ADMIN = {"X-Admin-Key": KEY}
ROUTES = ["summary", "unanswered", "sections", "low-rated", "questions.csv"]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def turn(
    session: uuid.UUID,
    reader: uuid.UUID | None,
    asked: str,
    mode: str | None,
    latency: int = 0,
    *,
    status: str = "complete",
    cached: bool = False,
    feedback: list[Feedback] | None = None,
) -> Turn:
    asked_at = at(asked)
    answer = None
    if mode is not None:
        answer = Answer(
            id=uuid.uuid4(),
            mode=mode,
            status=status,
            cached=cached,
            latency_ms=latency,
            created_at=asked_at + timedelta(milliseconds=latency),
            content=f"answer at {asked}",
            citations=[],
            feedback=feedback or [],
        )
    return Turn(session, reader, uuid.uuid4(), asked_at, f"question at {asked}", answer)


READER = uuid.uuid4()
S1, S2, S3, S4 = (uuid.uuid4() for _ in range(4))

# 2026-11-10 .. 2026-11-12 asked; 11-11 has no traffic at all.
SMALL = History(
    users=[READER],
    sessions={S1: READER, S2: READER, S3: None, S4: None},
    turns=[
        # On the range's first instant: in.
        turn(
            S1,
            READER,
            "2026-11-10 00:00:00",
            "rag",
            100,
            feedback=[Feedback(READER, 1, None, at("2026-11-10 00:01:00"))],
        ),
        turn(S1, READER, "2026-11-10 10:00:00", "rag", 300, cached=True),
        turn(S2, READER, "2026-11-10 12:00:00", "no_context", 10),
        turn(S3, None, "2026-11-12 08:00:00", "rag", 500, status="error"),
        turn(
            S3,
            None,
            "2026-11-12 09:00:00",
            "rag",
            1000,
            feedback=[Feedback(None, -1, "wrong", at("2026-11-12 09:05:00"))],
        ),
        # Asked on the last day, answered 200 ms later on the next: the answer is not in range.
        turn(S3, None, "2026-11-12 23:59:59.900000", "selected_text", 200),
        # Just outside, on both sides.
        turn(
            S4,
            None,
            "2026-11-09 23:59:59",
            "rag",
            70,
            feedback=[
                # Given inside the range: it counts on the day it was given.
                Feedback(None, 1, None, at("2026-11-10 08:00:00"))
            ],
        ),
        turn(S4, None, "2026-11-13 00:00:00", "rag", 50),
    ],
)
EMPTY_DAY: dict[str, Any] = {
    "questions": 0,
    "conversations": 0,
    "readers": 0,
    "answers": {"rag": 0, "selected_text": 0, "no_context": 0},
    "cache_hits": 0,
    "thumbs_up": 0,
    "thumbs_down": 0,
    "latency_ms": {"p50": None, "p95": None},
}


@pytest.fixture
async def admin_client(sqlite_url: str, app_factory: AppFactory) -> Any:
    async with app_factory(make_settings(sqlite_url, admin_api_key=KEY)) as client:
        yield client


class TestAccess:
    @pytest.mark.parametrize("route", ROUTES)
    async def test_without_credentials_401(
        self, admin_client: httpx.AsyncClient, route: str
    ) -> None:
        response = await admin_client.get(f"/api/v1/insights/{route}")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"

    async def test_without_credentials_401_on_a_server_without_an_admin_key(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.get("/api/v1/insights/summary")
        assert response.status_code == 401
        assert "Sign in with an admin account" in response.json()["error"]["message"]

    async def test_a_wrong_key_401(self, admin_client: httpx.AsyncClient) -> None:
        response = await admin_client.get(
            "/api/v1/insights/summary", headers={"X-Admin-Key": "guess"}
        )
        assert response.status_code == 401

    @pytest.mark.parametrize("route", ROUTES)
    async def test_a_reader_403(self, admin_client: httpx.AsyncClient, route: str) -> None:
        token = (await sign_up(admin_client, "reader@example.org"))["access_token"]
        response = await admin_client.get(f"/api/v1/insights/{route}", headers=bearer(token))
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"

    async def test_an_admin_account_and_the_key_may_read(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url, admin_api_key=KEY)) as client:
            token = (await sign_up(client, "admin@example.org"))["access_token"]
            await execute_sql(
                database_url, "UPDATE users SET role = 'admin' WHERE email = 'admin@example.org'"
            )
            for headers in (bearer(token), ADMIN):
                for route in ROUTES:
                    response = await client.get(f"/api/v1/insights/{route}", headers=headers)
                    assert response.status_code == 200, (route, response.text)


class TestParameters:
    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ({"start": "2026-11-10", "end": "2026-11-09"}, "start (2026-11-10) is after end"),
            ({"start": "2025-11-09", "end": "2026-11-10"}, "spans 367 days; at most 366"),
            ({"start": "2026-02-30"}, "start"),
            ({"end": "0"}, "ISO date"),
            ({"end": "2026-11-10T00:00:00"}, "ISO date"),
            ({"end": "9999-12-31"}, "before 9999-12-31"),
        ],
    )
    async def test_a_bad_range_400(
        self, admin_client: httpx.AsyncClient, params: dict[str, str], message: str
    ) -> None:
        for route in ROUTES:
            response = await admin_client.get(
                f"/api/v1/insights/{route}", params=params, headers=ADMIN
            )
            assert response.status_code == 400, (route, params)
            error = response.json()["error"]
            assert error["code"] == "validation_error"
            assert message in error["message"] + str(error["details"])

    async def test_366_days_is_the_longest_range(self, admin_client: httpx.AsyncClient) -> None:
        response = await admin_client.get(
            "/api/v1/insights/summary",
            params={"start": "2024-01-01", "end": "2024-12-31"},  # a leap year: 366 days
            headers=ADMIN,
        )
        assert response.status_code == 200
        assert len(response.json()["days"]) == 366

    @pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"offset": -1}])
    @pytest.mark.parametrize("route", ["unanswered", "sections", "low-rated"])
    async def test_a_bad_page_400(
        self, admin_client: httpx.AsyncClient, route: str, params: dict[str, int]
    ) -> None:
        response = await admin_client.get(f"/api/v1/insights/{route}", params=params, headers=ADMIN)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "validation_error"

    async def test_the_default_is_the_last_30_days_ending_today(
        self, admin_client: httpx.AsyncClient
    ) -> None:
        body = (await admin_client.get("/api/v1/insights/summary", headers=ADMIN)).json()
        today = datetime.now(UTC).date()
        assert body["end"] == today.isoformat()
        assert body["start"] == (today - timedelta(days=29)).isoformat()
        assert [d["date"] for d in body["days"]] == [
            (today - timedelta(days=29 - n)).isoformat() for n in range(30)
        ]
        page = (await admin_client.get("/api/v1/insights/unanswered", headers=ADMIN)).json()
        assert page == {"items": [], "total": 0, "limit": 20, "offset": 0}


class TestSmallHistory:
    """Numbers worked out by hand from `SMALL`."""

    async def test_summary(self, database_url: str, app_factory: AppFactory) -> None:
        await insert_history(database_url, SMALL)
        async with app_factory(make_settings(database_url, admin_api_key=KEY)) as client:
            response = await client.get(
                "/api/v1/insights/summary",
                params={"start": "2026-11-10", "end": "2026-11-12"},
                headers=ADMIN,
            )
        assert response.status_code == 200
        body = response.json()
        assert body["start"] == "2026-11-10"
        assert body["end"] == "2026-11-12"
        assert body["days"] == [
            {
                "date": "2026-11-10",
                "questions": 3,
                "conversations": 2,
                "readers": 1,  # one account, two conversations
                "answers": {"rag": 2, "selected_text": 0, "no_context": 1},
                "cache_hits": 1,
                "thumbs_up": 2,  # one on its answer, one given today on yesterday's
                "thumbs_down": 0,
                # 10, 100, 300: the middle one; 95%: 100 + 0.9 * (300 - 100)
                "latency_ms": {"p50": 100, "p95": 280},
            },
            {"date": "2026-11-11", **EMPTY_DAY},
            {
                "date": "2026-11-12",
                "questions": 3,
                "conversations": 1,
                "readers": 1,  # an anonymous conversation
                # The error is no answer; the selection was answered on the 13th.
                "answers": {"rag": 1, "selected_text": 0, "no_context": 0},
                "cache_hits": 0,
                "thumbs_up": 0,
                "thumbs_down": 1,
                "latency_ms": {"p50": 1000, "p95": 1000},
            },
        ]
        assert body["totals"] == {
            "questions": 6,
            "conversations": 3,
            "readers": 2,
            "answers": {"rag": 3, "selected_text": 0, "no_context": 1},
            "cache_hits": 1,
            "thumbs_up": 2,
            "thumbs_down": 1,
            # 10, 100, 300, 1000: 100 + 0.5 * 200; 300 + 0.85 * 700
            "latency_ms": {"p50": 200, "p95": 895},
        }

    async def test_low_rated(self, database_url: str, app_factory: AppFactory) -> None:
        await insert_history(database_url, SMALL)
        async with app_factory(make_settings(database_url, admin_api_key=KEY)) as client:
            page = (
                await client.get(
                    "/api/v1/insights/low-rated",
                    params={"start": "2026-11-10", "end": "2026-11-12"},
                    headers=ADMIN,
                )
            ).json()
        rated = SMALL.turns[4]
        assert rated.answer is not None
        assert page["total"] == 1
        assert page["items"] == [
            {
                "message_id": str(rated.answer.id),
                "session_id": str(S3),
                "question": "question at 2026-11-12 09:00:00",
                "answer": "answer at 2026-11-12 09:00:00",
                "citations": [],
                "comment": "wrong",
                "rated_at": "2026-11-12T09:05:00Z",
            }
        ]

    async def test_a_range_without_traffic(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        await insert_history(database_url, SMALL)
        async with app_factory(make_settings(database_url, admin_api_key=KEY)) as client:
            body = (
                await client.get(
                    "/api/v1/insights/summary",
                    params={"start": "2026-11-11", "end": "2026-11-11"},
                    headers=ADMIN,
                )
            ).json()
            csv_text = (
                await client.get(
                    "/api/v1/insights/questions.csv",
                    params={"start": "2026-11-11", "end": "2026-11-11"},
                    headers=ADMIN,
                )
            ).text
        assert body["totals"] == EMPTY_DAY
        assert body["days"] == [{"date": "2026-11-11", **EMPTY_DAY}]
        assert csv_text == (
            "asked_at,question,mode,section_title,section_heading,section_url,rating,cached,"
            "latency_ms,reader\r\n"
        )
