"""BM25 sparse encoding: offline construction, stop words, stemming, determinism, no blocking."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest

from bookchat.providers.sparse import (
    FastEmbedBm25Encoder,
    SparseEncoder,
    SparseVector,
    english_stop_words,
)


@pytest.fixture(scope="module")
def encoder() -> FastEmbedBm25Encoder:
    return FastEmbedBm25Encoder()


def index_of(vector: SparseVector) -> int:
    assert len(vector.indices) == 1, vector
    return vector.indices[0]


class TestConstruction:
    def test_builds_with_hf_hub_offline(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert isinstance(FastEmbedBm25Encoder(), SparseEncoder)

    def test_builds_without_hf_hub_offline(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        assert FastEmbedBm25Encoder().name == "fastembed:Qdrant/bm25"

    def test_never_opens_a_network_connection(self) -> None:
        # An audit hook in a fresh interpreter refuses any DNS lookup or connection, so this
        # holds on a machine that does have network access, where a download would succeed.
        script = textwrap.dedent(
            """
            import os, sys

            def refuse_network(event, args):
                if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
                    raise RuntimeError(f"network access: {event} {args!r}")

            sys.addaudithook(refuse_network)
            from bookchat.providers.sparse import FastEmbedBm25Encoder

            os.environ.pop("HF_HUB_OFFLINE", None)
            online = FastEmbedBm25Encoder()
            os.environ["HF_HUB_OFFLINE"] = "1"
            offline = FastEmbedBm25Encoder()
            assert online._encode_documents(["Robots publish"]) == offline._encode_documents(
                ["Robots publish"]
            )
            print("no network")
            """
        )
        env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
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
    async def test_a_query_of_stop_words_only_is_empty(self, encoder: FastEmbedBm25Encoder) -> None:
        vector = await encoder.encode_query("What is it, and how would they do that?")
        assert vector == SparseVector(indices=[], values=[])

    async def test_stop_words_are_not_indexed(self, encoder: FastEmbedBm25Encoder) -> None:
        [with_stop_words] = await encoder.encode_documents(["the robot and the arm"])
        [without] = await encoder.encode_documents(["robot arm"])
        assert with_stop_words.indices == without.indices

    async def test_stemming_maps_word_forms_to_one_term(
        self, encoder: FastEmbedBm25Encoder
    ) -> None:
        publish = index_of(await encoder.encode_query("publish"))
        assert index_of(await encoder.encode_query("publishers")) == publish
        assert index_of(await encoder.encode_query("Publishing")) == publish
        [document] = await encoder.encode_documents(["Publishers, publishing."])
        assert document.indices == [publish]

    async def test_documents_and_queries_share_terms(self, encoder: FastEmbedBm25Encoder) -> None:
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

    async def test_output_is_plain_lists_and_deterministic(
        self, encoder: FastEmbedBm25Encoder
    ) -> None:
        texts = ["Gazebo simulates the robot.", "Isaac Sim renders photoreal scenes.", ""]
        first = await encoder.encode_documents(texts)
        again = await FastEmbedBm25Encoder().encode_documents(texts)
        assert first == again
        assert first[2] == SparseVector(indices=[], values=[])
        for vector in first:
            assert type(vector.indices) is list
            assert type(vector.values) is list
            assert all(type(i) is int and 0 <= i < 2**32 for i in vector.indices)
            assert all(type(v) is float for v in vector.values)

    async def test_empty_input(self, encoder: FastEmbedBm25Encoder) -> None:
        assert await encoder.encode_documents([]) == []

    async def test_order_is_kept(self, encoder: FastEmbedBm25Encoder) -> None:
        words = ["lidar", "camera", "gripper", "actuator", "servo"]
        vectors = await encoder.encode_documents(words)
        assert [index_of(v) for v in vectors] == [
            index_of(await encoder.encode_query(w)) for w in words
        ]

    async def test_encoding_leaves_the_event_loop_free(self, encoder: FastEmbedBm25Encoder) -> None:
        texts = [f"chunk {i} about robots, sensors and controllers " * 40 for i in range(500)]
        done = False
        ticks_while_encoding = 0

        async def ticker() -> None:
            nonlocal ticks_while_encoding
            while not done:
                ticks_while_encoding += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        vectors = await encoder.encode_documents(texts)
        done = True
        await task
        assert len(vectors) == 500
        # Had encoding run on the loop, the ticker could not have run before it finished.
        assert ticks_while_encoding > 0
