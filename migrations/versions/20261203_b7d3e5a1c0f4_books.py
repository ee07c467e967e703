"""Books: one deployment serves many; every document, chat session and ingestion job names its own.

The book of a database from before this revision becomes the book `default`, stored with every
setting NULL (the service's settings keep configuring it). The new `book` columns default to it,
so existing rows belong to it without a rewrite, and document ids do not change (the default
book's ids are computed as before): nothing is re-ingested.

Revision ID: b7d3e5a1c0f4
Revises: fca29d000b4d
Create Date: 2026-12-03 13:30:00+00:00
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "b7d3e5a1c0f4"
down_revision: str | None = "fca29d000b4d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_BOOK = "default"
# The tables that name their book (a chunk, a message, a generated chapter or a piece of
# feedback belongs to its document's or session's book).
OWNED = ("documents", "chat_sessions", "ingest_jobs")


@contextmanager
def _sqlite_foreign_keys_off() -> Iterator[None]:
    """Rebuild tables on SQLite without cascading: a rebuild drops the old table, and with
    foreign keys enforced (an earlier revision of the same run may have turned them back on)
    that DROP would delete every message of every chat session. The pragma is ignored inside a
    transaction, hence the autocommit blocks; the state found is restored after."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        yield
        return
    enforced = bind.exec_driver_sql("PRAGMA foreign_keys").scalar()
    with op.get_context().autocommit_block():
        op.execute("PRAGMA foreign_keys=OFF")
    yield
    if enforced:
        with op.get_context().autocommit_block():
            op.execute("PRAGMA foreign_keys=ON")


def upgrade() -> None:
    books = op.create_table(
        "books",
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=True),
        sa.Column("base_url", sa.String(length=2048), nullable=True),
        sa.Column("docs_dir", sa.String(length=1024), nullable=True),
        sa.Column("persona", sa.Text(), nullable=True),
        sa.Column("cors_origins", sa.JSON(), nullable=False),
        sa.Column("rate_limit_chat", sa.String(length=64), nullable=True),
        sa.Column("rate_limit_search", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("slug", name=op.f("pk_books")),
    )
    now = sa.func.current_timestamp()
    op.execute(
        books.insert().values(slug=DEFAULT_BOOK, cors_origins=[], created_at=now, updated_at=now)
    )
    # SQLite rebuilds each table to add the foreign key; PostgreSQL adds the column in place.
    with _sqlite_foreign_keys_off():
        for table in OWNED:
            _add_book(table)


def _add_book(table: str) -> None:
    with op.batch_alter_table(table) as batch_op:
        batch_op.add_column(
            sa.Column(
                "book",
                sa.String(length=64),
                server_default=DEFAULT_BOOK,
                nullable=False,
            )
        )
        batch_op.create_foreign_key(
            batch_op.f(f"fk_{table}_book_books"),
            "books",
            ["book"],
            ["slug"],
            ondelete="CASCADE",
        )
        if table == "documents":
            # A path is unique within its book; this index also finds a book's documents.
            batch_op.drop_constraint(batch_op.f("uq_documents_source_path"), type_="unique")
            batch_op.create_unique_constraint(
                batch_op.f("uq_documents_book_source_path"), ["book", "source_path"]
            )
        else:
            batch_op.create_index(batch_op.f(f"ix_{table}_book"), ["book"])


def downgrade() -> None:
    # Only the default book survives: a path may be in two books, and `documents.source_path` is
    # unique again below. Children first: SQLite runs this with foreign keys off (no cascade).
    # The other books' points stay in Qdrant until `bookchat reindex` rebuilds the collection.
    for statement in (
        "DELETE FROM message_feedback WHERE message_id IN (SELECT id FROM messages WHERE "
        "session_id IN (SELECT id FROM chat_sessions WHERE book <> 'default'))",
        "DELETE FROM messages WHERE session_id IN "
        "(SELECT id FROM chat_sessions WHERE book <> 'default')",
        "DELETE FROM chat_sessions WHERE book <> 'default'",
        "DELETE FROM generated_content WHERE document_id IN "
        "(SELECT id FROM documents WHERE book <> 'default')",
        "DELETE FROM chunks WHERE document_id IN "
        "(SELECT id FROM documents WHERE book <> 'default')",
        "DELETE FROM documents WHERE book <> 'default'",
        "DELETE FROM ingest_jobs WHERE book <> 'default'",
    ):
        op.execute(statement)
    with _sqlite_foreign_keys_off():
        for table in reversed(OWNED):
            _drop_book(table)
    op.drop_table("books")


def _drop_book(table: str) -> None:
    with op.batch_alter_table(table) as batch_op:
        if table == "documents":
            batch_op.drop_constraint(batch_op.f("uq_documents_book_source_path"), type_="unique")
            batch_op.create_unique_constraint(
                batch_op.f("uq_documents_source_path"), ["source_path"]
            )
        else:
            batch_op.drop_index(batch_op.f(f"ix_{table}_book"))
        batch_op.drop_constraint(batch_op.f(f"fk_{table}_book_books"), type_="foreignkey")
        batch_op.drop_column("book")
