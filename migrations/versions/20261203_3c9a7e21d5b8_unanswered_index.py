"""Insights: an index of the answers that keep a question key, by time.

Since answers of the book that cite none of their passages also keep a question key
(chat/refusals.py), the unanswered questions are the refused answers and the answers with a key.
The refused ones come through `ix_messages_mode_created_at`; this partial index holds the others
(a few percent of the answers) so that the book's cited answers of the range are not read.

Revision ID: 3c9a7e21d5b8
Revises: b7d3e5a1c0f4
Create Date: 2026-12-03 23:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3c9a7e21d5b8"
down_revision: str | None = "b7d3e5a1c0f4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEPT = sa.text("question_key IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_messages_question_key_created_at",
        "messages",
        ["created_at"],
        postgresql_where=KEPT,
        sqlite_where=KEPT,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_question_key_created_at", table_name="messages")
