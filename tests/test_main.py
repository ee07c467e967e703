"""The assembled app: OpenAPI documents the canonical API and hides the aliases."""

from __future__ import annotations

import base64
import hashlib
import re

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


class TestApiDocs:
    """`/docs` and `/redoc` load only pinned, hash-checked files that their CSP names."""

    @pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
    async def test_the_page_loads_only_what_its_policy_allows(
        self, path: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.get(path)

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        policy = dict(
            directive.strip().split(" ", 1)
            for directive in response.headers["content-security-policy"].split(";")
        )
        assert policy["default-src"] == "'none'"
        assert policy["frame-ancestors"] == "'none'"
        sources = " ".join(policy.values()).split()
        # No wildcard, no whole scheme or host: each outside source is one exact file.
        assert not [s for s in sources if s in ("*", "https:", "http:") or s.endswith("/")]
        page = response.text
        for tag in re.findall(r"<(?:script|link)\b[^>]*>", page):
            url = re.search(r'(?:src|href)="([^"]+)"', tag)
            if url is None:
                continue  # an inline script: checked below
            assert url.group(1).startswith("https://cdn.jsdelivr.net/npm/"), tag
            assert re.search(r"@\d+\.\d+\.\d+/", url.group(1)), f"version not pinned: {tag}"
            assert re.search(r'integrity="sha384-[A-Za-z0-9+/]{64}"', tag), tag
            assert 'crossorigin="anonymous"' in tag
            directive = "script-src" if tag.startswith("<script") else "style-src"
            assert url.group(1) in policy[directive].split()
        for code in re.findall(r"<script>(.*?)</script>", page, re.DOTALL):
            digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in policy["script-src"].split()
        assert "fonts.googleapis.com" not in page
        assert "validatorUrl" not in page or '"validatorUrl": null' in page
