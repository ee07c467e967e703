"""Insights: what a refused answer keeps for grouping, and the indexes of the date ranges.

`messages.nearest_section` (JSON) and `messages.question_key` are set on `no_context` answers
only (chat/refusals.py). The indexes serve the insights' queries over a date range: questions
and answers by role and time, answers of one mode by time, feedback by the time it was given.

Revision ID: fca29d000b4d
Revises: 8e1f4c2a9d37
Create Date: 2026-12-03 07:05:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "fca29d000b4d"
down_revision: str | None = "8e1f4c2a9d37"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain nullable ADD COLUMNs on both dialects (no table rebuild on SQLite). Answers refused
    # before this revision have neither: the insights group them by their question's text.
    op.add_column("messages", sa.Column("nearest_section", sa.JSON(), nullable=True))
    op.add_column("messages", sa.Column("question_key", sa.String(length=500), nullable=True))
    # On PostgreSQL it covers what the summary counts: an index-only scan, whatever the order
    # of the rows in the table (SQLite ignores INCLUDE).
    op.create_index(
        "ix_messages_role_created_at",
        "messages",
        ["role", "created_at"],
        postgresql_include=["session_id", "status", "mode", "cached", "latency_ms"],
    )
    op.create_index("ix_messages_mode_created_at", "messages", ["mode", "created_at"])
    op.create_index("ix_message_feedback_updated_at", "message_feedback", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_message_feedback_updated_at", table_name="message_feedback")
    op.drop_index("ix_messages_mode_created_at", table_name="messages")
    op.drop_index("ix_messages_role_created_at", table_name="messages")
    # A plain ALTER TABLE ... DROP COLUMN: SQLite has it since 3.35, so no table rebuild.
    op.drop_column("messages", "question_key")
    op.drop_column("messages", "nearest_section")
