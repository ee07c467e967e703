"""Ingestion into the database and the index: idempotence, updates, pruning, failures."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select
from tokenizers import Tokenizer

from bookchat.container import Container, open_container
from bookchat.content.chunker import embedding_text
from bookchat.content.loader import load_folder
from bookchat.content.models import Chunk, Document, document_id_for
from bookchat.core.config import Settings
from bookchat.retrieval.index import IndexLocked, IndexMismatch
from tests.conftest import MINI_BOOK, make_settings, openai_settings
from tests.fakes.embedding_model import letter_pair_tokenizer, write_tiny_model
from tests.fakes.openai_server import FakeOpenAIServer

BASE = "https://example.org/book"


def copy_book(tmp_path: Path) -> Path:
    target = tmp_path / "book"
    shutil.copytree(MINI_BOOK, target)
    return target


async def ingest_folder(container: Container, folder: Path, *, prune: bool = False) -> object:
    return await container.ingestor.ingest(load_folder(folder, BASE), prune=prune, reconcile=True)


async def chunk_ids(container: Container) -> set[uuid.UUID]:
    async with container.sessionmaker() as db:
        return set(await db.scalars(select(Chunk.id)))


async def assert_in_agreement(container: Container) -> None:
    """The index holds exactly the database's chunks."""
    assert await container.index.point_ids() == await chunk_ids(container)


class TestIngest:
    async def test_first_ingest_stores_and_indexes_every_page(self, database_url: str) -> None:
        async with open_container(make_settings(database_url)) as container:
            report = await ingest_folder(container, MINI_BOOK)
            await assert_in_agreement(container)
            async with container.sessionmaker() as db:
                documents = {d.source_path: d for d in await db.scalars(select(Document))}

        assert sorted(report.added) == [  # type: ignore[attr-defined]
            "01-basics/01-messaging.md",
            "01-basics/02-cameras.md",
            "02-motion/walking.md",
            "index.md",
        ]
        assert "drafts.md" not in documents
        messaging = documents["01-basics/01-messaging.md"]
        assert messaging.title == "Messaging"
        assert messaging.module == "Basics"
        assert messaging.page_url == f"{BASE}/basics/messaging"
        assert documents["01-basics/02-cameras.md"].page_url == f"{BASE}/basics/camera-guide"
        assert documents["02-motion/walking.md"].module == "Motion"

    async def test_chunks_link_to_their_heading(self, sqlite_url: str) -> None:
        async with open_container(make_settings(sqlite_url)) as container:
            await ingest_folder(container, MINI_BOOK)
            async with container.sessionmaker() as db:
                urls = set(await db.scalars(select(Chunk.page_url)))
        assert f"{BASE}/basics/messaging#publishers-and-subscribers" in urls
        assert f"{BASE}/motion/walking#balance" in urls

    async def test_chunks_under_the_page_title_link_to_the_page(self, sqlite_url: str) -> None:
        # Docusaurus renders the page title (an h1) without an id: `#mini-book` lands nowhere.
        async with open_container(make_settings(sqlite_url)) as container:
            await ingest_folder(container, MINI_BOOK)
            async with container.sessionmaker() as db:
                rows = (await db.execute(select(Chunk.heading_path, Chunk.page_url))).all()
        assert (["Mini Book"], f"{BASE}/") in [tuple(row) for row in rows]
        assert all("#" not in url for path, url in rows if len(path) == 1)

    async def test_chunk_ids_are_stable_across_releases(self, sqlite_url: str) -> None:
        # Ids hash the embedded text: a change to it would re-embed every stored point.
        async with open_container(make_settings(sqlite_url)) as container:
            await ingest_folder(container, MINI_BOOK)
            stored = await chunk_ids(container)
        assert {
            uuid.UUID("6e326007-7052-5cff-83c3-c35127c58307"),  # Messaging > Publishers...
            uuid.UUID("8b6a69ae-f5fa-574f-a409-715b2ea21432"),  # Messaging > Request and reply
            uuid.UUID("2c1cf91a-77a9-5c54-8e9b-3ae81b2b4211"),  # Mini Book
        } <= stored

    async def test_unchanged_reingest_changes_nothing(self, database_url: str) -> None:
        async with open_container(make_settings(database_url)) as container:
            await ingest_folder(container, MINI_BOOK)
            before = await chunk_ids(container)
            report = await ingest_folder(container, MINI_BOOK)
            after = await chunk_ids(container)

        assert report.counts == {  # type: ignore[attr-defined]
            "added": 0,
            "updated": 0,
            "unchanged": 4,
            "removed": 0,
            "failed": 0,
            "chunks": 0,
        }
        assert before == after

    async def test_changed_page_is_replaced(self, database_url: str, tmp_path: Path) -> None:
        book = copy_book(tmp_path)
        async with open_container(make_settings(database_url)) as container:
            await ingest_folder(container, book)
            page = book / "02-motion" / "walking.md"
            page.write_text(page.read_text().replace("zero moment point", "centre of pressure"))
            report = await ingest_folder(container, book)
            await assert_in_agreement(container)
            hits = await container.retriever.search("centre of pressure support polygon")
            old = await container.retriever.search("zero moment point")

        assert report.updated == ["02-motion/walking.md"]  # type: ignore[attr-defined]
        assert report.unchanged == [  # type: ignore[attr-defined]
            "01-basics/01-messaging.md",
            "01-basics/02-cameras.md",
            "index.md",
        ]
        assert hits[0].source_path == "02-motion/walking.md"
        assert all("zero moment point" not in hit.text for hit in old)

    async def test_prune_removes_vanished_pages(self, database_url: str, tmp_path: Path) -> None:
        book = copy_book(tmp_path)
        async with open_container(make_settings(database_url)) as container:
            await ingest_folder(container, book)
            (book / "01-basics" / "02-cameras.md").unlink()
            kept = await ingest_folder(container, book)
            pruned = await ingest_folder(container, book, prune=True)
            await assert_in_agreement(container)
            hits = await container.retriever.search("depth camera stereo disparity")

        assert kept.removed == []  # type: ignore[attr-defined]
        assert pruned.removed == ["01-basics/02-cameras.md"]  # type: ignore[attr-defined]
        assert all(hit.source_path != "01-basics/02-cameras.md" for hit in hits)

    async def test_delete_document(self, sqlite_url: str) -> None:
        async with open_container(make_settings(sqlite_url)) as container:
            await ingest_folder(container, MINI_BOOK)
            document_id = document_id_for("02-motion/walking.md")
            assert await container.ingestor.delete_document(document_id) is True
            assert await container.ingestor.delete_document(document_id) is False
            await assert_in_agreement(container)
            async with container.sessionmaker() as db:
                remaining = await db.scalar(select(func.count()).select_from(Document))
        assert remaining == 3

    async def test_reconcile_repairs_the_index(self, sqlite_url: str) -> None:
        async with open_container(make_settings(sqlite_url)) as container:
            await ingest_folder(container, MINI_BOOK)
            ids = sorted(await chunk_ids(container))
            await container.index.delete_points(ids[:2])
            readded, deleted = await container.ingestor.reconcile()
            await assert_in_agreement(container)
        assert (readded, deleted) == (2, 0)


