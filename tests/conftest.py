"""Shared fixtures: databases (SQLite and the real PostgreSQL), the fake OpenAI server, apps."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    asynccontextmanager,
    closing,
    contextmanager,
)
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis
import uvicorn
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from fastapi.dependencies import models as fastapi_dependency_models
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bookchat.container import open_container
from bookchat.content.loader import load_folder
from bookchat.core.config import Settings, get_settings
from bookchat.core.db import Base, create_engine
from bookchat.core.migrations import upgrade
from bookchat.main import create_app
from bookchat.tables import load_all_tables
from tests.fakes.anthropic_server import FakeAnthropicServer, system_of
from tests.fakes.openai_server import FakeOpenAIServer
from tests.prompt_layout import question_of

TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("BOOKCHAT_REQUIRE_SERVICES") == "1"

# Settings a developer may have exported; tests must not pick them up.
_SETTING_NAMES = [name.upper() for name in Settings.model_fields]

load_all_tables()


# Marks for `make test-fast` (`-m "not slow and not postgres and not redis"`), given by where a
# test lives or which services it asks for, so no test has to remember to carry them.
SLOW_MODULES = (
    "tests/web/test_widget_browser.py",
    "tests/web/test_admin_page_browser.py",
    "tests/web/test_widget_embed.py",
    "tests/test_serve.py",
    "tests/resilience/",
)
POSTGRES_FIXTURES = {"postgres_server_url", "postgres_url", "clean_postgres_url"}
REDIS_FIXTURES = {"redis_server_url", "redis_url", "private_redis"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    root = Path(__file__).parent.parent
    for item in items:
        path = item.path.relative_to(root).as_posix()
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = list(callspec.params.values()) if callspec is not None else []
        if path.startswith(SLOW_MODULES):
            item.add_marker(pytest.mark.slow)
        if fixtures & POSTGRES_FIXTURES or "postgresql" in params:
            item.add_marker(pytest.mark.postgres)
        if fixtures & REDIS_FIXTURES or "redis" in params:
            item.add_marker(pytest.mark.redis)


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    """`get_settings()` reads this test's environment, and forgets it afterwards."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def load_module(path: Path) -> ModuleType:
    """Import a file that is not in a package (the Vercel entry, the docs script) by its path."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)


# FastAPI keeps, per dependency callable, whether it is a coroutine or a generator in LRU caches
# of 4096 entries (fastapi/dependencies/models.py). A server has one app and a few hundred
# callables; this suite builds an app per test, and the caches kept each one alive through its
# closures (about a hundred apps, with their containers: 2 GB per worker, and garbage collection
# slow enough to stall the suite). Emptied after each test; nothing to do if FastAPI drops them.
_FASTAPI_CALLABLE_CACHES = tuple(
    cache
    for name in (
        "_is_gen_callable_cached",
        "_is_async_gen_callable_cached",
        "_is_coroutine_callable_cached",
    )
    if callable(cache := getattr(fastapi_dependency_models, name, None))
    and hasattr(cache, "cache_clear")
)


@pytest.fixture(autouse=True)
def _forget_finished_apps() -> Iterator[None]:
    yield
    for cache in _FASTAPI_CALLABLE_CACHES:
        cache.cache_clear()


def service_unavailable(what: str, reason: str, remedy: str) -> None:
    """Skip with the reason and the remedy, or fail when CI requires the real services."""
    message = f"{what} is not reachable ({reason})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}; BOOKCHAT_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(f"{message}; {remedy} to run this test")


def plain_dsn(url: str) -> str:
    """A SQLAlchemy URL as a DSN asyncpg accepts."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


MINI_BOOK = Path(__file__).parent / "fixtures" / "mini_book"
_stores_root: Path | None = None


@pytest.fixture(autouse=True, scope="session")
def _stores(tmp_path_factory: pytest.TempPathFactory) -> None:
    global _stores_root
    _stores_root = tmp_path_factory.mktemp("qdrant")


def free_port() -> int:
    """A loopback port that is free now (for a server whose settings must name its own URL)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def scratch_dir() -> str:
    """A new empty folder for this test run (embedded Qdrant stores)."""
    return tempfile.mkdtemp(dir=_stores_root)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for a test: offline providers, BM25-only, a fresh embedded Qdrant store."""
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "llm_provider": "extractive",
        "embeddings_provider": "none",
        "qdrant_path": scratch_dir(),
        "book_docs_dir": str(MINI_BOOK),
        "book_base_url": "https://example.org/book",
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


# --- databases -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy (faster than migrating every time)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


