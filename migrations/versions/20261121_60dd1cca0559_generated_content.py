"""The cache of personalized and translated chapters.

Revision ID: 60dd1cca0559
Revises: 5c0d2e7a9b41
Create Date: 2026-11-21 03:46:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "60dd1cca0559"
down_revision: str | None = "5c0d2e7a9b41"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "generated_content",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "personalized",
                "translated",
                name="generated_kind",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=False),
        sa.Column("source_hash", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_generated_content_document_id_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generated_content")),
        # 63 characters: exactly PostgreSQL's limit for identifiers.
        sa.UniqueConstraint(
            "kind",
            "document_id",
            "variant",
            "source_hash",
            "model",
            name=op.f("uq_generated_content_kind_document_id_variant_source_hash_model"),
        ),
    )
    op.create_index(op.f("ix_generated_content_document_id"), "generated_content", ["document_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_generated_content_document_id"), table_name="generated_content")
    op.drop_table("generated_content")
