"""Mark answers that were served from the answer cache.

Revision ID: 5c0d2e7a9b41
Revises: 09b47e46cbd8
Create Date: 2026-11-21 03:40:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5c0d2e7a9b41"
down_revision: str | None = "09b47e46cbd8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN on both dialects (no table rebuild on SQLite); existing rows are false.
    op.add_column(
        "messages",
        sa.Column("cached", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("cached")
