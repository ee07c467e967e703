"""The accounts migration on a SQLite database that already holds conversations."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path

from bookchat.core.migrations import downgrade, upgrade

BEFORE_ACCOUNTS = "6f309cb86df1"


async def test_sqlite_rebuild_keeps_every_message(tmp_path: Path) -> None:
    # Adding the user foreign keys rebuilds chat_sessions on SQLite; with foreign keys enforced,
    # dropping the old table would cascade-delete all messages.
    path = tmp_path / "existing.db"
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade, url, BEFORE_ACCOUNTS)
    session, message = uuid.uuid4().hex, uuid.uuid4().hex
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO chat_sessions VALUES (?, NULL, 'walking', '2026-01-01', '2026-01-01')",
            (session,),
        )
        db.execute(
            "INSERT INTO messages (id, session_id, role, content, status, created_at) "
            "VALUES (?, ?, 'user', 'How do robots walk?', 'complete', '2026-01-01')",
            (message, session),
        )
        db.execute(
            "INSERT INTO message_feedback VALUES (?, ?, NULL, 1, NULL, '2026-01-01', '2026-01-01')",
            (uuid.uuid4().hex, message),
        )

    await asyncio.to_thread(upgrade, url)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM messages").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM message_feedback").fetchone() == (1,)
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        feedback_sql = db.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'message_feedback'"
        ).fetchone()[0]
    assert "ck_message_feedback_rating" in feedback_sql  # the rebuild kept the CHECK
    assert "fk_message_feedback_user_id_users" in feedback_sql

    await asyncio.to_thread(downgrade, url, BEFORE_ACCOUNTS)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM messages").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM message_feedback").fetchone() == (1,)
