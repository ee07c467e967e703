"""The content API: admin-only writes, background ingestion jobs, documents, search."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import MINI_BOOK, AppFactory, make_settings
from tests.conftest import ingest_book as ingest_folder

KEY = "admin-test-key"
ADMIN = {"X-Admin-Key": KEY}
MESSAGING = (MINI_BOOK / "01-basics" / "01-messaging.md").read_text()
RUNNING = "---\ntitle: Walking\n---\n\n# Walking\n\n## Running\n\nBoth feet leave the ground.\n"


async def wait_for_job(client: httpx.AsyncClient, job: dict[str, Any]) -> dict[str, Any]:
    """Poll a job until it ends (bounded: a stuck job fails the test instead of hanging)."""
    for _ in range(400):
        response = await client.get(f"/api/v1/content/jobs/{job['id']}", headers=ADMIN)
        body: dict[str, Any] = response.json()
        if body["status"] in ("succeeded", "failed"):
            return body
        await asyncio.sleep(0.025)
    raise AssertionError(f"job {job['id']} did not finish")


async def ingest_book(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("/api/v1/content/ingest", headers=ADMIN)
    assert response.status_code == 202
    return await wait_for_job(client, response.json())


class TestAuthorisation:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", "/api/v1/content/ingest"),
            ("PUT", "/api/v1/content/00000000-0000-0000-0000-000000000001"),
            ("DELETE", "/api/v1/content/00000000-0000-0000-0000-000000000001"),
            ("GET", "/api/v1/content/jobs/00000000-0000-0000-0000-000000000001"),
        ],
    )
    async def test_writes_need_the_admin_key(
        self, method: str, path: str, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url, admin_api_key=KEY)) as client:
            missing = await client.request(method, path, json={"content": "# x"})
            wrong = await client.request(
                method, path, json={"content": "# x"}, headers={"X-Admin-Key": "nope"}
            )
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "unauthorized"
        assert wrong.status_code == 401

    async def test_without_a_configured_key_a_key_is_refused_and_an_admin_must_sign_in(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            keyed = await client.post("/api/v1/content/ingest", headers=ADMIN)
            anonymous = await client.post("/api/v1/content/ingest")
        assert keyed.status_code == 403
        assert "ADMIN_API_KEY is not set" in keyed.json()["error"]["message"]
        # Nobody signed in: 401, since an admin's bearer token would be accepted.
        assert anonymous.status_code == 401
        assert "Sign in with an admin account" in anonymous.json()["error"]["message"]


class TestIngestJobs:
    async def test_turned_off_points_to_the_alternatives(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = make_settings(sqlite_url, admin_api_key=KEY, ingest_jobs_enabled=False)
        await ingest_folder(settings)
        async with app_factory(settings) as client:
            job = await client.post("/api/v1/content/ingest", headers=ADMIN)
            listing = (await client.get("/api/v1/content/documents")).json()
            walking = next(d for d in listing["items"] if d["title"] == "Walking")
            # A page is replaced within the request, so that still works.
            page = await client.put(
                f"/api/v1/content/{walking['id']}", headers=ADMIN, json={"content": RUNNING}
            )
        assert job.status_code == 403
        assert "bookchat ingest" in job.json()["error"]["message"]
        assert page.status_code == 200

    async def test_configured_folder(self, database_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(database_url, admin_api_key=KEY)) as client:
            job = await ingest_book(client)
            again = await ingest_book(client)
            listing = (await client.get("/api/v1/content/documents")).json()

        assert job["status"] == "succeeded"
        assert job["counts"]["added"] == 4
        assert job["counts"]["chunks"] > 4
        assert job["source"] == "folder"
        assert again["counts"]["unchanged"] == 4
        assert again["counts"]["added"] == 0
        assert listing["total"] == 4

    async def test_json_documents(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url, admin_api_key=KEY)) as client:
            response = await client.post(
                "/api/v1/content/ingest",
                headers=ADMIN,
                json={
                    "documents": [{"source_path": "ros/messaging.md", "content": MESSAGING}],
                    "base_url": "https://docs.example.com",
                },
            )
            job = await wait_for_job(client, response.json())
            listing = (await client.get("/api/v1/content/documents")).json()

        assert job["status"] == "succeeded"
        assert job["source"] == "json"
        assert listing["items"][0]["page_url"] == "https://docs.example.com/ros/messaging"

    async def test_multipart_upload(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url, admin_api_key=KEY)) as client:
            response = await client.post(
                "/api/v1/content/ingest",
                headers=ADMIN,
                files=[
                    ("files", ("messaging.md", MESSAGING.encode(), "text/markdown")),
                    ("files", ("walk.mdx", b"# Walk\n\nLegs swing.\n", "text/markdown")),
                ],
            )
            job = await wait_for_job(client, response.json())
            search = (await client.get("/api/v1/content/search", params={"q": "legs swing"})).json()

        assert response.status_code == 202
        assert job["counts"]["added"] == 2
        assert search["results"][0]["source_path"] == "walk.mdx"

    @pytest.mark.parametrize(
        ("files", "status"),
        [
            ([("files", ("notes.txt", b"plain", "text/plain"))], 400),
            ([("files", ("../escape.md", b"# x", "text/markdown"))], 400),
            ([("files", ("big.md", b"#" * 3000, "text/markdown"))], 413),
            ([("other", ("a.md", b"# a", "text/markdown"))], 400),
        ],
        ids=["not-markdown", "traversal", "too-large", "wrong-field"],
    )
    async def test_bad_uploads(
        self,
        files: list[tuple[str, tuple[str, bytes, str]]],
        status: int,
        sqlite_url: str,
        app_factory: AppFactory,
    ) -> None:
        settings = make_settings(sqlite_url, admin_api_key=KEY, max_upload_bytes=2000)
        async with app_factory(settings) as client:
            response = await client.post("/api/v1/content/ingest", headers=ADMIN, files=files)
            listing = (await client.get("/api/v1/content/documents")).json()
        assert response.status_code == status
        assert response.json()["error"]["code"] in ("validation_error", "payload_too_large")
        assert listing["total"] == 0

    @pytest.mark.parametrize(
        "body",
        [
            {"path": "../.."},
            {"path": "/etc"},
            {"path": "no-such-folder"},
            {"documents": [{"source_path": "a.md"}]},
            {"unknown": True},
            {"documents": [{"source_path": "a.md", "content": "---\ntitle: [unclosed\n---\n"}]},
        ],
        ids=["parent", "absolute", "missing", "no-content", "unknown-field", "bad-frontmatter"],
    )
    async def test_bad_json_requests(
        self, body: dict[str, Any], sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url, admin_api_key=KEY)) as client:
            response = await client.post("/api/v1/content/ingest", headers=ADMIN, json=body)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "validation_error"

    async def test_a_document_the_database_refuses_fails_without_driver_text(
        self, clean_postgres_url: str, app_factory: AppFactory
    ) -> None:
        # A page URL past its column's 2,048 characters: PostgreSQL refuses the row.
        long_base = "https://docs.example.com/" + "a" * 2100
        settings = make_settings(clean_postgres_url, admin_api_key=KEY)
        async with app_factory(settings) as client:
            response = await client.post(
                "/api/v1/content/ingest",
                headers=ADMIN,
                json={
                    "documents": [{"source_path": "ros/messaging.md", "content": MESSAGING}],
                    "base_url": long_base,
                },
            )
            job = await wait_for_job(client, response.json())

        assert job["status"] == "failed"
        assert job["counts"]["failed"] == 1
        assert job["error"].startswith("ros/messaging.md: ")
        assert "database" in job["error"]
        for driver_text in ("SQL", "INSERT", "asyncpg", "varying", "Error:", "sqlalche"):
            assert driver_text not in job["error"]

    async def test_unknown_job(self, sqlite_url: str, app_factory: AppFactory) -> None:
        async with app_factory(make_settings(sqlite_url, admin_api_key=KEY)) as client:
            response = await client.get(
                "/api/v1/content/jobs/00000000-0000-0000-0000-000000000009", headers=ADMIN
            )
        assert response.status_code == 404


class TestDocuments:
    async def test_list_read_update_delete(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url, admin_api_key=KEY)) as client:
            await ingest_book(client)
            first_page = (await client.get("/api/v1/content/documents?limit=2")).json()
            second_page = (await client.get("/api/v1/content/documents?limit=2&offset=2")).json()
            motion = (await client.get("/api/v1/content/documents?module=Motion")).json()
            walking_id = motion["items"][0]["id"]
            detail = (await client.get(f"/api/v1/content/documents/{walking_id}")).json()

            updated = await client.put(
                f"/api/v1/content/{walking_id}",
                headers=ADMIN,
                json={"content": RUNNING},
            )
            search = (
                await client.get("/api/v1/content/search", params={"q": "feet leave the ground"})
            ).json()
            deleted = await client.delete(f"/api/v1/content/{walking_id}", headers=ADMIN)
            gone = await client.get(f"/api/v1/content/documents/{walking_id}")
            deleted_again = await client.delete(f"/api/v1/content/{walking_id}", headers=ADMIN)

        assert [d["source_path"] for d in first_page["items"]] == [
            "01-basics/01-messaging.md",
            "01-basics/02-cameras.md",
        ]
        assert first_page["total"] == 4
        assert [d["source_path"] for d in second_page["items"]] == [
            "02-motion/walking.md",
            "index.md",
        ]
        assert motion["total"] == 1
        assert detail["content"].startswith("# Walking")
        assert detail["chunk_count"] == len(detail["chunks"]) > 0
        assert updated.status_code == 200
        assert (
            "Both feet leave the ground." in updated.json()["content"]
        )  # the new text, not the old
        assert updated.json()["page_url"] == "https://example.org/book/motion/walking"
        assert updated.json()["chunks"][-1]["page_url"].endswith("#running")
        assert search["results"][0]["page_url"] == "https://example.org/book/motion/walking#running"
        assert deleted.status_code == 204
        assert gone.status_code == 404
        assert deleted_again.status_code == 404

    async def test_unknown_and_malformed_ids(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url, admin_api_key=KEY)) as client:
            unknown = await client.get(
                "/api/v1/content/documents/00000000-0000-0000-0000-000000000009"
            )
            malformed = await client.get("/api/v1/content/documents/not-a-uuid")
            put_unknown = await client.put(
                "/api/v1/content/00000000-0000-0000-0000-000000000009",
                headers=ADMIN,
                json={"content": "# x"},
            )
        assert unknown.status_code == 404
        assert malformed.status_code == 400
        assert put_unknown.status_code == 404


class TestSearch:
    async def test_ranks_the_right_page_with_its_anchor(
        self, database_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(database_url, admin_api_key=KEY)) as client:
            await ingest_book(client)
            balance = (
                await client.get(
                    "/api/v1/content/search", params={"q": "how does a biped keep balance"}
                )
            ).json()
            depth = (
                await client.get(
                    "/api/v1/content/search", params={"q": "time of flight", "module": "Basics"}
                )
            ).json()
            walking_only = (
                await client.get(
                    "/api/v1/content/search", params={"q": "time of flight", "module": "Motion"}
                )
            ).json()

        assert balance["mode"] == "bm25"
        top = balance["results"][0]
        assert top["page_url"] == "https://example.org/book/motion/walking#balance"
        assert top["section"] == "Balance"
        assert top["heading_path"] == ["Walking", "Balance"]
        assert depth["results"][0]["source_path"] == "01-basics/02-cameras.md"
        assert all(r["module"] == "Motion" for r in walking_only["results"])

    async def test_a_page_title_result_links_to_the_page(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url, admin_api_key=KEY)) as client:
            await ingest_book(client)
            found = (
                await client.get("/api/v1/content/search", params={"q": "tiny book for tests"})
            ).json()
        top = found["results"][0]
        assert top["heading_path"] == ["Mini Book"]
        assert top["page_url"] == "https://example.org/book/"

    @pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": "   "}, {"q": "x", "limit": 0}])
    async def test_bad_queries(
        self, params: dict[str, Any], sqlite_url: str, app_factory: AppFactory
    ) -> None:
        async with app_factory(make_settings(sqlite_url)) as client:
            response = await client.get("/api/v1/content/search", params=params)
        assert response.status_code == 400