class TestFailures:
    async def test_embedding_failure_keeps_the_previous_version(
        self, database_url: str, tmp_path: Path, fake_openai: FakeOpenAIServer
    ) -> None:
        settings = make_settings(
            database_url, embeddings_provider="openai", **openai_settings(fake_openai)
        )
        book = copy_book(tmp_path)
        async with open_container(settings) as container:
            await ingest_folder(container, book)
            page = book / "02-motion" / "walking.md"
            page.write_text(page.read_text().replace("stance phase", "landing phase"))
            fake_openai.fail_next(500)
            report = await ingest_folder(container, book)
            await assert_in_agreement(container)
            hits = await container.retriever.search("stance phase swing phase", limit=1)

        assert list(report.failed) == ["02-motion/walking.md"]  # type: ignore[attr-defined]
        assert hits[0].source_path == "02-motion/walking.md"
        assert "stance phase" in hits[0].text

    async def test_embedder_change_needs_reindex(
        self, sqlite_url: str, fake_openai: FakeOpenAIServer
    ) -> None:
        lexical = make_settings(sqlite_url)
        dense = make_settings(
            sqlite_url,
            qdrant_path=lexical.qdrant_path,
            embeddings_provider="openai",
            **openai_settings(fake_openai),
        )
        async with open_container(lexical) as container:
            await ingest_folder(container, MINI_BOOK)
            before = await chunk_ids(container)

        with pytest.raises(IndexMismatch, match="bookchat reindex"):
            async with open_container(dense):
                pass

        async with open_container(dense, check_index=False) as container:
            rebuilt = await container.ingestor.reindex()
            await assert_in_agreement(container)
            # The pages are cut again for the new embedder: the same way, so the same ids.
            assert await chunk_ids(container) == before
        async with open_container(dense) as container:
            hits = await container.retriever.search("depth camera", limit=1)
        assert rebuilt > 0
        assert container.retriever.name == "hybrid"
        assert hits[0].source_path == "01-basics/02-cameras.md"

    async def test_second_process_gets_a_clear_message(self, sqlite_url: str) -> None:
        settings = make_settings(sqlite_url)
        async with open_container(settings):
            with pytest.raises(IndexLocked, match="POST /api/v1/content/ingest"):
                async with open_container(settings):
                    pass


