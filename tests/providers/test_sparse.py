"""BM25 sparse encoding: offline construction, stop words, stemming, determinism, no blocking."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bookchat.providers.sparse import (
    Bm25Encoder,
    SparseEncoder,
    SparseVector,
    english_stop_words,
)

T = TypeVar("T")

SAMPLE_BOOK = Path(__file__).resolve().parents[2] / "sample_book"


@pytest.fixture(scope="module")
def encoder() -> Bm25Encoder:
    return Bm25Encoder()


@pytest.fixture(scope="module")
def fastembed_bm25() -> Any:
    """fastembed's own `Qdrant/bm25`, configured as the encoder used it before it was ours."""
    from fastembed.sparse.bm25 import Bm25

    from bookchat.providers import sparse

    folder = str(sparse._BM25_DATA)
    return Bm25(
        sparse.BM25_MODEL,
        cache_dir=folder,
        specific_model_path=folder,
        stopwords=set(english_stop_words()),
        language="english",
    )


async def loop_ticks_during(work: Awaitable[T]) -> tuple[T, int]:
    """What `work` returns, and how often another task ran on the loop meanwhile."""
    done = False
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    result = await work
    done = True
    await task
    return result, ticks


def index_of(vector: SparseVector) -> int:
    assert len(vector.indices) == 1, vector
    return vector.indices[0]


