"""Request ids, the one error shape for every failure, CORS."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from tests.conftest import AppFactory, make_settings


def add_failing_routes(app: FastAPI) -> None:
    async def boom() -> None:
        raise RuntimeError("password=hunter2 in /srv/secret/path")

    async def missing_file() -> None:
        raise FileNotFoundError("/srv/secret/config.yaml")

    app.add_api_route("/boom", boom)
    app.add_api_route("/missing-file", missing_file)


class TestRequestId:
    async def test_generated_when_absent(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            first = await client.get("/health")
            second = await client.get("/health")
        assert len(first.headers["x-request-id"]) == 32
        assert first.headers["x-request-id"] != second.headers["x-request-id"]

    async def test_taken_from_the_caller(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.post(
                "/chat", json={"message": ""}, headers={"X-Request-ID": "trace-abc.123"}
            )
        assert response.headers["x-request-id"] == "trace-abc.123"
        assert response.json()["request_id"] == "trace-abc.123"

    @pytest.mark.parametrize("bad", ["x" * 200, "has space", "<script>"])
    async def test_unsafe_ids_are_replaced(
        self, bad: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.get("/health", headers={"X-Request-ID": bad})
        assert response.headers["x-request-id"] != bad


class TestErrorShape:
    @pytest.mark.parametrize("path", ["/boom", "/missing-file"])
    async def test_unexpected_error_is_a_generic_500(
        self, path: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url), customize=add_failing_routes) as client:
            response = await client.get(path)

        assert response.status_code == 500
        body = response.json()
        assert body["error"]["code"] == "internal_error"
        assert body["request_id"] == response.headers["x-request-id"]
        assert "hunter2" not in response.text
        assert "/srv/secret" not in response.text
        assert "Traceback" not in response.text

    async def test_unknown_route_is_404_in_shape(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.get("/api/v1/nothing-here")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    async def test_wrong_method_is_405_in_shape(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.get("/chat")
        assert response.status_code == 405
        assert response.json()["error"]["code"] == "method_not_allowed"


class TestCors:
    async def test_allowed_origin_gets_the_headers(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, cors_origins="https://book.example.org")
        async with app_factory(settings) as client:
            preflight = await client.options(
                "/api/v1/chat",
                headers={
                    "Origin": "https://book.example.org",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type",
                },
            )
            simple = await client.post(
                "/chat", json={"message": "hi"}, headers={"Origin": "https://book.example.org"}
            )

        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://book.example.org"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert simple.headers["access-control-allow-origin"] == "https://book.example.org"
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()

    async def test_other_origin_gets_none(self, sqlite_url: str, app_factory: AppFactory) -> None:
        settings = make_settings(sqlite_url, cors_origins="https://book.example.org")
        async with app_factory(settings) as client:
            preflight = await client.options(
                "/api/v1/chat",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
            )
            simple = await client.post(
                "/chat", json={"message": "hi"}, headers={"Origin": "https://evil.example"}
            )

        assert preflight.status_code == 400
        assert "access-control-allow-origin" not in preflight.headers
        assert "access-control-allow-origin" not in simple.headers

    async def test_errors_carry_cors_headers(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, cors_origins="https://book.example.org")
        async with app_factory(settings) as client:
            response = await client.post(
                "/chat", json={"message": ""}, headers={"Origin": "https://book.example.org"}
            )
        assert response.status_code == 400
        assert response.headers["access-control-allow-origin"] == "https://book.example.org"
