"""The books migration on databases that already hold a book, on SQLite and PostgreSQL, and the
pre-books Qdrant collection the upgraded app adopts: nothing is lost and nothing re-ingested."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager
from sqlalchemy import bindparam, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from structlog.testing import capture_logs

from bookchat.content.chunker import embedding_text
from bookchat.content.models import chunk_id_for, document_id_for
from bookchat.core.db import UTCDateTime, create_engine
from bookchat.core.migrations import downgrade, upgrade
from bookchat.main import create_app
from bookchat.providers.sparse import Bm25Encoder
from bookchat.retrieval.qdrant_sdk import models, open_client
from tests.conftest import make_settings

BEFORE_BOOKS = "fca29d000b4d"
DEFAULT = "default"
OTHER = "robotics"
# Every table holding a book's content or conversations, and those naming their book.
TABLES = (
    "documents",
    "chunks",
    "generated_content",
    "ingest_jobs",
    "chat_sessions",
    "messages",
    "message_feedback",
)
OWNING = ("documents", "chat_sessions", "ingest_jobs")
# (child, column, parent, parent column) of every foreign key between them.
PARENTS = (
    ("chunks", "document_id", "documents", "id"),
    ("generated_content", "document_id", "documents", "id"),
    ("messages", "session_id", "chat_sessions", "id"),
    ("message_feedback", "message_id", "messages", "id"),
)
BOOK_PARENTS = tuple((table, "book", "books", "slug") for table in OWNING)

PATH = "01-basics/01-messaging.md"
PAGE_URL = "https://example.org/book/basics/messaging"
SECTIONS = (
    (
        ("Messaging", "Publishers and subscribers"),
        "publishers-and-subscribers",
        "A publisher sends messages on a named topic, and every subscriber of that topic "
        "receives them. The publisher does not know who listens.",
    ),
    (
        ("Messaging", "Request and reply"),
        "request-and-reply",
        "A service answers one request with one reply. Use it for short queries such as "
        "reading a parameter, never for continuous data streams.",
    ),
)
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
COLLECTION = "bookchat"


# --- raw SQL on either dialect -----------------------------------------------------------------


def _typed(name: str, value: Any) -> sa.BindParameter[Any]:
    # Uuid and UTCDateTime store ids and times as the models do on each dialect (32 hex
    # characters and naive UTC text on SQLite).
    if isinstance(value, uuid.UUID):
        return bindparam(name, value, type_=sa.Uuid())
    if isinstance(value, datetime):
        return bindparam(name, value, type_=UTCDateTime())
    if isinstance(value, dict | list):
        return bindparam(name, value, type_=sa.JSON())
    return bindparam(name, value)


async def insert(connection: AsyncConnection, table: str, **values: Any) -> None:
    columns = ", ".join(values)
    placeholders = ", ".join(f":{name}" for name in values)
    statement = text(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})")
    await connection.execute(statement.bindparams(*(_typed(k, v) for k, v in values.items())))


async def scalar(connection: AsyncConnection, sql: str) -> Any:
    return (await connection.execute(text(sql))).scalar_one()


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine as the app builds it (SQLite: foreign keys enforced)."""
    engine = create_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Chapter:
    """What `store_chapter` stored that a test looks up again."""

    document: uuid.UUID
    chunks: tuple[dict[str, Any], ...]


def chunks_of(document: uuid.UUID) -> tuple[dict[str, Any], ...]:
    """The document's chunks as ingestion stores them (ids hash what is indexed)."""
    rows = []
    for ordinal, (heading_path, anchor, body) in enumerate(SECTIONS):
        indexed = embedding_text(heading_path, body)
        rows.append(
            {
                "id": chunk_id_for(document, ordinal, hashlib.sha256(indexed.encode()).hexdigest()),
                "document_id": document,
                "ordinal": ordinal,
                "heading_path": list(heading_path),
                "anchor": anchor,
                "page_url": f"{PAGE_URL}#{anchor}",
                "text": body,
                "token_count": len(body.split()),
            }
        )
    return tuple(rows)


