"""The assembled app: OpenAPI documents the canonical API and hides the aliases."""

from __future__ import annotations

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