class TestConstruction:
    def test_is_a_sparse_encoder_in_the_qdrant_bm25_term_space(self) -> None:
        encoder = Bm25Encoder()
        assert isinstance(encoder, SparseEncoder)
        assert encoder.name == "fastembed:Qdrant/bm25"

    def test_never_opens_a_network_connection_nor_loads_fastembed(self) -> None:
        # An audit hook in a fresh interpreter refuses any DNS lookup or connection, so this
        # holds on a machine that does have network access, where a download would succeed.
        script = textwrap.dedent(
            """
            import sys

            def refuse_network(event, args):
                if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
                    raise RuntimeError(f"network access: {event} {args!r}")

            sys.addaudithook(refuse_network)
            from bookchat.providers.sparse import Bm25Encoder

            [vector] = Bm25Encoder()._encode_documents(["Robots publish"])
            assert len(vector.indices) == 2, vector
            assert "fastembed" not in sys.modules and "onnxruntime" not in sys.modules
            print("no network")
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "no network"

    def test_ships_its_own_stop_words(self) -> None:
        words = english_stop_words()
        assert 120 <= len(words) <= 200
        assert {"the", "a", "of", "is", "what", "how"} <= words
        assert all(word == word.strip().lower() and word for word in words)
        # Words that carry meaning in a robotics book stay searchable.
        assert not {"up", "down", "robot", "first"} & words


class TestEncoding:
    async def test_a_query_of_stop_words_only_is_empty(self, encoder: Bm25Encoder) -> None:
        vector = await encoder.encode_query("What is it, and how would they do that?")
        assert vector == SparseVector(indices=[], values=[])

    async def test_stop_words_are_not_indexed(self, encoder: Bm25Encoder) -> None:
        [with_stop_words] = await encoder.encode_documents(["the robot and the arm"])
        [without] = await encoder.encode_documents(["robot arm"])
        assert with_stop_words.indices == without.indices

    async def test_stemming_maps_word_forms_to_one_term(self, encoder: Bm25Encoder) -> None:
        publish = index_of(await encoder.encode_query("publish"))
        assert index_of(await encoder.encode_query("publishers")) == publish
        assert index_of(await encoder.encode_query("Publishing")) == publish
        [document] = await encoder.encode_documents(["Publishers, publishing."])
        assert document.indices == [publish]

    async def test_documents_and_queries_share_terms(self, encoder: Bm25Encoder) -> None:
        text = "A ROS 2 node publishes joint states on a topic; subscribers read the topic."
        [document] = await encoder.encode_documents([text])
        query = await encoder.encode_query(text)
        assert document.indices == query.indices
        assert query.values == [1.0] * len(query.indices)
        assert len(document.indices) == len(set(document.indices))
        assert document.indices == sorted(document.indices)
        topic = index_of(await encoder.encode_query("topic"))
        node = index_of(await encoder.encode_query("node"))
        weights = dict(zip(document.indices, document.values, strict=True))
        assert weights[topic] > weights[node] > 0  # "topic" occurs twice

    async def test_output_is_plain_lists_and_deterministic(self, encoder: Bm25Encoder) -> None:
        texts = ["Gazebo simulates the robot.", "Isaac Sim renders photoreal scenes.", ""]
        first = await encoder.encode_documents(texts)
        again = await Bm25Encoder().encode_documents(texts)
        assert first == again
        assert first[2] == SparseVector(indices=[], values=[])
        for vector in first:
            assert type(vector.indices) is list
            assert type(vector.values) is list
            assert all(type(i) is int and 0 <= i < 2**32 for i in vector.indices)
            assert all(type(v) is float for v in vector.values)

    async def test_empty_input(self, encoder: Bm25Encoder) -> None:
        assert await encoder.encode_documents([]) == []

    async def test_order_is_kept(self, encoder: Bm25Encoder) -> None:
        words = ["lidar", "camera", "gripper", "actuator", "servo"]
        vectors = await encoder.encode_documents(words)
        assert [index_of(v) for v in vectors] == [
            index_of(await encoder.encode_query(w)) for w in words
        ]

    async def test_encoding_leaves_the_event_loop_free(self, encoder: Bm25Encoder) -> None:
        texts = [f"chunk {i} about robots, sensors and controllers " * 40 for i in range(500)]
        vectors, ticks = await loop_ticks_during(encoder.encode_documents(texts))
        assert len(vectors) == 500
        # Had encoding run on the loop, the ticker could not have run before it finished.
        assert ticks > 0

    async def test_a_long_query_leaves_the_event_loop_free(self, encoder: Bm25Encoder) -> None:
        vector, ticks = await loop_ticks_during(
            encoder.encode_query("robots, sensors and controllers " * 2000)
        )
        assert len(vector.indices) == 3
        assert ticks > 0

    def test_a_question_is_encoded_while_every_worker_thread_is_busy(
        self, encoder: Bm25Encoder
    ) -> None:
        # Worker threads hash passwords and embed texts; a question's BM25 terms must not wait
        # for one. On a loop of its own, whose only worker thread is kept busy.
        async def encode_with_the_pool_busy() -> SparseVector:
            loop = asyncio.get_running_loop()
            loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
            release = threading.Event()
            busy = loop.run_in_executor(None, release.wait, 30)
            try:
                async with asyncio.timeout(5):
                    return await encoder.encode_query("How do I create a ROS 2 publisher?")
            finally:
                release.set()
                await busy

        vector = asyncio.run(encode_with_the_pool_busy())

        assert len(vector.indices) == 4  # create, ros, 2, publisher


class TestSameTermSpaceAsFastembed:
    """Indexes built while fastembed computed BM25 must keep matching: the same ids and the
    same weights, float for float, for every chunk of the sample book and for awkward text."""

    @staticmethod
    def texts() -> list[str]:
        book = [path.read_text(encoding="utf-8") for path in sorted(SAMPLE_BOOK.rglob("*.md"))]
        paragraphs = [part for text in book for part in text.split("\n\n") if part.strip()]
        awkward = [
            "",
            "   ",
            "_ __ a_b snake_case ＿ ‿",
            "don't robot's ROS 2's “quoted” «guillemets» — dashes – here",
            "x" * 40 + " " + "y" * 41 + " İstanbul ÉCOLE straße ǅemal",
            "日本語のテキスト 中文 العربية Ελληνικά",
            "café naïve coöperate résumé 123 4.5e-3 0x1F",
            "robots robots robots, robot; ROBOTS!",
        ]
        return [*book, *paragraphs, *awkward]

    def test_documents(self, encoder: Bm25Encoder, fastembed_bm25: Any) -> None:
        texts = self.texts()
        ours = encoder._encode_documents(texts)
        for text, mine, theirs in zip(texts, ours, fastembed_bm25.embed(texts), strict=True):
            pairs = sorted(zip(theirs.indices.tolist(), theirs.values.tolist(), strict=True))
            assert mine == SparseVector(
                indices=[int(i) for i, _ in pairs], values=[float(v) for _, v in pairs]
            ), text[:80]

    def test_queries(self, encoder: Bm25Encoder, fastembed_bm25: Any) -> None:
        for text in self.texts():
            [theirs] = list(fastembed_bm25.query_embed(text))
            assert encoder._encode_query(text).indices == sorted(theirs.indices.tolist()), text