async def store_chapter(connection: AsyncConnection, book: str | None) -> Chapter:
    """Insert a book's rows: a document with two chunks and a translation, an ingestion job, an
    anonymous conversation (a question, an answer) and feedback on the answer. `book` None:
    the schema from before books (no `book` column)."""
    named = {} if book is None else {"book": book}
    document = document_id_for(PATH, book or DEFAULT)
    body = "\n\n".join(f"## {path[-1]}\n\n{text}" for path, _, text in SECTIONS)
    await insert(
        connection,
        "documents",
        id=document,
        source_path=PATH,
        title="Messaging",
        page_url=PAGE_URL,
        module="Basics",
        content_hash=hashlib.sha256(body.encode()).hexdigest(),
        body=f"# Messaging\n\n{body}",
        metadata={"sidebar_position": 1, "route": "basics/messaging"},
        created_at=T0,
        updated_at=T0,
        **named,
    )
    chunks = chunks_of(document)
    for chunk in chunks:
        await insert(connection, "chunks", **chunk)
    await insert(
        connection,
        "generated_content",
        id=uuid.uuid4(),
        kind="translated",
        document_id=document,
        variant="ur",
        source_hash="a" * 64,
        model="gpt-4o-mini",
        body="# پیغام رسانی",
        created_at=T0 + timedelta(hours=1),
    )
    await insert(
        connection,
        "ingest_jobs",
        id=uuid.uuid4(),
        status="succeeded",
        source="cli",
        counts={"added": 1, "updated": 0, "unchanged": 0, "removed": 0, "chunks": 2},
        created_at=T0,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=3),
        **named,
    )
    session, answer = uuid.uuid4(), uuid.uuid4()
    await insert(
        connection,
        "chat_sessions",
        id=session,
        title="How do nodes talk?",
        created_at=T0 + timedelta(days=1),
        updated_at=T0 + timedelta(days=1, seconds=2),
        **named,
    )
    await insert(
        connection,
        "messages",
        id=uuid.uuid4(),
        session_id=session,
        role="user",
        content="How do nodes talk to each other?",
        status="complete",
        created_at=T0 + timedelta(days=1),
    )
    await insert(
        connection,
        "messages",
        id=answer,
        session_id=session,
        role="assistant",
        content="A publisher sends messages on a named topic [1].",
        status="complete",
        mode="book",
        model="gpt-4o-mini",
        citations=[{"n": 1, "chunk_id": str(chunks[0]["id"]), "page_url": chunks[0]["page_url"]}],
        search_query="How do nodes talk to each other?",
        finish_reason="stop",
        latency_ms=850,
        created_at=T0 + timedelta(days=1, seconds=2),
    )
    await insert(
        connection,
        "message_feedback",
        id=uuid.uuid4(),
        message_id=answer,
        rating=1,
        comment="clear",
        created_at=T0 + timedelta(days=1, minutes=1),
        updated_at=T0 + timedelta(days=1, minutes=1),
    )
    return Chapter(document=document, chunks=chunks)


async def add_book(connection: AsyncConnection, slug: str) -> None:
    await insert(connection, "books", slug=slug, cors_origins=[], created_at=T0, updated_at=T0)


async def snapshot(connection: AsyncConnection) -> dict[str, set[uuid.UUID]]:
    """The ids in every table."""
    found = {}
    for table in TABLES:
        rows = await connection.execute(text(f"SELECT id FROM {table}").columns(id=sa.Uuid()))
        found[table] = set(rows.scalars())
    return found


async def orphans(connection: AsyncConnection, *, books: bool) -> dict[str, int]:
    """Rows whose parent is missing, per foreign key (none expected); on SQLite also what
    `PRAGMA foreign_key_check` finds."""
    counts = {}
    for child, column, parent, key in PARENTS + (BOOK_PARENTS if books else ()):
        counts[f"{child}.{column}"] = await scalar(
            connection,
            f"SELECT count(*) FROM {child} WHERE {column} NOT IN (SELECT {key} FROM {parent})",
        )
    if connection.dialect.name == "sqlite":
        counts["foreign_key_check"] = len(
            (await connection.exec_driver_sql("PRAGMA foreign_key_check")).fetchall()
        )
    return {name: count for name, count in counts.items() if count}