async def _ping_postgres(url: str) -> None:
    connection = await asyncpg.connect(plain_dsn(url), timeout=3)
    await connection.close()


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """The admin URL of the test PostgreSQL server (skips or fails when it is down)."""
    try:
        asyncio.run(_ping_postgres(TEST_DATABASE_URL))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        service_unavailable(
            "PostgreSQL",
            f"{type(exc).__name__}: {exc}",
            "start it or point TEST_DATABASE_URL at a server",
        )
    return TEST_DATABASE_URL


@asynccontextmanager
async def scratch_postgres(server_url: str) -> AsyncIterator[str]:
    """A new empty database on the test server, dropped afterwards."""
    name = f"bookchat_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(plain_dsn(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def postgres_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A migrated PostgreSQL database for this test run."""
    async with scratch_postgres(postgres_server_url) as url:
        await asyncio.to_thread(upgrade, url)
        yield url


async def truncate_all(url: str) -> None:
    """Empty every table, leaving what the migrations put there: the default book."""
    engine = create_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} CASCADE"))
        await connection.execute(
            text(
                "INSERT INTO books (slug, cors_origins, created_at, updated_at) "
                "VALUES ('default', '[]', now(), now())"
            )
        )
    await engine.dispose()


@pytest.fixture
async def clean_postgres_url(postgres_url: str) -> AsyncIterator[str]:
    """The run's PostgreSQL database, emptied after the test."""
    yield postgres_url
    await truncate_all(postgres_url)


@pytest.fixture
async def scratch_postgres_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database of its own, dropped after the test (for migrations)."""
    async with scratch_postgres(postgres_server_url) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new database with no tables at all: a SQLite file, then a scratch PostgreSQL one."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    url: str = request.getfixturevalue("scratch_postgres_url")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty database: SQLite, then the real PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "bookchat.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("clean_postgres_url")
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty SQLite database, for tests that are not about the dialect."""
    path = tmp_path / "bookchat.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


# --- the fake language model ------------------------------------------------------------------


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    """The fake OpenAI-compatible server, with clean state for this test (what a previous test's
    clients still send is neither recorded nor given this test's faults)."""
    fake_openai_server.reset(retire_connections=True)
    fake_openai_server.reply = book_reply
    yield fake_openai_server
    fake_openai_server.reset()


def openai_settings(fake: FakeOpenAIServer) -> dict[str, Any]:
    """Settings that point the real SDK at the fake server."""
    return {
        "llm_provider": "openai",
        "openai_api_key": "sk-test-key",
        "openai_base_url": fake.base_url,
        "llm_max_retries": 0,
        "llm_timeout_seconds": 2.0,
        # The fake answers `dimensions` for text-embedding-3-* models; small vectors are fast.
        "embeddings_dimensions": 16,
    }


REWRITE_MARKER = "standalone search query"


def book_reply(request: dict[str, Any]) -> str:
    """The fake model's replies in chat tests: follow-up rewrites get an in-book query, answers
    echo the question (so tests can tell which question was answered)."""
    messages = request["messages"]
    if REWRITE_MARKER in messages[0]["content"]:
        return "publisher subscriber topic"
    return f"Fake answer to: {question_of(messages[-1]['content'])}"


@pytest.fixture(scope="session")
def fake_anthropic_server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as server:
        yield server


@pytest.fixture
def fake_anthropic(fake_anthropic_server: FakeAnthropicServer) -> Iterator[FakeAnthropicServer]:
    """The fake Anthropic Messages API, with clean state for this test (see `fake_openai`)."""
    fake_anthropic_server.reset(retire_connections=True)
    fake_anthropic_server.reply = claude_book_reply
    yield fake_anthropic_server
    fake_anthropic_server.reset()


def anthropic_settings(fake: FakeAnthropicServer) -> dict[str, Any]:
    """Settings that point the real `anthropic` SDK at the fake server."""
    return {
        "llm_provider": "anthropic",
        "anthropic_api_key": "sk-ant-test-key",
        "anthropic_base_url": fake.base_url,
        "llm_max_retries": 0,
        "llm_timeout_seconds": 2.0,
    }


def claude_book_reply(request: dict[str, Any]) -> str:
    """`book_reply` for the fake Anthropic server, whose system prompt is a field of its own and
    whose user message is a list of blocks (the question in the last text block)."""
    if REWRITE_MARKER in system_of(request):
        return "publisher subscriber topic"
    texts = [b["text"] for b in request["messages"][-1]["content"] if b.get("type") == "text"]
    return f"Fake answer to: {question_of(texts[-1]) if texts else ''}"


# What `ingest_book` wrote for a (folder, base URL, collection) into a fresh SQLite file and
# Qdrant folder: later calls on fresh stores copy it instead of ingesting again (same bytes).
_book_snapshots: dict[tuple[str, str, str], Path] = {}


