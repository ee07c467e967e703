"""The OpenAPI document says what the API does: references resolve, methods are answered as
the schema lists them, and the rules no JSON Schema states (NUL characters) are written down."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bookchat.main import create_app
from tests.conftest import AppFactory, make_settings

DOCUMENT = "/api/v1/content/00000000-0000-0000-0000-000000000009"
KEY = "openapi-admin-key"


def schema() -> dict[str, Any]:
    return create_app(make_settings("sqlite://")).openapi()


def references(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def resolve(document: dict[str, Any], ref: str) -> object:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


class TestDocument:
    def test_every_reference_resolves(self) -> None:
        document = schema()
        refs = set(references(document))
        assert "#/components/schemas/DocumentUpload" in refs
        for ref in refs:
            try:
                resolve(document, ref)
            except KeyError:
                pytest.fail(f"{ref} does not resolve")

    def test_login_documents_every_body_it_reads(self) -> None:
        login = schema()["paths"]["/api/v1/auth/login"]["post"]
        content = login["requestBody"]["content"]
        assert set(content) == {
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "application/json",
        }
        assert content["multipart/form-data"] == content["application/x-www-form-urlencoded"]

    def test_the_nul_rule_is_written_down(self) -> None:
        document = schema()
        assert "NUL" in document["info"]["description"]
        for path in ("/api/v1/auth/login", "/api/v1/content/ingest", "/api/v1/chat"):
            assert "NUL" in document["paths"][path]["post"]["responses"]["400"]["description"]

    def test_document_paths_take_only_ids(self) -> None:
        # The route takes only a UUID (so PUT on a fixed sibling path is a 405); the schema
        # shows the plain template.
        paths = schema()["paths"]
        assert set(paths["/api/v1/content/{document_id}"]) == {"put", "delete"}
        assert not [path for path in paths if ":" in path]


class TestMethods:
    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [
            ("PUT", "/api/v1/content/documents", {"GET"}),
            ("PUT", "/api/v1/content/search", {"GET"}),
            ("PUT", "/api/v1/content/ingest", {"POST"}),
            ("DELETE", "/api/content/documents", {"GET"}),
            ("OPTIONS", DOCUMENT, {"PUT", "DELETE"}),
            ("GET", DOCUMENT, {"PUT", "DELETE"}),
            ("POST", "/api/v1/auth/me", {"GET"}),
        ],
    )
    async def test_405_lists_every_method_of_the_path(
        self, method: str, path: str, allowed: set[str], sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, admin_api_key=KEY)
        async with app_factory(settings) as client:
            response = await client.request(method, path, headers={"X-Admin-Key": KEY})
        assert response.status_code == 405
        assert response.json()["error"]["code"] == "method_not_allowed"
        assert {m.strip() for m in response.headers["allow"].split(",")} == allowed

    async def test_a_malformed_document_id_is_not_found(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, admin_api_key=KEY)
        async with app_factory(settings) as client:
            response = await client.put(
                "/api/v1/content/not-an-id", headers={"X-Admin-Key": KEY}, json={"content": "# x"}
            )
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