# --- databases from before books ----------------------------------------------------------------


@pytest.fixture
async def pre_books(empty_database: str) -> str:
    """A database at the revision before books, holding the one book's rows."""
    await asyncio.to_thread(upgrade, empty_database, BEFORE_BOOKS)
    async with opened(empty_database) as engine, engine.begin() as connection:
        await store_chapter(connection, book=None)
    return empty_database


async def test_upgrade_gives_every_row_to_the_default_book(pre_books: str) -> None:
    async with opened(pre_books) as engine:
        async with engine.connect() as connection:
            before = await snapshot(connection)
        assert all(
            len(ids) == (2 if table in ("chunks", "messages") else 1)
            for table, ids in before.items()
        )

        await asyncio.to_thread(upgrade, pre_books)

        async with engine.connect() as connection:
            assert await snapshot(connection) == before
            for table in OWNING:
                books = await connection.execute(text(f"SELECT DISTINCT book FROM {table}"))
                assert books.scalars().all() == [DEFAULT], table
            stored = await connection.execute(
                text("SELECT slug, title, base_url, docs_dir, persona FROM books")
            )
            assert stored.all() == [(DEFAULT, None, None, None, None)]
            assert await orphans(connection, books=True) == {}

        # Another book may hold the same path (and its own conversations); one book may not
        # hold it twice.
        async with engine.begin() as connection:
            await add_book(connection, OTHER)
            await store_chapter(connection, book=OTHER)
        for book in (DEFAULT, OTHER):
            with pytest.raises(IntegrityError):
                async with engine.begin() as connection:
                    await insert(connection, "documents", **_document_like(uuid.uuid4(), book))

        # Deleting a book deletes what it holds, through every level, and nothing else.
        async with engine.connect() as connection:
            assert await scalar(connection, "SELECT count(*) FROM message_feedback") == 2
        async with engine.begin() as connection:
            await connection.execute(text("DELETE FROM books WHERE slug = :b"), {"b": OTHER})
        async with engine.connect() as connection:
            assert await snapshot(connection) == before
            assert await orphans(connection, books=True) == {}


def _document_like(document: uuid.UUID, book: str | None) -> dict[str, Any]:
    """Another document at `PATH` (`book` None: the schema from before books)."""
    return {
        "id": document,
        **({} if book is None else {"book": book}),
        "source_path": PATH,
        "title": "Messaging",
        "page_url": PAGE_URL,
        "content_hash": "b" * 64,
        "body": "# Messaging",
        "metadata": {},
        "created_at": T0,
        "updated_at": T0,
    }


async def test_downgrade_keeps_the_default_book_only(pre_books: str) -> None:
    await asyncio.to_thread(upgrade, pre_books)
    async with opened(pre_books) as engine:
        async with engine.connect() as connection:
            default_rows = await snapshot(connection)
        async with engine.begin() as connection:
            await add_book(connection, OTHER)
            # The same path as the default book's: `source_path` can only be unique again once
            # the other book's copy is gone.
            await store_chapter(connection, book=OTHER)
        async with engine.connect() as connection:
            assert await scalar(connection, "SELECT count(*) FROM chunks") == 4

    await asyncio.to_thread(downgrade, pre_books, BEFORE_BOOKS)

    async with opened(pre_books) as engine:
        async with engine.connect() as connection:
            assert await snapshot(connection) == default_rows
            assert await orphans(connection, books=False) == {}
            schema = await connection.run_sync(
                lambda sync: (
                    inspect(sync).get_table_names(),
                    {c["name"] for c in inspect(sync).get_columns("documents")},
                )
            )
        assert "books" not in schema[0]
        assert "book" not in schema[1]
        # `source_path` is unique again.
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await insert(connection, "documents", **_document_like(uuid.uuid4(), None))