def _fresh_sqlite_stores(settings: Settings) -> Path | None:
    """The SQLite file when both stores are as `make_settings` left them (migrated, empty)."""
    url = make_url(settings.database_url.get_secret_value())
    qdrant = Path(settings.qdrant_path)
    if url.get_backend_name() != "sqlite" or settings.embeddings_provider != "none":
        return None  # only the BM25-only SQLite profile: vectors from a fake server are not
    if settings.qdrant_url or any(qdrant.iterdir()) or url.database is None:
        return None
    database = Path(url.database)
    with closing(sqlite3.connect(database)) as connection:
        tables = [
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
            if name != "alembic_version"
        ]
        if any(connection.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone() for t in tables):
            return None
    return database


async def ingest_book(settings: Settings, folder: Path = MINI_BOOK) -> None:
    """Ingest a docs folder into the stores these settings name (before an app opens them)."""
    fresh = _fresh_sqlite_stores(settings)
    key = (str(folder), settings.book_base_url, settings.qdrant_collection)
    snapshot = _book_snapshots.get(key)
    if fresh is not None and snapshot is not None:
        shutil.copy(snapshot / "book.db", fresh)
        shutil.copytree(snapshot / "qdrant", settings.qdrant_path, dirs_exist_ok=True)
        return
    async with open_container(settings) as container:
        await container.ingestor.ingest(load_folder(folder, settings.book_base_url))
    if fresh is not None:
        snapshot = Path(tempfile.mkdtemp(dir=_stores_root))
        shutil.copy(fresh, snapshot / "book.db")
        shutil.copytree(settings.qdrant_path, snapshot / "qdrant")
        _book_snapshots[key] = snapshot


# --- apps -------------------------------------------------------------------------------------


@asynccontextmanager
async def running_app(
    settings: Settings, *, customize: Callable[[FastAPI], None] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and a client that talks to it in-process."""
    app = create_app(settings)
    if customize is not None:
        customize(app)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@contextmanager
def live_server(settings: Settings, *, port: int = 0) -> Iterator[str]:
    """The app served by a real uvicorn on a loopback port (for what in-process transports
    cannot show, such as a client hanging up mid-stream); any free port unless `port` says."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


AppFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def app_factory() -> AppFactory:
    """`async with app_factory(settings) as client:` runs an app for the test."""
    return running_app


# --- Redis (rate limits and caches) -------------------------------------------------------------
# Tests use database 15 of TEST_REDIS_URL (14, 13... for the other pytest-xdist workers), emptied
# around each test; `private_redis` runs a throwaway redis-server for tests that stop it.


def _worker_redis_url(url: str) -> str:
    """The Redis database of this pytest-xdist worker: the URL's own for the first worker (or
    without xdist), one lower for each further worker, so workers never empty each other's."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    parts = urlsplit(url)
    database = int(parts.path.strip("/") or 0) - int(worker.removeprefix("gw"))
    if database < 0:
        raise RuntimeError(f"TEST_REDIS_URL's database number leaves none for worker {worker}")
    return urlunsplit(parts._replace(path=f"/{database}"))


TEST_REDIS_URL = _worker_redis_url(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))


def _redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    """The test Redis URL (skips, or fails under BOOKCHAT_REQUIRE_SERVICES=1, when it is down)."""
    client = _redis_client(TEST_REDIS_URL)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        service_unavailable(
            "Redis", f"{type(exc).__name__}: {exc}", "start it or point TEST_REDIS_URL at a server"
        )
    finally:
        client.close()
    return TEST_REDIS_URL


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """The test Redis database, empty at the start and the end of the test."""
    client = _redis_client(redis_server_url)
    try:
        client.flushdb()
        yield redis_server_url
        client.flushdb()
    finally:
        client.close()


class PrivateRedis:
    """A redis-server of this test alone, on a free loopback port, without persistence."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            service_unavailable("redis-server", "the binary is not on PATH", "install redis-server")
            raise AssertionError  # unreachable: the call above skips or fails
        self.binary = binary
        self.directory = directory
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart, empty) the server on its port."""
        options = {"port": str(self.port), "bind": "127.0.0.1", "save": "", "appendonly": "no"}
        arguments = [part for name, value in options.items() for part in (f"--{name}", value)]
        self.process = subprocess.Popen(
            [self.binary, *arguments, "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 10
        client = _redis_client(self.url)
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    exited = self.process is None or self.process.poll() is not None
                    if exited or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError("the private redis-server did not start") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Kill the server (an outage, as far as clients can tell)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server just for this test, stopped at the end (never the shared one)."""
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
