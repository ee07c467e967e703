"""The offline answerer quotes its sources and nothing else."""

from __future__ import annotations

from bookchat.providers.base import ChatPrompt, Source
from bookchat.providers.extractive import NO_CONTEXT_ANSWER, ExtractiveChatModel, split_sentences

NODES = Source(
    index=1,
    title="Nodes",
    text=(
        "A node is one process in a ROS 2 graph. Nodes publish messages on topics. "
        "Each node should do one job well.\n\n```python\nnode = Node('talker')\n```\n"
        "Subscribers receive every message published on their topic."
    ),
)
GAZEBO = Source(
    index=2,
    title="Simulation",
    text="Gazebo simulates physics, sensors and actuators. It runs robots before hardware exists.",
)


def answer(question: str, *sources: Source) -> str:
    return ExtractiveChatModel().answer(question, sources)


class TestExtractive:
    def test_without_sources_says_it_is_offline(self) -> None:
        assert answer("What is ROS 2?") == NO_CONTEXT_ANSWER

    def test_picks_matching_sentences_with_markers(self) -> None:
        text = answer("What does Gazebo simulate?", NODES, GAZEBO)
        assert text == "Gazebo simulates physics, sensors and actuators. [2]"

    def test_keeps_book_order_and_groups_markers(self) -> None:
        text = answer("How do nodes publish messages on topics?", NODES, GAZEBO)
        assert text.startswith("Nodes publish messages on topics.")
        assert text.endswith("[1]")
        assert "[2]" not in text

    def test_every_sentence_comes_from_a_source(self) -> None:
        text = answer("node topic message subscriber gazebo physics", NODES, GAZEBO)
        for sentence in text.replace(" [1]", "").replace(" [2]", "").split(". "):
            body = sentence.rstrip(".")
            assert body in NODES.text or body in GAZEBO.text

    def test_no_overlap_falls_back_to_the_opening(self) -> None:
        assert answer("explain this", GAZEBO).startswith("Gazebo simulates physics")

    def test_code_is_not_quoted(self) -> None:
        assert all("```" not in s for s in split_sentences(NODES.text))

    async def test_stream_matches_complete(self) -> None:
        model = ExtractiveChatModel()
        prompt = ChatPrompt(messages=[], question="What does Gazebo simulate?", sources=[GAZEBO])
        completion = await model.complete(prompt)
        pieces = [piece async for piece in model.stream(prompt)]
        assert all(isinstance(piece, str) for piece in pieces)  # the offline model counts nothing
        assert "".join(str(piece) for piece in pieces) == completion.text
        assert len(pieces) > 1
        assert completion.model == "extractive"
        await model.aclose()


class TestQuotableSentences:
    def test_headings_tables_admonitions_and_lead_ins_are_not_quoted(self) -> None:
        text = (
            "### A Minimal Publisher\n\nThis node publishes a counter every second.\n\n"
            "The node is created as follows:\n\n```python\nnode = Node('talker')\n```\n\n"
            "| sensor | rate |\n| --- | --- |\n| IMU | 200 Hz |\n\n"
            ":::tip Remember\nQueues drop old messages when they are full.\n:::\n\n"
            "- Publishers never wait for subscribers to read a message."
        )
        assert split_sentences(text) == [
            "This node publishes a counter every second.",
            "Queues drop old messages when they are full.",
            "Publishers never wait for subscribers to read a message.",
        ]

    def test_overlapping_chunks_are_not_quoted_twice(self) -> None:
        first = Source(index=1, title="A", text="Topics carry messages between nodes. Nodes run.")
        second = Source(index=2, title="A", text="Topics carry messages between nodes. More text.")
        text = answer("What do topics carry between nodes?", first, second)
        assert text.count("Topics carry messages between nodes.") == 1
