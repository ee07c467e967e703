"""Purging old conversations: how long `bookchat purge` takes over many of them, and how long a
reader's write waits meanwhile (the longest any batch holds the write lock it needs).

    uv run --no-sync python benchmarks/purge.py                   # SQLite and PostgreSQL
    uv run --no-sync python benchmarks/purge.py --sessions 5000 --skip-postgres

Seeds `--sessions` conversations (three in four last active 100 days ago, two questions and two
answers each with five citations, every other old answer rated), then runs
`purge_conversations` with a 30-day cutoff while a "reader" stores a question in a recent
conversation every 20 ms, as a turn does (insert the message, touch the session, commit). The
reader's waits are compared with the same writes on the idle database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `benchmarks`, as a script

from benchmarks.stores import postgres_problem, postgres_store
from bookchat.chat.models import ChatSession, Message, MessageFeedback, MessageRole
from bookchat.chat.retention import BATCH_SIZE, purge_conversations, retention_cutoff
from bookchat.core.db import create_engine, create_sessionmaker, utcnow
from bookchat.core.logging import configure_logging
from bookchat.core.migrations import upgrade
from bookchat.tables import load_all_tables

POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
WRITE_EVERY = 0.02
CITATION = {
    "index": 1,
    "title": "Nodes and Topics",
    "section": "Publishers",
    "page_url": "https://example.org/book/ros2/nodes#publishers",
    "source_path": "02-ros2/01-nodes.md",
    "snippet": "A publisher sends messages on a topic; " * 6,
    "score": 3.2,
    "cited": True,
}


async def seed(url: str, sessions: int) -> list[uuid.UUID]:
    """The conversations; returns the ids of the recent ones."""
    engine = create_engine(url)
    now = utcnow()
    recent: list[uuid.UUID] = []
    try:
        async with engine.begin() as connection:
            for start in range(0, sessions, 1000):
                rows, messages, ratings = [], [], []
                for number in range(start, min(start + 1000, sessions)):
                    old = number % 4 != 0
                    at = now - timedelta(days=100 if old else 1)
                    session_id = uuid.uuid4()
                    if not old:
                        recent.append(session_id)
                    rows.append(
                        {"id": session_id, "title": "q", "created_at": at, "updated_at": at}
                    )
                    for turn in range(4):
                        message_id = uuid.uuid4()
                        answer = turn % 2 == 1
                        messages.append(
                            {
                                "id": message_id,
                                "session_id": session_id,
                                "role": MessageRole.ASSISTANT if answer else MessageRole.USER,
                                "content": "An answer about publishers [1]. " * 8,
                                "mode": "rag" if answer else None,
                                "citations": [CITATION] * 5 if answer else [],
                                "created_at": at,
                            }
                        )
                        if answer and old and number % 2:
                            ratings.append(
                                {"id": uuid.uuid4(), "message_id": message_id, "rating": -1}
                            )
                await connection.execute(insert(ChatSession), rows)
                await connection.execute(insert(Message), messages)
                if ratings:
                    await connection.execute(insert(MessageFeedback), ratings)
    finally:
        await engine.dispose()
    return recent


async def reader_writes(url: str, recent: list[uuid.UUID], stop: asyncio.Event) -> list[float]:
    """Store a question every WRITE_EVERY seconds until `stop`; each write's seconds."""
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    waits: list[float] = []
    try:
        while not stop.is_set():
            session_id = recent[len(waits) % len(recent)]
            started = time.perf_counter()
            async with sessionmaker() as db:
                db.add(Message(session_id=session_id, role=MessageRole.USER, content="again?"))
                await db.execute(
                    update(ChatSession)
                    .where(ChatSession.id == session_id)
                    .values(updated_at=utcnow())
                )
                await db.commit()
            waits.append(time.perf_counter() - started)
            await asyncio.sleep(WRITE_EVERY)
    finally:
        await engine.dispose()
    return waits


def summary(waits: list[float]) -> dict[str, float]:
    ordered = sorted(waits)
    return {
        "writes": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


async def measure(label: str, url: str, sessions: int) -> dict[str, Any]:
    await asyncio.to_thread(upgrade, url)
    recent = await seed(url, sessions)
    # The reader on the idle database, for comparison.
    stop = asyncio.Event()
    idle_task = asyncio.create_task(reader_writes(url, recent, stop))
    await asyncio.sleep(2)
    stop.set()
    idle = await idle_task

    engine = create_engine(url)
    stop = asyncio.Event()
    busy_task = asyncio.create_task(reader_writes(url, recent, stop))
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    try:
        deleted = await purge_conversations(create_sessionmaker(engine), retention_cutoff(30))
    finally:
        seconds = time.perf_counter() - started
        stop.set()
        busy = await busy_task
        await engine.dispose()
    result = {
        "store": label,
        "sessions_seeded": sessions,
        "deleted": {
            "sessions": deleted.sessions,
            "messages": deleted.messages,
            "feedback": deleted.feedback,
            "batches": deleted.batches,
        },
        "batch_size": BATCH_SIZE,
        "purge_seconds": round(seconds, 2),
        "sessions_per_second": round(deleted.sessions / seconds),
        "mean_batch_ms": round(seconds / max(deleted.batches, 1) * 1000, 1),
        "reader_write_idle": summary(idle),
        "reader_write_during_purge": summary(busy),
    }
    print(json.dumps(result), flush=True)
    return result


async def run(args: argparse.Namespace) -> int:
    load_all_tables()
    configure_logging("WARNING", "console")
    with tempfile.TemporaryDirectory() as scratch:
        await measure("sqlite", f"sqlite+aiosqlite:///{scratch}/purge.db", args.sessions)
        if not args.skip_postgres:
            problem = await postgres_problem(args.postgres)
            if problem is not None:
                print(f"postgresql skipped: {problem}", file=sys.stderr)
                return 1
            async with postgres_store(args.postgres, Path(scratch)) as store:
                await measure("postgresql", store.database_url, args.sessions)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--postgres", default=POSTGRES_URL, help="an admin URL of the server")
    parser.add_argument("--skip-postgres", action="store_true")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
