"""The `bookchat` command line: migrate, configuration errors, and a real `serve`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bookchat.cli import app
from bookchat.core.config import get_settings
from tests.conftest import MINI_BOOK
from tests.fakes.qdrant_server import FakeQdrantServer

runner = CliRunner()


# Commands read the environment through the cached get_settings().
pytestmark = pytest.mark.usefixtures("fresh_settings")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class TestMigrate:
    def test_creates_the_schema(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        path = tmp_path / "nested" / "bookchat.db"
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
        result = runner.invoke(app, ["migrate"])

        assert result.exit_code == 0, result.output
        assert "is at revision " in result.output
        assert "is at revision head" not in result.output  # the id, not the word
        tables = {row[0] for row in sqlite3.connect(path).execute("select name from sqlite_master")}
        assert {"chat_sessions", "messages"} <= tables

    def test_goes_back_to_an_older_revision_and_forward_again(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from bookchat.core.migrations import head_revision

        path = tmp_path / "bookchat.db"
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
        head = head_revision()

        def version() -> str | None:
            with sqlite3.connect(path) as db:
                row = db.execute("select version_num from alembic_version").fetchone()
            return row[0] if row else None

        assert runner.invoke(app, ["migrate"]).exit_code == 0
        back = runner.invoke(app, ["migrate", "09b47e46cbd8"])
        assert back.exit_code == 0, back.output
        assert version() == "09b47e46cbd8"
        assert "is at revision 09b47e46cbd8" in back.output
        forward = runner.invoke(app, ["migrate"])
        assert version() == head
        assert f"is at revision {head}" in forward.output
        empty = runner.invoke(app, ["migrate", "base"])
        assert empty.exit_code == 0, empty.output
        assert version() is None
        assert "base (empty)" in empty.output

    def test_unknown_revision_is_a_message(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'b.db'}")
        assert runner.invoke(app, ["migrate"]).exit_code == 0
        result = runner.invoke(app, ["migrate", "nosuchrevision"])
        assert result.exit_code == 1
        assert "Migration failed" in result.output
        assert "Traceback" not in result.output

    def test_unreachable_database_is_a_message(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DATABASE_URL", "postgresql://admin:pw-secret@127.0.0.1:1/db")
        result = runner.invoke(app, ["migrate"])

        assert result.exit_code == 1
        assert "Migration failed" in result.output
        assert "pw-secret" not in result.output

    def test_invalid_configuration_is_a_message(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ENVIRONMENT", "production")
        result = runner.invoke(app, ["migrate"])

        assert result.exit_code == 2
        assert "Invalid configuration" in result.output
        assert "JWT_SECRET" in result.output
        assert "Traceback" not in result.output


def test_migrate_prints_each_revision_once_and_no_alembic_setup_lines(tmp_path: Path) -> None:
    """An operator sees which revisions ran, not Alembic's "Context impl" once per context."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in _setting_names()}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'migrate.db'}")
    result = subprocess.run(
        [sys.executable, "-m", "bookchat.cli", "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    output = result.stdout + result.stderr
    assert "Context impl" not in output
    assert "Will assume" not in output
    assert output.count("Running upgrade  -> ") == 1  # the first revision, once
    assert "is at revision" in output


def test_serve_answers_and_logs_its_profile(tmp_path: Path) -> None:
    """`bookchat serve` in a real process: one profile line per part, then it answers."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in _setting_names()}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}", LOG_FORMAT="json")
    subprocess.run(
        [sys.executable, "-m", "bookchat.cli", "migrate"], env=env, check=True, cwd=tmp_path
    )
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bookchat.cli", "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        chat = httpx.post(f"{base}/chat", json={"message": "What is ROS 2?"}, timeout=10)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=15)

    assert health.json() == {"status": "healthy"}
    assert chat.status_code == 200
    assert chat.json()["mode"] == "no_context"  # nothing ingested in this store
    assert '"profile.database"' in output
    assert "sqlite" in output
    assert '"profile.llm"' in output
    assert "not_migrated" not in output
    # Readers' words stay out of the logs at INFO.
    assert "What is ROS 2?" not in output


def _setting_names() -> set[str]:
    from bookchat.core.config import Settings

    return {name.upper() for name in Settings.model_fields}


def test_serve_on_an_unmigrated_database_says_what_to_run(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k.upper() not in _setting_names()}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}", LOG_FORMAT="json")
    code = (
        "import asyncio\n"
        "from asgi_lifespan import LifespanManager\n"
        "from bookchat.main import create_app\n"
        "async def main():\n"
        "    async with LifespanManager(create_app()):\n"
        "        pass\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert '"database.not_migrated"' in result.stderr
    assert "bookchat migrate" in result.stderr


class TestBookCommands:
    """ingest, search, reindex and eval as an operator runs them."""

    @pytest.fixture
    def book_env(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
        env = {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
            "QDRANT_PATH": str(tmp_path / "qdrant"),
            "EMBEDDINGS_PROVIDER": "none",
            "BOOK_BASE_URL": "https://example.org/book",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert runner.invoke(app, ["migrate"]).exit_code == 0
        return env

    def test_ask_answers_with_sources_and_continues_the_conversation(
        self, book_env: dict[str, str]
    ) -> None:
        runner.invoke(app, ["ingest", str(MINI_BOOK)])
        first = runner.invoke(app, ["ask", "How does a biped keep its balance?"])
        session = first.stderr.rsplit("--session ", 1)[-1].strip(" )\n")
        follow_up = runner.invoke(app, ["ask", "And when it walks?", "--session", session])
        empty = runner.invoke(app, ["ask", "   "])

        assert first.exit_code == 0, first.output
        assert "Sources:" in first.stdout
        assert "https://example.org/book/" in first.stdout
        assert "#" in first.stdout.split("Sources:")[1]  # links go to the heading
        assert "(rag, model extractive; continue with --session" in first.stderr
        assert follow_up.exit_code == 0, follow_up.output
        assert f"--session {session})" in follow_up.stderr  # the same conversation
        assert empty.exit_code == 2
        assert "The question is empty." in empty.stderr

    def test_ingest_search_and_reingest(self, book_env: dict[str, str]) -> None:
        first = runner.invoke(app, ["ingest", str(MINI_BOOK)])
        found = runner.invoke(app, ["search", "how does a biped keep balance", "--limit", "2"])
        again = runner.invoke(app, ["ingest", str(MINI_BOOK)])
        skipped = runner.invoke(app, ["ingest", str(MINI_BOOK), "--if-empty"])

        assert first.exit_code == 0, first.output
        assert "4 added, 0 updated, 0 unchanged, 0 removed, 0 failed" in first.output
        assert found.exit_code == 0, found.output
        assert found.output.splitlines()[0].endswith("Walking > Balance")
        assert "https://example.org/book/motion/walking#balance" in found.output
        assert "Nothing changed: 4 documents already up to date" in again.output
        assert "already has 4 documents" in skipped.output
        assert "repaired" not in skipped.output

    def test_if_empty_repairs_a_lost_index(self, book_env: dict[str, str]) -> None:
        runner.invoke(app, ["ingest", str(MINI_BOOK)])
        shutil.rmtree(book_env["QDRANT_PATH"])
        result = runner.invoke(app, ["ingest", str(MINI_BOOK), "--if-empty"])
        found = runner.invoke(app, ["search", "balance"])
        assert "index repaired" in result.output
        assert "motion/walking#balance" in found.output

    def test_prune(self, book_env: dict[str, str], tmp_path: Path) -> None:
        book = tmp_path / "book"
        shutil.copytree(MINI_BOOK, book)
        runner.invoke(app, ["ingest", str(book)])
        (book / "02-motion" / "walking.md").unlink()
        result = runner.invoke(app, ["ingest", str(book), "--prune"])
        assert "0 added, 0 updated, 3 unchanged, 1 removed" in result.output

    def test_a_reader_that_leaves_the_pipe_is_not_an_error(
        self, book_env: dict[str, str], tmp_path: Path
    ) -> None:
        runner.invoke(app, ["ingest", str(MINI_BOOK)])
        env = {k: v for k, v in os.environ.items() if k.upper() not in _setting_names()}
        search = subprocess.Popen(
            [sys.executable, "-m", "bookchat.cli", "search", "balance"],
            env=env | book_env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert search.stdout is not None
        search.stdout.close()  # like `| head -0`: gone before the first line is written
        _, errors = search.communicate(timeout=60)
        assert search.returncode == 0, errors
        assert "database" not in errors
        assert "Traceback" not in errors

    def test_search_before_ingest_says_what_to_do(self, book_env: dict[str, str]) -> None:
        result = runner.invoke(app, ["search", "balance"])
        assert result.exit_code == 1
        assert "bookchat ingest" in result.output

    def test_reindex_rebuilds_from_the_database(self, book_env: dict[str, str]) -> None:
        runner.invoke(app, ["ingest", str(MINI_BOOK)])
        shutil.rmtree(book_env["QDRANT_PATH"])
        empty = runner.invoke(app, ["search", "balance"])
        rebuilt = runner.invoke(app, ["reindex"])
        found = runner.invoke(app, ["search", "balance"])

        assert empty.exit_code == 1
        assert rebuilt.exit_code == 0, rebuilt.output
        assert "bm25 retrieval" in rebuilt.output
        assert "motion/walking#balance" in found.output

    def test_locked_store_is_a_message(self, book_env: dict[str, str]) -> None:
        """Another process (as a running `bookchat serve` would) holds the embedded store."""
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time\n"
                "from qdrant_client import QdrantClient\n"
                f"client = QdrantClient(path={book_env['QDRANT_PATH']!r})\n"
                "print('holding', flush=True)\n"
                "time.sleep(60)\n",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "holding"
            result = runner.invoke(app, ["ingest", str(MINI_BOOK)])
        finally:
            holder.kill()
            holder.wait(timeout=10)
        assert result.exit_code == 1
        assert "in use by another process" in result.output
        assert "POST /api/v1/content/ingest" in result.output
        assert "Traceback" not in result.output

    def test_a_qdrant_outage_is_a_message(
        self, book_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        with FakeQdrantServer() as qdrant:
            monkeypatch.setenv("QDRANT_URL", qdrant.url)
            get_settings.cache_clear()  # `migrate` (book_env) read the settings without it
            ingested = runner.invoke(app, ["ingest", str(MINI_BOOK)])
            qdrant.fail("disconnect")
            result = runner.invoke(app, ["search", "balance"])
        assert ingested.exit_code == 0, ingested.output
        assert result.exit_code == 1
        assert "The search index is unavailable right now" in result.output
        assert "Traceback" not in result.output

    def test_missing_folder(self, book_env: dict[str, str], tmp_path: Path) -> None:
        result = runner.invoke(app, ["ingest", str(tmp_path / "nope")])
        assert result.exit_code == 2
        assert "is not a folder" in result.output

    def test_eval_on_the_sample_book(self, book_env: dict[str, str], tmp_path: Path) -> None:
        """A few lines of the sample book's question set: one of each kind, to stay fast."""
        sample = Path(__file__).parents[1] / "benchmarks" / "questions" / "sample-book.jsonl"
        chosen = {"s013", "s041", "off01", "t01", "sel01", "sel06"}
        lines = [
            line for line in sample.read_text().splitlines() if json.loads(line)["id"] in chosen
        ]
        questions = tmp_path / "questions.jsonl"
        questions.write_text("\n".join(lines) + "\n")
        output = tmp_path / "scores.json"
        book = Path(__file__).parents[1] / "sample_book"

        result = runner.invoke(
            app, ["eval", str(questions), "--docs", str(book), "--output", str(output)]
        )

        assert result.exit_code == 0, result.output
        table = result.output
        assert "6 questions; retrieval bm25 (embedder: none); model extractive" in table
        assert "  mode       hit@1   hit@5     MRR\n  bm25 " in table
        for metric in (
            "refusal precision",
            "refusal recall",
            "answerable refused",
            "off-topic refused",
            "selection says no",
            "citations valid",
            "citation number gaps",
            "selection isolated",
            "latency p50 / p95",
        ):
            assert f"\n  {metric} " in table
        scores = json.loads(output.read_text())
        assert [s["mode"] for s in scores["retrieval"]] == ["bm25"]
        assert scores["retrieval"][0]["questions"] == 2  # first questions with pages
        assert scores["answers"]["off_topic_refused"]["of"] == 2  # off01 and the switch t01
        assert scores["answers"]["selections_isolated"]["of"] == 2
        assert [q["id"] for q in scores["questions"]] == [
            "s013",
            "s041",
            "off01",
            "t01",
            "sel01",
            "sel06",
        ]
        assert scores["setup"]["documents"] == 11  # the draft is left out

    def test_eval_exits_1_when_a_requirement_is_not_met(
        self, book_env: dict[str, str], tmp_path: Path
    ) -> None:
        questions = tmp_path / "questions.jsonl"
        questions.write_text(
            '{"id": "1", "question": "What is the zero moment point?",'
            ' "pages": ["02-motion/walking.md"]}\n'
            '{"id": "2", "question": "What is the capital of France?", "pages": []}\n'
        )
        docs = ["--docs", str(MINI_BOOK)]

        result = runner.invoke(
            app,
            [
                "eval", str(questions), *docs,
                "--require", "off_topic_refused>=1",
                "--require", "answerable_refused<=0",
                "--require", "hit_at_1>=1.5",
                "--require", "selections_isolated>=1",
            ],
        )  # fmt: skip
        typo = runner.invoke(app, ["eval", str(questions), *docs, "--require", "hit@1>=0.8"])
        unknown = runner.invoke(app, ["eval", str(questions), *docs, "--require", "recall>=1"])

        assert result.exit_code == 1, result.output
        assert result.stderr.splitlines()[-3:] == [
            "Requirements not met:",
            "  hit_at_1>=1.5: measured 1.000",
            "  selections_isolated>=1: not measured by this question set",
        ]
        assert typo.exit_code == unknown.exit_code == 2
        assert "'hit@1>=0.8' is not METRIC>=NUMBER or METRIC<=NUMBER" in typo.output
        assert "unknown metric 'recall'; one of: hit_at_1, hit_at_k, mrr," in unknown.output

    def test_eval_rejects_a_malformed_question_file(
        self, book_env: dict[str, str], tmp_path: Path
    ) -> None:
        questions = tmp_path / "questions.jsonl"
        questions.write_text('{"id": "1"}\n')
        result = runner.invoke(app, ["eval", str(questions), "--docs", str(MINI_BOOK)])
        assert result.exit_code == 1
        assert "questions.jsonl:1" in result.output