WINDOW = 256  # what all-MiniLM-L6-v2 reads
GRASPING = "---\ntitle: Grasping\n---\n\n# Grasping\n\n## Grasp planning\n\n" + "\n\n".join(
    " ".join(
        f"Sentence {s} of paragraph {p} says how the planner scores a grasp on the object."
        for s in range(6)
    )
    for p in range(8)
)


def window_book(tmp_path: Path) -> Path:
    """The mini book and a page whose long section fills many chunks."""
    book = copy_book(tmp_path)
    (book / "02-motion" / "grasping.md").write_text(GRASPING)
    return book


def small_window_settings(
    database_url: str, tmp_path: Path, window: int = WINDOW, **overrides: str
) -> Settings:
    """A local embedder that reads `window` tokens and counts about two a word: twice what the
    chunker estimates."""
    model = write_tiny_model(
        tmp_path / "model", tokenizer=letter_pair_tokenizer(), max_length=window
    )
    return make_settings(
        database_url,
        embeddings_provider="fastembed",
        embeddings_model="BAAI/bge-small-en-v1.5",
        embeddings_model_path=str(model),
        fastembed_cache_dir=str(tmp_path / "cache"),
        **overrides,
    )


async def embedded_sizes(container: Container, tokenizer: Tokenizer) -> dict[str, int]:
    """Each stored chunk's embedded text (id: tokens), as the embedding model counts it."""
    async with container.sessionmaker() as db:
        chunks = list(await db.scalars(select(Chunk)))
    return {
        str(c.id): len(tokenizer.encode(embedding_text(c.heading_path, c.text)).ids) for c in chunks
    }


class TestEmbedderWindow:
    """No chunk holds more than the embedding model reads: text past its window is invisible."""

    async def test_no_stored_chunk_is_longer_than_the_model_reads(
        self, sqlite_url: str, tmp_path: Path
    ) -> None:
        settings = small_window_settings(sqlite_url, tmp_path)
        tokenizer = letter_pair_tokenizer()
        async with open_container(settings) as container:
            embedder = container.providers.embedder
            assert embedder is not None
            assert embedder.max_input_tokens == WINDOW
            report = await ingest_folder(container, window_book(tmp_path))
            sizes = await embedded_sizes(container, tokenizer)
            async with container.sessionmaker() as db:
                texts = list(
                    await db.scalars(
                        select(Chunk.text)
                        .join(Document)
                        .where(Document.source_path == "02-motion/grasping.md")
                    )
                )

        assert report.failed == {}  # type: ignore[attr-defined]
        assert max(sizes.values()) <= WINDOW
        # Nothing was lost to fit: every sentence of the long page is in a chunk.
        sentences = re.findall(r"Sentence \d+ of paragraph \d+ [^.]*\.", GRASPING)
        assert len(sentences) == 48
        assert all(any(sentence in text for text in texts) for sentence in sentences)

    async def test_reindex_fits_the_chunks_to_a_new_embedder(
        self, sqlite_url: str, tmp_path: Path
    ) -> None:
        # Chunks planned for BM25 alone (480 estimated tokens), then a 256-token embedder.
        lexical = make_settings(sqlite_url)
        book = window_book(tmp_path)
        async with open_container(lexical) as container:
            await ingest_folder(container, book)
            before = await embedded_sizes(container, letter_pair_tokenizer())
        assert max(before.values()) > WINDOW

        dense = small_window_settings(sqlite_url, tmp_path, qdrant_path=lexical.qdrant_path)
        async with open_container(dense, check_index=False) as container:
            await container.ingestor.reindex()
            await assert_in_agreement(container)
            after = await embedded_sizes(container, letter_pair_tokenizer())
            hits = await container.retriever.search("how the planner scores a grasp", limit=1)

        assert max(after.values()) <= WINDOW
        assert hits[0].source_path == "02-motion/grasping.md"

    async def test_a_window_no_chunk_fits_fails_the_page_with_the_reason(
        self, sqlite_url: str, tmp_path: Path
    ) -> None:
        # 24 tokens: not even the smallest chunk of a page fits; storing it cut is not an option.
        settings = small_window_settings(sqlite_url, tmp_path, window=24)
        async with open_container(settings) as container:
            report = await ingest_folder(container, MINI_BOOK)
            stored = await chunk_ids(container)

        assert stored == set()
        assert set(report.failed) == {  # type: ignore[attr-defined]
            "01-basics/01-messaging.md",
            "01-basics/02-cameras.md",
            "02-motion/walking.md",
            "index.md",
        }
        reason = report.failed["index.md"]  # type: ignore[attr-defined]
        assert "more than the 24 the embedding model reads" in reason
        assert "EMBEDDINGS_MODEL" in reason
