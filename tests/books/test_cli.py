"""`bookchat books` and the `--book` of `ingest`, `search` and `ask`, as an operator runs them.

The default book is the mini book (`https://example.org/book`); the second, `robots`, is the
publishers book under its own site."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bookchat.books.models import Book
from bookchat.cli import app
from bookchat.content.models import Document
from tests.conftest import MINI_BOOK, AppFactory, make_settings
from tests.factories import PUBLISHERS_BOOK, stored
from tests.test_startup import command_env, loaded_by

runner = CliRunner()

# Commands read the environment through the cached get_settings().
pytestmark = pytest.mark.usefixtures("fresh_settings")

DEFAULT_URL = "https://example.org/book"
ROBOTS_URL = "https://robots.example.org/docs"
ROBOTS_API = "/api/v1/books/robots"
ADD_ROBOTS = ["books", "add", "robots", "--title", "Robots Handbook", "--base-url", ROBOTS_URL]
QUESTION = "How does a publisher send messages on a topic?"


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated SQLite file and an embedded Qdrant folder the commands use; the URL."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {
        "DATABASE_URL": url,
        "QDRANT_PATH": str(tmp_path / "qdrant"),
        "EMBEDDINGS_PROVIDER": "none",
        "BOOK_DOCS_DIR": str(MINI_BOOK),
        "BOOK_BASE_URL": DEFAULT_URL,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    return url


def documents_of(url: str, book: str) -> list[Document]:
    return asyncio.run(stored(url, Document, book=book, order_by=(Document.source_path,)))


def books_in(url: str) -> list[str]:
    return [row.slug for row in asyncio.run(stored(url, Book, order_by=(Book.slug,)))]


class TestBooksAdd:
    def test_adds_a_book_with_its_settings(self, database: str) -> None:
        result = runner.invoke(
            app,
            [
                *ADD_ROBOTS,
                "--docs",
                str(PUBLISHERS_BOOK),
                "--persona",
                "Speak to first-year students.",
                "--origin",
                "https://robots.example.org/",
                "--origin",
                "http://localhost:3000",
            ],
        )

        assert result.exit_code == 0, result.output
        assert "Added the book 'robots' (Robots Handbook)" in result.stdout
        assert "bookchat ingest --book robots`" in result.stdout
        [row] = asyncio.run(stored(database, Book, slug="robots"))
        assert row.title == "Robots Handbook"
        assert row.base_url == ROBOTS_URL
        assert row.docs_dir == str(PUBLISHERS_BOOK.resolve())
        assert row.persona == "Speak to first-year students."
        assert row.cors_origins == ["https://robots.example.org", "http://localhost:3000"]
        assert row.rate_limit_chat is None  # the service's RATE_LIMIT_CHAT

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            (["Robots", "--title", "T", "--base-url", ROBOTS_URL], "'Robots' is not a book slug"),
            (["x-", "--title", "T", "--base-url", ROBOTS_URL], "is not a book slug"),
            (["robots", "--title", "", "--base-url", ROBOTS_URL], "Invalid --title"),
            (["robots", "--title", "T", "--base-url", "not a url"], "Invalid --base-url"),
            (
                ["robots", "--title", "T", "--base-url", ROBOTS_URL, "--origin", "https://x.org/a"],
                "Invalid --origin",
            ),
            (
                ["robots", "--title", "T", "--base-url", ROBOTS_URL, "--docs", "/no/such/folder"],
                "/no/such/folder is not a folder",
            ),
        ],
        ids=["uppercase", "trailing-dash", "empty-title", "bad-url", "origin-path", "no-folder"],
    )
    def test_bad_input_exits_2_and_adds_nothing(
        self, arguments: list[str], message: str, database: str
    ) -> None:
        result = runner.invoke(app, ["books", "add", *arguments])

        assert result.exit_code == 2, result.output
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback
        assert books_in(database) == ["default"]

    @pytest.mark.parametrize("slug", ["robots", "default"])
    def test_a_taken_slug_exits_1(self, slug: str, database: str) -> None:
        runner.invoke(app, ADD_ROBOTS)
        result = runner.invoke(
            app, ["books", "add", slug, "--title", "Other", "--base-url", "https://x.org"]
        )

        assert result.exit_code == 1
        assert f"A book '{slug}' already exists." in result.stderr
        [row] = asyncio.run(stored(database, Book, slug="robots"))
        assert row.title == "Robots Handbook"


class TestBooksList:
    def test_each_book_with_its_site_and_documents(self, database: str) -> None:
        runner.invoke(app, ADD_ROBOTS)
        runner.invoke(app, ["books", "add", "empty", "--title", "E", "--base-url", "https://e.org"])
        runner.invoke(app, ["ingest", "--book", "robots", str(PUBLISHERS_BOOK)])
        runner.invoke(app, ["ingest"])
        result = runner.invoke(app, ["books", "list"])

        assert result.exit_code == 0, result.output
        lines = [line.split() for line in result.stdout.splitlines()]
        assert lines[0] == ["SLUG", "TITLE", "BASE", "URL", "DOCUMENTS"]
        assert [(line[0], line[-2], line[-1]) for line in lines[1:]] == [
            ("default", DEFAULT_URL, "4"),
            ("empty", "https://e.org/", "0"),
            ("robots", ROBOTS_URL, "5"),
        ]
        assert "Robots Handbook" in result.stdout


class TestBooksRemove:
    def test_removes_the_book_and_leaves_the_default_book_whole(self, database: str) -> None:
        runner.invoke(app, ADD_ROBOTS)
        runner.invoke(app, ["ingest", "--book", "robots", str(PUBLISHERS_BOOK)])
        runner.invoke(app, ["ingest"])
        asked = runner.invoke(app, ["ask", QUESTION, "--book", "robots"])
        result = runner.invoke(app, ["books", "remove", "robots", "--yes"])
        search = runner.invoke(app, ["search", "publisher", "--book", "robots"])
        default_search = runner.invoke(app, ["search", "publisher"])

        assert asked.exit_code == 0, asked.output
        assert result.exit_code == 0, result.output
        assert "Removed the book 'robots' and its 5 documents." in result.stdout
        assert books_in(database) == ["default"]
        assert documents_of(database, "robots") == []
        assert len(documents_of(database, "default")) == 4
        assert search.exit_code == 1
        assert "There is no book 'robots'" in search.stderr
        assert default_search.exit_code == 0, default_search.output
        assert f"{DEFAULT_URL}/" in default_search.stdout
        assert ROBOTS_URL not in default_search.stdout

    def test_asks_first(self, database: str) -> None:
        runner.invoke(app, ADD_ROBOTS)
        declined = runner.invoke(app, ["books", "remove", "robots"], input="n\n")
        kept = books_in(database)
        accepted = runner.invoke(app, ["books", "remove", "robots"], input="y\n")

        assert "Remove the book 'robots' (Robots Handbook) with its 0 documents" in declined.output
        assert declined.exit_code == 1
        assert "Nothing removed." in declined.stderr
        assert kept == ["default", "robots"]
        assert accepted.exit_code == 0, accepted.output
        assert books_in(database) == ["default"]

    @pytest.mark.parametrize(
        ("slug", "code", "message"),
        [
            ("nothing", 1, "There is no book 'nothing'"),
            ("default", 2, "cannot be removed"),
            ("Not A Slug", 2, "is not a book slug"),
        ],
        ids=["missing", "default", "bad-slug"],
    )
    def test_refusals(self, slug: str, code: int, message: str, database: str) -> None:
        result = runner.invoke(app, ["books", "remove", slug, "--yes"])

        assert result.exit_code == code, result.output
        assert message in result.stderr
        assert books_in(database) == ["default"]


class TestIngestIntoABook:
    def test_puts_the_pages_into_that_book_only(
        self, database: str, tmp_path: Path, app_factory: AppFactory
    ) -> None:
        runner.invoke(app, ADD_ROBOTS)
        result = runner.invoke(app, ["ingest", str(PUBLISHERS_BOOK), "--book", "robots"])
        again = runner.invoke(app, ["ingest", str(PUBLISHERS_BOOK), "--book", "robots"])
        skipped = runner.invoke(
            app, ["ingest", str(PUBLISHERS_BOOK), "--book", "robots", "--if-empty"]
        )

        assert result.exit_code == 0, result.output
        assert "5 added, 0 updated, 0 unchanged, 0 removed, 0 failed" in result.stderr
        assert again.exit_code == 0, again.output
        assert "Nothing changed: 5 documents already up to date" in again.stderr
        assert "The book 'robots' already has 5 documents; nothing to ingest." in skipped.stderr
        robots = documents_of(database, "robots")
        assert len(robots) == 5
        assert all(d.page_url.startswith(f"{ROBOTS_URL}/") for d in robots)
        assert documents_of(database, "default") == []

        async def search() -> tuple[httpx.Response, httpx.Response]:
            settings = make_settings(database, qdrant_path=str(tmp_path / "qdrant"))
            async with app_factory(settings) as client:
                scoped = await client.get(f"{ROBOTS_API}/content/search", params={"q": QUESTION})
                unscoped = await client.get("/api/v1/content/search", params={"q": QUESTION})
            return scoped, unscoped

        scoped, unscoped = asyncio.run(search())
        assert scoped.status_code == 200
        assert scoped.json()["results"]
        assert all(r["page_url"].startswith(ROBOTS_URL) for r in scoped.json()["results"])
        assert unscoped.status_code == 200
        assert unscoped.json()["results"] == []

    def test_the_book_s_folder_and_site_by_default(self, database: str) -> None:
        runner.invoke(app, [*ADD_ROBOTS, "--docs", str(PUBLISHERS_BOOK)])
        result = runner.invoke(app, ["ingest", "--book", "robots"])

        assert result.exit_code == 0, result.output
        assert "5 added" in result.stderr
        robots = documents_of(database, "robots")
        assert [d.source_path for d in robots] == sorted(p.name for p in PUBLISHERS_BOOK.iterdir())
        assert all(d.page_url.startswith(f"{ROBOTS_URL}/") for d in robots)

    def test_the_default_book_is_ingested_as_before(self, database: str) -> None:
        """`make run` runs `bookchat ingest --if-empty`: another book's pages do not make the
        default book look ingested."""
        runner.invoke(app, ADD_ROBOTS)
        runner.invoke(app, ["ingest", str(PUBLISHERS_BOOK), "--book", "robots"])
        first = runner.invoke(app, ["ingest", "--if-empty"])
        again = runner.invoke(app, ["ingest", "--if-empty"])

        assert first.exit_code == 0, first.output
        assert "4 added" in first.stderr
        assert "The book already has 4 documents; nothing to ingest." in again.stderr
        assert all(d.page_url.startswith(DEFAULT_URL) for d in documents_of(database, "default"))
        assert len(documents_of(database, "robots")) == 5

    def test_an_unknown_book_says_how_to_add_it(self, database: str) -> None:
        result = runner.invoke(app, ["ingest", str(PUBLISHERS_BOOK), "--book", "robots"])

        assert result.exit_code == 1
        assert "There is no book 'robots'" in result.stderr
        assert "bookchat books add robots --title TITLE --base-url URL" in result.stderr
        assert "Traceback" not in result.output
        assert documents_of(database, "robots") == []

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            (["--book", "robots"], "The book 'robots' has no docs folder"),
            (["--book", "robots", "/no/such/folder"], "/no/such/folder is not a folder"),
            (["--book", "Robots!"], "'Robots!' is not a book slug"),
        ],
        ids=["no-docs-folder", "missing-folder", "bad-slug"],
    )
    def test_bad_input_exits_2(self, arguments: list[str], message: str, database: str) -> None:
        runner.invoke(app, ADD_ROBOTS)
        result = runner.invoke(app, ["ingest", *arguments])

        assert result.exit_code == 2, result.output
        assert message in result.stderr

    def test_an_unchanged_book_is_told_from_the_stores_alone(self, tmp_path: Path) -> None:
        """The second ingestion of a book decides without the container, as the default
        book's does (tests/test_startup.py)."""
        env = command_env(tmp_path, EMBEDDINGS_PROVIDER="none")
        loaded_by(env, tmp_path, "migrate")
        loaded_by(env, tmp_path, *ADD_ROBOTS)
        loaded_by(env, tmp_path, "ingest", str(PUBLISHERS_BOOK), "--book", "robots")
        again, modules = loaded_by(
            env, tmp_path, "ingest", str(PUBLISHERS_BOOK), "--book", "robots"
        )

        assert "Nothing changed: 5 documents already up to date" in again
        assert not {m for m in modules if m.startswith(("bookchat.chat", "bookchat.accounts"))}
        assert not {"fastapi", "redis"} & {m.split(".")[0] for m in modules}


