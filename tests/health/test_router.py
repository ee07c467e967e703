"""Health: the seed's `/health`, per-part status, readiness."""

from __future__ import annotations

from tests.conftest import AppFactory, make_settings, openai_settings
from tests.fakes.openai_server import FakeOpenAIServer

DOWN = "postgresql://nobody@127.0.0.1:1/none"


class TestHealth:
    async def test_seed_contract(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.get("/health")
        assert response.status_code == 200
        assert response.json() == {"status": "healthy"}

    async def test_parts_and_profiles(self, database_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(database_url)) as client:
            body = (await client.get("/api/v1/health")).json()
        assert body["status"] == "ok"
        database = body["components"]["database"]
        assert database["status"] == "ok"
        assert database["profile"] == ("sqlite" if "sqlite" in database_url else "postgresql")
        assert body["components"]["llm"]["profile"] == "extractive"
        assert "offline" in body["components"]["llm"]["detail"]

    async def test_names_the_openai_model(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, llm_model="llama3.1", **openai_settings(fake_openai))
        async with app_factory(settings) as client:
            llm = (await client.get("/api/v1/health")).json()["components"]["llm"]
        assert llm == {
            "status": "ok",
            "profile": "openai",
            "detail": "model=llama3.1",
            "latency_ms": None,
        }

    async def test_live_ready_db_when_up(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            live = await client.get("/api/v1/health/live")
            ready = await client.get("/api/v1/health/ready")
            db = await client.get("/api/v1/health/db")
        assert (live.status_code, ready.status_code, db.status_code) == (200, 200, 200)
        assert db.json()["status"] == "ok"

    async def test_database_down(self, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(DOWN)) as client:
            overall = await client.get("/api/v1/health")
            live = await client.get("/api/v1/health/live")
            ready = await client.get("/api/v1/health/ready")
            db = await client.get("/api/health/db")

        assert overall.status_code == 200
        assert overall.json()["status"] == "degraded"
        assert overall.json()["components"]["database"]["status"] == "unavailable"
        assert live.status_code == 200
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "dependency_unavailable"
        assert db.status_code == 503
        assert "nobody" not in ready.text


class TestIndexHealth:
    async def test_embedded_index(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            component = (await client.get("/api/v1/health/qdrant")).json()
            overall = (await client.get("/api/v1/health")).json()
        assert component["status"] == "ok"
        assert component["profile"] == "embedded"
        assert "collection=bookchat points=0" in component["detail"]
        assert "BM25 only" in component["detail"]
        assert overall["components"]["qdrant"] == {
            **component,
            "latency_ms": overall["components"]["qdrant"]["latency_ms"],
        }

    async def test_names_the_embedder(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer, app_factory: AppFactory
    ) -> None:
        settings = make_settings(
            sqlite_url, embeddings_provider="openai", **openai_settings(fake_openai)
        )
        async with app_factory(settings) as client:
            component = (await client.get("/api/v1/health/qdrant")).json()
        assert "dense=openai:text-embedding-3-small (16)" in component["detail"]
