"""Plain async factories and readers shared by the tests (no framework: call them and await).

- `book_settings`: settings whose stores hold the mini book;
- `sign_up`, `bearer`: an account and its `Authorization` header;
- `post_chat`, `ask`: one chat turn over HTTP;
- `open_db`, `stored`, `count`, `execute_sql`: read what the app wrote, with an engine of the
  test's own that is disposed afterwards;
- `citing_reply`, `sources_sent`, `heading`: a model answer that cites out of order, and what
  the model was given to cite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from bookchat.core.config import Settings
from bookchat.core.db import create_engine, create_sessionmaker
from tests.conftest import MINI_BOOK, REWRITE_MARKER, ingest_book, make_settings
from tests.prompt_layout import read_layout

PASSWORD = "correct horse battery"
QUESTION = "How does a publisher send messages?"

# Five pages that all say how a publisher sends messages: `QUESTION` finds five sources in it.
PUBLISHERS_BOOK = Path(__file__).parent / "fixtures" / "publishers_book"
# The model cites its sources 3, then 1 and 3, then a 7 it was never given; over five sources
# the reader sees the cited ones numbered in order of first use and the 7 gone.
CITING_REPLY = "A [3]. B [1][3]. C [7]."
CITING_SHOWN = "A [1]. B [2][1]. C."

Model = TypeVar("Model")


async def book_settings(database_url: str, folder: Path = MINI_BOOK, **overrides: Any) -> Settings:
    """Test settings (`make_settings`) whose stores hold the book in `folder`."""
    settings = make_settings(database_url, **overrides)
    await ingest_book(settings, folder)
    return settings


def bearer(token: str) -> dict[str, str]:
    """The `Authorization` header for an access token."""
    return {"Authorization": f"Bearer {token}"}


async def sign_up(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, **extra: Any
) -> dict[str, Any]:
    """Create an account through the API; the token response (`access_token`, `user`...)."""
    response = await client.post(
        "/api/v1/auth/signup", json={"email": email, "password": password, **extra}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def post_chat(
    client: httpx.AsyncClient,
    message: str = QUESTION,
    *,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> httpx.Response:
    """`POST /api/v1/chat` with this message and any other body fields; the raw response."""
    return await client.post("/api/v1/chat", json={"message": message, **fields}, headers=headers)


async def ask(
    client: httpx.AsyncClient,
    message: str = QUESTION,
    *,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """One answered turn: the response body of a `POST /api/v1/chat` that must succeed."""
    response = await post_chat(client, message, headers=headers, **fields)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@asynccontextmanager
async def open_db(database_url: str) -> AsyncIterator[AsyncSession]:
    """A session on the test's database, on an engine of its own, disposed afterwards."""
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as db:
            yield db
    finally:
        await engine.dispose()


def _conditions(model: type[Any], where: dict[str, Any]) -> list[Any]:
    return [getattr(model, name) == value for name, value in where.items()]


async def stored(
    database_url: str,
    model: type[Model],
    *,
    order_by: tuple[InstrumentedAttribute[Any], ...] = (),
    **where: Any,
) -> list[Model]:
    """The rows of `model` matching `where` (column = value), in `order_by` order."""
    async with open_db(database_url) as db:
        query = select(model).where(*_conditions(model, where)).order_by(*order_by)
        return list((await db.scalars(query)).all())


async def count(database_url: str, model: type[Any], **where: Any) -> int:
    """How many rows of `model` match `where` (column = value)."""
    async with open_db(database_url) as db:
        query = select(func.count()).select_from(model).where(*_conditions(model, where))
        return int(await db.scalar(query) or 0)


async def execute_sql(database_url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Run one SQL statement in its own committed transaction; its rows (empty for writes)."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(sql), params)
            return [tuple(row) for row in result.all()] if result.returns_rows else []
    finally:
        await engine.dispose()


def citing_reply(request: dict[str, Any]) -> str:
    """The fake model's `CITING_REPLY` (a follow-up rewrite gets an in-book query)."""
    if REWRITE_MARKER in request["messages"][0]["content"]:
        return "publisher subscriber topic"
    return CITING_REPLY


def sources_sent(request: dict[str, Any]) -> list[str]:
    """The headings of the numbered sources a chat request gave the model, in its numbering."""
    layout = read_layout(request["messages"][1]["content"])
    numbered = sorted((b.number, b.text) for b in layout.blocks if b.name == "source" and b.number)
    return [text.split("\n", 1)[0] for _, text in numbered]


def heading(citation: dict[str, Any]) -> str:
    """A citation's `title > section`, as the prompt names its source."""
    return " > ".join(part for part in (citation["title"], citation["section"]) if part)