class TestSearchAndAskABook:
    def test_search_and_ask_read_the_book_named(self, database: str) -> None:
        runner.invoke(app, ADD_ROBOTS)
        runner.invoke(app, ["ingest", str(PUBLISHERS_BOOK), "--book", "robots"])
        found = runner.invoke(app, ["search", "publisher topic", "--book", "robots"])
        default = runner.invoke(app, ["search", "publisher topic"])
        asked = runner.invoke(app, ["ask", QUESTION, "--book", "robots"])

        assert found.exit_code == 0, found.output
        assert f"{ROBOTS_URL}/" in found.stdout
        assert default.exit_code == 1
        assert "Has the book been ingested? (bookchat ingest)" in default.stdout
        assert asked.exit_code == 0, asked.output
        assert "Sources:" in asked.stdout
        assert f"{ROBOTS_URL}/" in asked.stdout
        assert DEFAULT_URL not in asked.stdout

    @pytest.mark.parametrize("command", [["search", "publisher"], ["ask", QUESTION]])
    @pytest.mark.parametrize(
        ("book", "code", "message"),
        [
            ("robots", 1, "There is no book 'robots': add it with `bookchat books add robots"),
            ("Not/A/Slug", 2, "is not a book slug"),
        ],
        ids=["unknown", "bad-slug"],
    )
    def test_an_unknown_book_fails_clearly(
        self, command: list[str], book: str, code: int, message: str, database: str
    ) -> None:
        result = runner.invoke(app, [*command, "--book", book])

        assert result.exit_code == code, result.output
        assert message in result.stderr
        assert "Traceback" not in result.output

    def test_an_empty_book_says_how_to_ingest_it(self, database: str) -> None:
        runner.invoke(app, ADD_ROBOTS)
        result = runner.invoke(app, ["search", "publisher", "--book", "robots"])

        assert result.exit_code == 1
        assert "(bookchat ingest --book robots)" in result.stdout
