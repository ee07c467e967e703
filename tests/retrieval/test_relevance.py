"""The relevance gate and the reranker, as the reader meets them: what is refused, what comes
first, and how both follow the book as it changes."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bookchat.container import open_container
from bookchat.content.loader import load_folder
from bookchat.core.config import Settings
from bookchat.providers.factory import build_reranker
from bookchat.providers.sparse import SparseVector
from bookchat.retrieval.index import LexicalRow
from bookchat.retrieval.lexical import LexicalIndex
from bookchat.retrieval.relevance import Candidate, Query, RelevanceGate
from bookchat.retrieval.rerank import LexicalReranker
from tests.conftest import make_settings
from tests.retrieval.test_service import hit

BASE = "https://example.org/book"


def book_of(term_sets: list[set[int]]) -> LexicalIndex:
    """A lexical index of chunks holding these terms (weight 1 each)."""
    return LexicalIndex.build(
        LexicalRow(
            chunk_id=uuid.UUID(int=number),
            document_id="d",
            module=None,
            vector=SparseVector(indices=sorted(terms), values=[1.0] * len(terms)),
        )
        for number, terms in enumerate(term_sets)
    )


def filler(topic: str, sentences: int) -> str:
    """Prose about `topic`, long enough to make a section a chunk of its own."""
    verbs = ["shapes", "limits", "guides", "changes", "explains", "affects"]
    things = ["latency", "reliability", "the design", "each node", "the robot", "the graph"]
    return " ".join(
        f"In practice {topic} {verbs[i % len(verbs)]} {things[(i * 5) % len(things)]} in step {i}."
        for i in range(sentences)
    )


def write_book(root: Path) -> Path:
    (root / "ros").mkdir(parents=True)
    (root / "ros" / "topics.md").write_text(
        "# Topics\n\n"
        "## DDS: The Foundation\n\n"
        "In ROS 2, DDS carries every message between a publisher and its subscribers. A ROS 2 "
        "publisher never waits for a subscriber; each ROS 2 publisher offers QoS to every "
        "subscriber, and a publisher may outlive them. How a ROS 2 publisher finds a "
        "subscriber is up to DDS discovery, so a publisher needs no broker. DDS creates a "
        "writer for each publisher you create.\n\n"
        + filler("DDS", 12)
        + "\n\n## Creating a Publisher\n\n"
        "Call `create_publisher` on a ROS 2 node with a message type and a topic name.\n\n"
        + filler("the node", 60)
        + "\n",
        encoding="utf-8",
    )
    (root / "sim").mkdir()
    (root / "sim" / "worlds.md").write_text(
        "# Simulation Worlds\n\n"
        "Gazebo loads a world file that places models on a ground plane.\n\n"
        '```xml\n<world name="kitchen">\n  <model name="cup"><pose>0 0 1 0 0 0</pose>'
        "</model>\n</world>\n```\n\n" + filler("the world file", 30) + "\n",
        encoding="utf-8",
    )
    return root


@pytest.fixture
def book(tmp_path: Path) -> Path:
    return write_book(tmp_path / "book")


class TestGate:
    async def test_an_off_topic_question_sharing_common_words_is_refused(
        self, sqlite_url: str, book: Path
    ) -> None:
        async with open_container(make_settings(sqlite_url)) as container:
            await container.ingestor.ingest(load_folder(book, BASE))
            off_topic = await container.retriever.retrieve("Who won the 2018 football world cup?")
            capital = await container.retriever.retrieve("What is the capital of France?")
            in_book = await container.retriever.retrieve("How does Gazebo load a world file?")

        assert off_topic == []
        assert capital == []
        assert in_book[0].source_path == "sim/worlds.md"

    async def test_the_gate_follows_the_book_as_it_changes(
        self, sqlite_url: str, book: Path
    ) -> None:
        async with open_container(make_settings(sqlite_url)) as container:
            await container.ingestor.ingest(load_folder(book, BASE))
            before = await container.retriever.retrieve("What is a quaternion orientation?")
            (book / "sim" / "poses.md").write_text(
                "# Poses\n\nA quaternion stores an orientation without gimbal lock.\n",
                encoding="utf-8",
            )
            await container.ingestor.ingest(load_folder(book, BASE))
            after = await container.retriever.retrieve("What is a quaternion orientation?")

        assert before == []
        assert [s.source_path for s in after][:1] == ["sim/poses.md"]

    def test_words_the_book_never_uses_weigh_against_the_question(self) -> None:
        statistics = book_of([{1, 2}, {1, 3}, {1}])
        gate = RelevanceGate(min_coverage=0.25, max_unknown=0.6)
        # Term 9 is not in the book: a question mostly about it is not covered.
        foreign = Query.of("q", ["a", "b"], [1, 9], statistics)
        known = Query.of("q", ["a", "b"], [2, 3], statistics)
        candidate = Candidate(hit=hit("u", 1.0), rank=1, terms=frozenset({1, 2}), coverage=0.5)

        assert foreign.unknown > 0.6
        assert not gate.covers(foreign, [candidate])
        assert gate.covers(known, [candidate])
        assert not gate.covers(known, [])

    def test_a_dense_match_vouches_for_a_paraphrase(self) -> None:
        statistics = book_of([{1}])
        question = Query.of("q", ["x"], [9], statistics)  # no word in common with the book
        candidate = Candidate(
            hit=hit("u", 1.0), rank=1, terms=frozenset({1}), coverage=0.0, dense=0.62
        )
        assert RelevanceGate(min_dense_score=0.3).covers(question, [candidate])
        assert not RelevanceGate(min_dense_score=0.7).covers(question, [candidate])

    def test_words_in_common_with_a_passage_far_in_meaning_do_not_cover(self) -> None:
        """The question "What is the speed of light?" and a section on speeding up scenes with
        baked lighting share every word; MiniLM puts them 0.27 apart (the in-book questions of
        textbook-a reach at least 0.34 with its threshold 0.35)."""
        statistics = book_of([{1, 2}, {3}])
        question = Query.of("q", ["speed", "light"], [1, 2], statistics)
        gate = RelevanceGate(min_dense_score=0.35)

        def lighting(similarity: float) -> Candidate:
            return Candidate(
                hit=hit("u", 1.0), rank=1, terms=frozenset({1, 2}), coverage=1.0, dense=similarity
            )

        assert not gate.covers(question, [lighting(0.27)])
        assert not gate.covers(question, [lighting(0.31)])
        assert gate.covers(question, [lighting(0.34)])
        assert gate.covers(question, [replace(lighting(0.0), dense=None)])  # no embedder


class TestReranker:
    async def test_the_section_whose_heading_is_the_question_comes_first(
        self, sqlite_url: str, book: Path
    ) -> None:
        query = "How do I create a ROS 2 publisher?"
        async with open_container(make_settings(sqlite_url)) as container:
            await container.ingestor.ingest(load_folder(book, BASE))
            reranked = await container.retriever.retrieve(query, limit=3)
            container.retriever.reranker = None
            fused = await container.retriever.retrieve(query, limit=3)

        assert reranked[0].section == "Creating a Publisher"
        # BM25 alone prefers the section that repeats "publisher" and "ROS 2" most.
        assert fused[0].section == "DDS: The Foundation"
        assert {s.section for s in reranked} == {s.section for s in fused}

    async def test_a_cross_encoder_that_cannot_be_had_falls_back_to_lexical(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        settings = Settings(
            reranker="cross-encoder",
            fastembed_cache_dir=str(tmp_path / "models"),
        )
        with capture_logs() as logs:
            reranker = await build_reranker(settings)
        assert isinstance(reranker, LexicalReranker)
        warning = next(log for log in logs if log["event"] == "rerank.unavailable")
        assert "HF_HUB_OFFLINE" in warning["reason"]
        assert "RERANKER=lexical" in warning["reason"]

    async def test_a_model_path_that_is_not_a_folder_is_named(self, tmp_path: Path) -> None:
        settings = Settings(
            reranker="cross-encoder",
            rerank_model_path=str(tmp_path / "missing"),
        )
        with capture_logs() as logs:
            assert isinstance(await build_reranker(settings), LexicalReranker)
        warning = next(log for log in logs if log["event"] == "rerank.unavailable")
        assert "RERANK_MODEL_PATH" in warning["reason"]

    async def test_none_keeps_fusion_order(self) -> None:
        assert await build_reranker(Settings(reranker="none")) is None
