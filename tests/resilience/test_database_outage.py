"""PostgreSQL goes away and comes back: clear 503s meanwhile, nothing lost, full recovery.

Two kinds of outage: a refused connection (the server is down) and a partition (packets
dropped: connections stay open and nothing answers), which only the connect, command and pool
timeouts turn into an answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bookchat.chat.models import Message
from tests.conftest import AppFactory, make_settings
from tests.factories import count
from tests.fakes.tcp_proxy import TcpProxy

QUESTION = {"message": "How does a publisher send messages?"}


@pytest.fixture
def proxied_postgres(clean_postgres_url: str) -> Iterator[tuple[str, TcpProxy]]:
    """The test database reached through a proxy the test can cut (never the server itself)."""
    url = make_url(clean_postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    try:
        yield (
            url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
            proxy,
        )
    finally:
        proxy.close()


async def count_messages(url: str) -> int:
    return await count(url, Message)


# Short bounds, so that the test is quick; production defaults are longer (docs/operations.md).
PARTITION_TIMEOUTS: dict[str, Any] = {
    "database_connect_timeout_seconds": 1.0,
    "database_command_timeout_seconds": 1.0,
    "database_pool_timeout_seconds": 1.0,
}
# Not a timing assertion: without the bounds a request waits as long as the partition lasts,
# and this turns that hang into a failure instead of a stuck test run.
HANG_GUARD_SECONDS = 60


async def test_outage_answers_503_and_recovery_needs_no_restart(
    proxied_postgres: tuple[str, TcpProxy], clean_postgres_url: str, app_factory: AppFactory
) -> None:
    url, proxy = proxied_postgres
    async with app_factory(make_settings(url)) as client:
        before = await client.post("/api/v1/chat", json=QUESTION)
        proxy.stop()
        during_chat = await client.post("/api/v1/chat", json=QUESTION)
        during_ready = await client.get("/api/v1/health/ready")
        during_live = await client.get("/api/v1/health/live")
        proxy.start()
        after_ready = await client.get("/api/v1/health/ready")
        after_chat = await client.post(
            "/api/v1/chat", json={**QUESTION, "session_id": before.json()["session_id"]}
        )
        history = await client.get(f"/api/v1/chat/history/{before.json()['session_id']}")

    assert before.status_code == 200
    assert during_chat.status_code == 503
    assert during_chat.json()["error"]["code"] == "dependency_unavailable"
    assert during_ready.status_code == 503
    assert during_live.status_code == 200
    assert after_ready.status_code == 200
    assert after_chat.status_code == 200
    # The first turn survived the outage; the turn after it was added to the same session.
    assert len(history.json()["messages"]) == 4
    assert await count_messages(clean_postgres_url) == 4


async def test_partition_answers_503_and_loses_nothing_acknowledged(
    proxied_postgres: tuple[str, TcpProxy], clean_postgres_url: str, app_factory: AppFactory
) -> None:
    url, proxy = proxied_postgres
    async with app_factory(make_settings(url, **PARTITION_TIMEOUTS)) as client:
        before = await client.post("/api/v1/chat", json=QUESTION)
        session_id = before.json()["session_id"]
        proxy.partition()
        try:
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                during_turn = await client.post(
                    "/api/v1/chat", json={**QUESTION, "session_id": session_id}
                )
                during_new = await client.post("/api/v1/chat", json=QUESTION)
                during_ready = await client.get("/api/v1/health/ready")
                during_db = await client.get("/api/v1/health/db")
                during_live = await client.get("/api/v1/health/live")
        finally:
            proxy.heal()
        after_ready = await client.get("/api/v1/health/ready")
        after = await client.post("/api/v1/chat", json={**QUESTION, "session_id": session_id})
        history = await client.get(f"/api/v1/chat/history/{session_id}")

    assert before.status_code == 200
    for during in (during_turn, during_new, during_ready, during_db):
        assert during.status_code == 503, during.text
        assert during.json()["error"]["code"] == "dependency_unavailable"
    assert during_live.status_code == 200
    assert after_ready.status_code == 200
    assert after.status_code == 200, after.text
    # Both acknowledged answers are stored, in the session they were given in.
    stored_ids = {message["id"] for message in history.json()["messages"]}
    assert {before.json()["message_id"], after.json()["message_id"]} <= stored_ids


async def test_a_pooled_connection_that_falls_silent_costs_one_timeout_not_two(
    proxied_postgres: tuple[str, TcpProxy], clean_postgres_url: str, app_factory: AppFactory
) -> None:
    """The partition falls inside the check-out ping of a pooled connection (the bench saw a
    chat in flight at the cut answer 503 after 6 s: SQLAlchemy's ping began a transaction,
    its query timed out, and rolling back waited another timeout for the cancel request)."""
    url, proxy = proxied_postgres
    bounds = {name: 2.0 for name in PARTITION_TIMEOUTS}
    async with app_factory(make_settings(url, **bounds)) as client:
        before = await client.post("/api/v1/chat", json=QUESTION)  # leaves a pooled connection
        # The next check-out's ping begins a transaction, and then nothing answers.
        proxy.partition_after_reply_to(b"BEGIN")
        started = time.monotonic()
        try:
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                during = await client.post("/api/v1/chat", json=QUESTION)
        finally:
            waited = time.monotonic() - started
            proxy.heal()
        after = await client.post("/api/v1/chat", json=QUESTION)

    assert before.status_code == 200
    assert during.status_code == 503, during.text
    assert during.json()["error"]["code"] == "dependency_unavailable"
    # A bound on waiting, not a speed: one command timeout (2 s) and the close, not two (4 s).
    assert waited < 3.5
    assert after.status_code == 200


async def test_a_pooled_connection_the_server_closed_is_replaced_unseen(
    proxied_postgres: tuple[str, TcpProxy], clean_postgres_url: str, app_factory: AppFactory
) -> None:
    """The server ends the app's idle connections (a restart, or Neon suspending its compute):
    the next chat checks out a new connection and answers, no 503."""
    url, _ = proxied_postgres
    dsn = make_url(clean_postgres_url).set(drivername="postgresql")
    server = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        # Only the app's connections: those opened since now (other fixtures keep theirs).
        since = await server.fetchval("SELECT clock_timestamp()")
        async with app_factory(make_settings(url, **PARTITION_TIMEOUTS)) as client:
            before = await client.post("/api/v1/chat", json=QUESTION)
            ended = await server.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_start >= $1",
                since,
            )
            after = await client.post(
                "/api/v1/chat", json={**QUESTION, "session_id": before.json()["session_id"]}
            )
    finally:
        await server.close()

    assert before.status_code == 200
    assert ended >= 1
    assert after.status_code == 200, after.text
