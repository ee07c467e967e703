"""NUL characters: 400 in the error shape everywhere, never PostgreSQL's 500."""

from __future__ import annotations

import pytest

from tests.conftest import AppFactory, make_settings


class TestNulCharacters:
    @pytest.mark.parametrize(
        ("method", "path", "kwargs"),
        [
            ("POST", "/api/v1/chat", {"json": {"message": "a\u0000b"}}),
            ("POST", "/api/v1/chat", {"json": {"message": "ok", "page_context": "\u0000"}}),
            (
                "POST",
                "/api/v1/auth/signup",
                {"json": {"email": "a@b.org", "password": "long enough", "name": "\u0000"}},
            ),
            (
                "POST",
                "/api/v1/auth/login",
                {"data": {"username": "a\u0000@b.org", "password": "x"}},
            ),
            ("GET", "/api/v1/content/documents?module=%00", {}),
            ("GET", "/api/v1/chat/history/%00", {}),
        ],
        ids=["chat", "page-context", "signup", "login-form", "query", "path"],
    )
    async def test_refused_with_400(
        self,
        method: str,
        path: str,
        kwargs: dict[str, object],
        database_url: str,
        app_factory: AppFactory,
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 400
        body = response.json()
        assert body["error"]["code"] == "validation_error"
        assert "NUL" in body["error"]["message"]
        assert body["request_id"] == response.headers["x-request-id"]

    async def test_an_escaped_backslash_is_just_text(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            response = await client.post(
                "/api/v1/chat", json={"message": "What does \\u0000 mean in JSON?"}
            )
        assert response.status_code == 200

    async def test_an_uploaded_file_with_nul_is_refused(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, admin_api_key="k")
        async with app_factory(settings) as client:
            response = await client.post(
                "/api/v1/content/ingest",
                headers={"X-Admin-Key": "k"},
                files=[("files", ("a.md", b"# A\n\nnul\x00here", "text/markdown"))],
            )
        assert response.status_code == 400
        assert "NUL" in response.json()["error"]["message"]
