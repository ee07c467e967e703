"""The assembled app: OpenAPI documents the canonical API and hides the aliases."""

from __future__ import annotations

import pytest

from tests.conftest import AppFactory, make_settings


async def test_openapi_lists_canonical_paths_only(sqlite_url: str, app_factory: AppFactory) -> None:
    async with app_factory(make_settings(sqlite_url)) as client:
        docs = await client.get("/docs")
        schema = (await client.get("/openapi.json")).json()

    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    paths = set(schema["paths"])
    assert {"/api/v1/chat", "/api/v1/health", "/api/v1/health/ready"} <= paths
    assert not {"/chat", "/health", "/api/chat"} & paths
    chat = schema["paths"]["/api/v1/chat"]["post"]
    assert {"200", "400", "502", "503", "504"} <= set(chat["responses"])
    assert "422" not in chat["responses"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    error = schema["components"]["schemas"]["ErrorRead"]
    assert set(error["properties"]) == {"error", "request_id"}


async def test_an_unreachable_qdrant_server_stops_startup_with_one_clear_reason(
    sqlite_url: str,
) -> None:
    from bookchat.container import open_container
    from bookchat.retrieval.index import IndexUnreachable

    settings = make_settings(sqlite_url, qdrant_url="https://127.0.0.1:1", qdrant_api_key="k-123")
    with pytest.raises(IndexUnreachable) as refused:
        async with open_container(settings):
            pass
    message = str(refused.value)
    assert "https://127.0.0.1:1" in message
    assert "QDRANT_URL" in message
    assert "k-123" not in message
