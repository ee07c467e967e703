"""PostgreSQL goes away and comes back: clear 503s meanwhile, nothing lost, full recovery."""

from __future__ import annotations

from collections.abc import Iterator

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
    return count or 0


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
