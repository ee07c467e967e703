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


ADMIN_KEY = "nul-admin-key"
BOUNDARY = "nul-test-boundary"


def multipart(*parts: tuple[str, str | None, bytes]) -> tuple[dict[str, str], bytes]:
    """A multipart body written by hand: (name, filename, data) parts, exactly as sent."""
    chunks = []
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        chunks.append(
            f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode("latin-1")
            + data
            + b"\r\n"
        )
    body = b"".join(chunks) + f"--{BOUNDARY}--\r\n".encode()
    return {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}, body


class TestNulInForms:
    """Every form field, urlencoded or multipart: 400 naming the field, nothing stored."""

    @pytest.mark.parametrize(
        ("path", "parts", "field"),
        [
            (
                "/api/v1/auth/login",
                [("username", None, b"a\x00@b.org"), ("password", None, b"secret")],
                "username",
            ),
            (
                "/api/v1/auth/login",
                [("username", None, b"a@b.org"), ("password", None, b"sec\x00ret")],
                "password",
            ),
            (
                "/api/v1/content/ingest",
                [("files", "a.md", b"# A\n\nhello"), ("base_url", None, b"https://x\x00y")],
                "base_url",
            ),
            (
                "/api/v1/content/ingest",
                [("files", "a\x00b.md", b"# A\n\nhello")],
                "files",
            ),
        ],
        ids=["login-username", "login-password", "ingest-base-url", "ingest-file-name"],
    )
    async def test_multipart_field(
        self,
        path: str,
        parts: list[tuple[str, str | None, bytes]],
        field: str,
        database_url: str,
        app_factory: AppFactory,
    ) -> None:
        headers, body = multipart(*parts)
        settings = make_settings(database_url, admin_api_key=ADMIN_KEY)
        async with app_factory(settings) as client:
            response = await client.post(
                path, content=body, headers={**headers, "X-Admin-Key": ADMIN_KEY}
            )
            documents = (await client.get("/api/v1/content/documents")).json()

        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert error["message"].startswith(f"{field}: ")
        assert "NUL" in error["message"]
        assert error["details"] == [
            {"loc": ["body", field], "msg": error["message"][len(field) + 2 :], "type": "nul"}
        ]
        assert documents["total"] == 0

    async def test_urlencoded_field_is_named(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url)) as client:
            response = await client.post(
                "/api/v1/auth/login", data={"username": "a@b.org", "password": "x\u0000y"}
            )
        assert response.status_code == 400
        assert response.json()["error"]["details"][0]["loc"] == ["body", "password"]

    async def test_a_percent_sign_in_a_multipart_field_is_just_text(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        # Multipart values are not percent-decoded: "%00" there is three characters of text.
        headers, body = multipart(("username", None, b"a%00@b.org"), ("password", None, b"x"))
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.post("/api/v1/auth/login", content=body, headers=headers)
        assert response.status_code == 401
