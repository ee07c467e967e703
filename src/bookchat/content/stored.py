"""What the stores hold of the book, read without any model: enough for a command to tell that
an ingestion would change nothing before it loads an embedder or an encoder."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from bookchat.content.models import Chunk, Document, document_id_for

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from bookchat.content.loader import LoadedDocument
    from bookchat.retrieval.index import IndexSignature, QdrantIndex


@dataclass(frozen=True, slots=True)
class StoredBook:
    """What the stores hold, read without any model: each document's content hash, what the
    index was built with, and whether it holds exactly the database's chunks."""

    book: str
    hashes: dict[uuid.UUID, str]  # the book's documents
    signature: IndexSignature | None  # None: no collection yet
    index_in_sync: bool

    def index_usable(self, embedders: Collection[str | None]) -> bool:
        """The index holds exactly the database's chunks and was built by one of `embedders`
        (the lower-cased names the configured embedder can have; another one is an error the
        full path reports)."""
        if not self.index_in_sync or self.signature is None:
            return False
        return not self.built_by_another(embedders)

    def built_by_another(self, embedders: Collection[str | None]) -> bool:
        """The index exists but was built by none of `embedders` (a reindex makes it usable)."""
        if self.signature is None:
            return False
        built_by = self.signature.embedder.lower() if self.signature.embedder else None
        return built_by not in embedders

    def unchanged_by(
        self,
        documents: Sequence[LoadedDocument],
        *,
        prune: bool,
        embedders: Collection[str | None],
    ) -> bool:
        """True when `Ingestor.ingest(documents, prune=prune, reconcile=True)` would add,
        update, remove and repair nothing, with a usable index (`index_usable`)."""
        if not self.index_usable(embedders):
            return False
        incoming = {document_id_for(d.source_path, self.book): d.content_hash for d in documents}
        if any(self.hashes.get(id_) != content_hash for id_, content_hash in incoming.items()):
            return False
        return not (prune and self.hashes.keys() - incoming.keys())


async def read_stored_book(
    sessionmaker: async_sessionmaker[AsyncSession], index: QdrantIndex, book: str
) -> StoredBook:
    """The hashes of `book`'s stored documents and whether the index matches the database, so
    that a command can tell that nothing needs doing before it loads an embedder or an
    encoder."""
    async with sessionmaker() as db:
        rows = await db.execute(
            select(Document.id, Document.content_hash).where(Document.book == book)
        )
        hashes = {row.id: row.content_hash for row in rows}
        expected = set(await db.scalars(select(Chunk.id)))
    # A missing collection is created (and filled) by a real ingestion.
    signature = await index.stored_signature()
    in_sync = signature is not None and await index.point_ids() == expected
    return StoredBook(book=book, hashes=hashes, signature=signature, index_in_sync=in_sync)
