"""The `bookchat` command line: migrate, configuration errors, and a real `serve`."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bookchat.cli import app
from bookchat.core.config import get_settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


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
        assert "is at revision head" in result.output
        tables = {row[0] for row in sqlite3.connect(path).execute("select name from sqlite_master")}
        assert {"chat_sessions", "messages"} <= tables

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
    assert chat.json()["mode"] == "extractive"
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
