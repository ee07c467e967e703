"""Users and their profiles; chat sessions and feedback point at their user.

Revision ID: 09b47e46cbd8
Revises: 6f309cb86df1
Create Date: 2026-11-21 03:21:50+00:00
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "09b47e46cbd8"
down_revision: str | None = "6f309cb86df1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


LEVELS = ("beginner", "intermediate", "advanced")


@contextmanager
def _sqlite_foreign_keys_off() -> Iterator[None]:
    """Let batch mode rebuild tables on SQLite without cascading.

    A rebuild drops the old table; with foreign keys enforced that DROP deletes its rows first,
    and `ON DELETE CASCADE` would take every message of every chat session with it. The pragma
    is ignored inside a transaction, hence the autocommit blocks.
    """
    if op.get_bind().dialect.name != "sqlite":
        yield
        return
    with op.get_context().autocommit_block():
        op.execute("PRAGMA foreign_keys=OFF")
    yield
    with op.get_context().autocommit_block():
        op.execute("PRAGMA foreign_keys=ON")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("role", _enum("user_role", "user", "admin"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        sa.UniqueConstraint("external_id", name=op.f("uq_users_external_id")),
    )
    op.create_table(
        "user_profiles",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("software_level", _enum("software_level", *LEVELS), nullable=True),
        sa.Column("hardware_level", _enum("hardware_level", *LEVELS), nullable=True),
        sa.Column("background", sa.Text(), nullable=True),
        sa.Column("goals", sa.Text(), nullable=True),
        sa.Column("preferred_language", sa.String(length=16), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_profiles_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_profiles")),
    )
    with _sqlite_foreign_keys_off():
        with op.batch_alter_table("chat_sessions") as batch_op:
            batch_op.create_foreign_key(
                batch_op.f("fk_chat_sessions_user_id_users"),
                "users",
                ["user_id"],
                ["id"],
                ondelete="SET NULL",
            )
        with op.batch_alter_table("message_feedback") as batch_op:
            batch_op.create_foreign_key(
                batch_op.f("fk_message_feedback_user_id_users"),
                "users",
                ["user_id"],
                ["id"],
                ondelete="CASCADE",
            )


def downgrade() -> None:
    with _sqlite_foreign_keys_off():
        with op.batch_alter_table("message_feedback") as batch_op:
            batch_op.drop_constraint(
                batch_op.f("fk_message_feedback_user_id_users"), type_="foreignkey"
            )
        with op.batch_alter_table("chat_sessions") as batch_op:
            batch_op.drop_constraint(
                batch_op.f("fk_chat_sessions_user_id_users"), type_="foreignkey"
            )
    op.drop_table("user_profiles")
    op.drop_table("users")
