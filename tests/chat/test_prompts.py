"""The prompt: numbered sources and a history that fits its budget."""

from __future__ import annotations

from bookchat.chat.prompts import book_messages, format_sources, trim_history
from bookchat.providers.base import ChatMessage, Source


def test_sources_are_numbered_with_their_heading_path() -> None:
    text = format_sources(
        [
            Source(index=1, title="Nodes", section="Publishers", text=" Publish with rclpy. "),
            Source(index=2, title="Gazebo", text="Simulate first."),
        ]
    )
    assert text == "[1] Nodes > Publishers\nPublish with rclpy.\n\n[2] Gazebo\nSimulate first."


def test_history_keeps_the_newest_messages_that_fit() -> None:
    history = [ChatMessage("user", "x" * 400), ChatMessage("assistant", "y" * 40)] * 3
    kept = trim_history(history, token_budget=120)
    assert kept == history[-2:]


def test_book_messages_order() -> None:
    messages = book_messages(
        title="T",
        question="Q?",
        sources=[],
        history=[ChatMessage("user", "earlier"), ChatMessage("assistant", "reply")],
        history_token_budget=1000,
    )
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert "no passage of the book matched" in messages[0].content
    assert messages[-1].content == "Q?"
