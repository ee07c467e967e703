"""The serverless entry (Vercel): `api/index.py` imports and serves without a server's lifespan."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp

from bookchat.serverless import (
    ServerlessConfigError,
    check_serverless_settings,
    create_serverless_app,
)
from tests.conftest import load_module, make_settings, scratch_dir

ENTRY = Path(__file__).resolve().parent.parent / "api" / "index.py"


# Commands read the environment through the cached get_settings().
pytestmark = pytest.mark.usefixtures("fresh_settings")


def import_entry() -> ModuleType:
    """Load `api/index.py` the way the platform does: as a file, settings from the environment."""
    return load_module(ENTRY)


def client_for(app: ASGIApp) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


class TestEntry:
    async def test_imports_and_serves_without_a_lifespan(
        self, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name, value in {
            "DATABASE_URL": sqlite_url,
            "QDRANT_PATH": scratch_dir(),
            "EMBEDDINGS_PROVIDER": "none",
            "ADMIN_API_KEY": "admin-key",
        }.items():
            monkeypatch.setenv(name, value)
        app = import_entry().app
        try:
            async with client_for(app) as client:
                seed = await client.get("/health")
                health = await client.get("/api/v1/health")
                ingest = await client.post(
                    "/api/v1/content/ingest", headers={"X-Admin-Key": "admin-key"}
                )
        finally:
            await app.aclose()

        assert seed.json() == {"status": "healthy"}
        assert health.status_code == 200
        assert health.json()["components"]["database"]["status"] == "ok"
        # Background jobs would stop with the response: refused, with what to do instead.
        assert ingest.status_code == 403
        assert "bookchat ingest" in ingest.json()["error"]["message"]

    def test_on_vercel_the_embedded_stores_are_refused(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("VERCEL", "1")
        with pytest.raises(ServerlessConfigError) as refused:
            import_entry()
        message = str(refused.value)
        assert "QDRANT_URL" in message
        assert "DATABASE_URL" in message
        assert "-pooler" in message


class TestChecks:
    def test_servers_pass(self) -> None:
        settings = make_settings(
            "postgresql://app:pw@ep-x-pooler.eu.aws.neon.tech/db?sslmode=require",
            qdrant_url="https://cluster.cloud.qdrant.io:6333",
        )
        check_serverless_settings(settings)

    def test_one_missing_server_is_named(self) -> None:
        settings = make_settings("postgresql://app:pw@db.example.org/db", qdrant_url=None)
        with pytest.raises(ServerlessConfigError, match="QDRANT_URL") as refused:
            check_serverless_settings(settings)
        assert "DATABASE_URL" not in str(refused.value)


class TestLazyLifespan:
    async def test_a_platform_that_runs_the_lifespan_is_left_to_it(self, sqlite_url: str) -> None:
        app = create_serverless_app(make_settings(sqlite_url), require_servers=False)
        # Were the lifespan started a second time, embedded Qdrant's lock would refuse it.
        async with LifespanManager(app) as manager, client_for(manager.app) as client:
            first = await client.get("/api/v1/health/ready")
            second = await client.get("/api/v1/health")
        assert first.status_code == 200
        assert second.json()["components"]["qdrant"]["status"] == "ok"

    async def test_a_failed_start_is_a_503_and_is_tried_again(self, sqlite_url: str) -> None:
        # An OpenAI provider without a key cannot be built: the lifespan fails.
        settings = make_settings(sqlite_url, llm_provider="openai")
        app = create_serverless_app(settings, require_servers=False)
        async with client_for(app) as client:
            first = await client.get("/api/v1/health")
            second = await client.get("/api/v1/health")
        assert (first.status_code, second.status_code) == (503, 503)
        assert first.json()["error"]["code"] == "dependency_unavailable"
        assert first.headers["retry-after"] == "5"
        assert "OPENAI_API_KEY" not in first.text  # the reason is for the operator's log
