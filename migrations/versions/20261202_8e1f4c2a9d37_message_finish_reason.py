"""Record how an answer ended (the model's finish_reason), so a cut answer says why.

Revision ID: 8e1f4c2a9d37
Revises: 60dd1cca0559
Create Date: 2026-12-02 21:45:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8e1f4c2a9d37"
down_revision: str | None = "60dd1cca0559"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain nullable ADD COLUMN on both dialects (no table rebuild on SQLite). Answers stored
    # before it say nothing about how they ended: their status is all there is.
    op.add_column("messages", sa.Column("finish_reason", sa.String(length=32), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE ... DROP COLUMN: SQLite has it since 3.35, so no table rebuild.
    op.drop_column("messages", "finish_reason")
