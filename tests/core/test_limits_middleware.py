"""Request size limits (declared and streamed) and the security headers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.types import Receive, Scope, Send

from bookchat.core.middleware import BodySizeLimitMiddleware, SecurityHeadersMiddleware
from bookchat.main import create_app
from tests.conftest import AppFactory, make_settings

LIMITS = {"max_request_bytes": 1000, "max_upload_bytes": 5000, "admin_api_key": "admin-key"}
JSON = {"Content-Type": "application/json"}
ADMIN = {"X-Admin-Key": "admin-key", "Content-Type": "application/json"}


async def chunks(size: int, chunk: int = 500) -> AsyncIterator[bytes]:
    """A body without Content-Length (sent chunked)."""
    for start in range(0, size, chunk):
        yield b"x" * min(chunk, size - start)


def assert_too_large(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 413
    body = response.json()
    assert body["error"]["code"] == "payload_too_large"
    assert str(limit) in body["error"]["message"]
    assert body["request_id"] == response.headers["x-request-id"]


class TestBodySizeLimit:
    async def test_declared_too_large_is_refused_before_reading(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url, **LIMITS)) as client:
            response = await client.post(
                "/api/v1/chat",
                content=b"x" * 1001,
                headers={**JSON, "X-Request-ID": "big-1", "Origin": "http://localhost:3000"},
            )
        assert_too_large(response, 1000)
        assert response.headers["x-request-id"] == "big-1"
        # CORS is outside the limit: a browser can read the 413.
        assert response.headers["access-control-allow-origin"] == "http://localhost:3000"

    async def test_streamed_too_large_is_refused(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url, **LIMITS)) as client:
            response = await client.post("/api/v1/chat", content=chunks(2000), headers=JSON)
        assert "content-length" not in response.request.headers
        assert_too_large(response, 1000)

    async def test_streamed_within_the_limit_passes(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async def small_json() -> AsyncIterator[bytes]:
            yield b'{"message": '
            yield b'"What is a node?"}'

        async with app_factory(make_settings(sqlite_url, **LIMITS)) as client:
            response = await client.post("/api/v1/chat", content=small_json(), headers=JSON)
        assert response.status_code == 200

    @pytest.mark.parametrize("path", ["/api/v1/content/ingest", "/api/content/ingest"])
    async def test_uploads_have_the_bigger_limit(
        self, path: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url, **LIMITS)) as client:
            within = await client.post(path, content=b"x" * 3000, headers=ADMIN)
            declared = await client.post(path, content=b"x" * 5001, headers=ADMIN)
            streamed = await client.post(path, content=chunks(6000), headers=ADMIN)
        # Over the request limit but within the upload limit: read, and refused as bad JSON.
        assert within.status_code == 400
        assert within.json()["error"]["code"] == "validation_error"
        assert_too_large(declared, 5000)
        assert_too_large(streamed, 5000)

    async def test_a_too_large_body_read_outside_fastapi_is_still_a_413(self) -> None:
        async def read_everything(scope: Scope, receive: Receive, send: Send) -> None:
            while (await receive()).get("more_body"):
                pass
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"read"})

        app = BodySizeLimitMiddleware(read_everything, max_bytes=1000, upload_max_bytes=1000)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            small = await client.post("/", content=chunks(1000))
            large = await client.post("/", content=chunks(1500))
        assert small.text == "read"
        assert large.status_code == 413
        assert large.json()["error"]["code"] == "payload_too_large"


@pytest.fixture
async def https_client(sqlite_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(sqlite_url))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            yield client


class TestSecurityHeaders:
    async def test_json_responses_carry_them(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            responses = [
                await client.get("/api/v1/health"),
                await client.get("/api/v1/nothing-here"),
                await client.post("/api/v1/chat", json={"message": ""}),
            ]
        for response in responses:
            headers = response.headers
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "no-referrer"
            assert headers["x-frame-options"] == "DENY"
            assert headers["cross-origin-resource-policy"] == "cross-origin"
            assert (
                headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
            )
            assert "strict-transport-security" not in headers  # plain http

    @pytest.mark.parametrize("path", ["/docs", "/redoc"])
    async def test_docs_pages_can_load_their_assets(
        self, path: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.get(path)
        assert response.status_code == 200
        # Their own policy (tests/test_main.py checks it names what they load), not the API's.
        policy = response.headers["content-security-policy"]
        assert "script-src https://cdn.jsdelivr.net/npm/" in policy
        assert response.headers["x-content-type-options"] == "nosniff"

    async def test_hsts_over_https_only(self, https_client: httpx.AsyncClient) -> None:
        response = await https_client.get("/api/v1/health/live")
        assert response.headers["strict-transport-security"] == "max-age=31536000"

    async def test_a_header_the_app_set_wins(self) -> None:
        async def framed_page(scope: Scope, receive: Receive, send: Send) -> None:
            headers = [(b"content-type", b"text/plain"), (b"x-frame-options", b"SAMEORIGIN")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"ok"})

        transport = httpx.ASGITransport(app=SecurityHeadersMiddleware(framed_page))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/")
        assert response.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
