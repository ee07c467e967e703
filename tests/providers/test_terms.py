"""The words the relevance gate, the reranker and the offline answerer compare."""

from __future__ import annotations

import asyncio

from bookchat.providers.sparse import Bm25Encoder
from bookchat.providers.terms import content_terms, term_id, words


def test_content_terms_are_stemmed_without_stop_words() -> None:
    assert content_terms("How do I create the ROS 2 publishers?") == [
        "creat",
        "ros",
        "2",
        "publish",
    ]


def test_words_split_on_anything_that_is_not_a_word_character() -> None:
    assert words("rclpy.create_node(), `ros2 topic list`") == [
        "rclpy",
        "create_node",
        "ros2",
        "topic",
        "list",
    ]


def test_the_terms_are_the_ones_bm25_indexes() -> None:
    text = "Publishers send messages on topics; subscribers receive them."
    encoder = Bm25Encoder()
    by_term = asyncio.run(encoder.encode_query(" ".join(content_terms(text))))
    by_text = asyncio.run(encoder.encode_query(text))
    assert by_term.indices == by_text.indices


def test_term_ids_are_the_sparse_index_ids() -> None:
    text = "How do I launch a Gazebo simulation?"
    vector = asyncio.run(Bm25Encoder().encode_query(text))
    assert sorted({term_id(term) for term in content_terms(text)}) == vector.indices