# --- the app on stores made before books -------------------------------------------------------


async def make_pre_books_collection(path: Path, chunks: tuple[dict[str, Any], ...]) -> None:
    """The collection as `QdrantIndex._create` and `upsert` made it before books: BM25 only,
    no `book` payload, no `books` metadata, no index on `book`."""
    vectors = await Bm25Encoder().encode_documents(
        [embedding_text(chunk["heading_path"], chunk["text"]) for chunk in chunks]
    )
    client = open_client(path=str(path))  # embedded Qdrant: QdrantClient(path=...)
    try:
        client.create_collection(
            COLLECTION,
            vectors_config={},
            sparse_vectors_config={"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)},
            metadata={"embedder": "none", "dimension": 0, "sparse": "bm25"},
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # payload indexes have no effect in embedded mode
            for field in ("document_id", "module"):
                client.create_payload_index(COLLECTION, field, models.PayloadSchemaType.KEYWORD)
        client.upsert(
            COLLECTION,
            points=[
                models.PointStruct(
                    id=str(chunk["id"]),
                    vector={
                        "bm25": models.SparseVector(indices=vector.indices, values=vector.values)
                    },
                    payload={
                        "chunk_id": str(chunk["id"]),
                        "document_id": str(chunk["document_id"]),
                        "source_path": PATH,
                        "title": "Messaging",
                        "heading_path": chunk["heading_path"],
                        "page_url": chunk["page_url"],
                        "module": "Basics",
                        "text": chunk["text"],
                    },
                )
                for chunk, vector in zip(chunks, vectors, strict=True)
            ],
            wait=True,
        )
    finally:
        client.close()


def read_collection(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The collection's metadata and every point's payload."""
    client = open_client(path=str(path))
    try:
        metadata = client.get_collection(COLLECTION).config.metadata or {}
        points, _ = client.scroll(COLLECTION, limit=100, with_payload=True)
        return metadata, [point.payload or {} for point in points]
    finally:
        client.close()


async def test_the_app_serves_a_book_stored_before_books(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bookchat.db'}"
    await asyncio.to_thread(upgrade, url, BEFORE_BOOKS)
    async with opened(url) as engine, engine.begin() as connection:
        chapter = await store_chapter(connection, book=None)
    qdrant = tmp_path / "qdrant"
    await make_pre_books_collection(qdrant, chapter.chunks)
    await asyncio.to_thread(upgrade, url)

    settings = make_settings(
        url, qdrant_path=str(qdrant), qdrant_collection=COLLECTION, log_level="INFO"
    )
    publishers = str(chapter.chunks[0]["id"])
    adoptions: list[int] = []
    for _ in range(2):
        app = create_app(settings)  # configures logging: capture after it
        with capture_logs() as logs:
            async with (
                LifespanManager(app) as manager,
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=manager.app), base_url="http://t"
                ) as client,
            ):
                for route in (
                    "/api/v1/content/search",
                    f"/api/v1/books/{DEFAULT}/content/search",
                ):
                    response = await client.get(route, params={"q": "publisher topic subscriber"})
                    assert response.status_code == 200, response.text
                    results = response.json()["results"]
                    assert results, route
                    assert results[0]["chunk_id"] == publishers
                    assert results[0]["document_id"] == str(chapter.document)
                documents = (await client.get("/api/v1/content/documents")).json()
                assert [d["id"] for d in documents["items"]] == [str(chapter.document)]
        adoptions.append(sum(entry["event"] == "index.books_adopted" for entry in logs))
        metadata, payloads = await asyncio.to_thread(read_collection, qdrant)
        assert metadata["books"] == 1
        assert sorted(p["chunk_id"] for p in payloads) == sorted(
            str(c["id"]) for c in chapter.chunks
        )
        assert {p["book"] for p in payloads} == {DEFAULT}
    # Adopted at the first start (the operator sees one line); the second start found `books`
    # in the collection's metadata.
    assert adoptions == [1, 0]
