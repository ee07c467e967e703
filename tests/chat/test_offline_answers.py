"""What a reader gets from the offline (extractive) answerer through the chat API, on the
repository's sample book."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import AppFactory
from tests.factories import ask, book_settings

SAMPLE_BOOK = Path(__file__).resolve().parents[2] / "sample_book"


class TestOfflineAnswersOnTheSampleBook:
    async def test_a_what_is_question_gets_the_definition_first(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url, SAMPLE_BOOK)
        async with app_factory(settings) as client:
            body = await ask(client, "What is Physical AI?")

        assert body["model"] == "extractive"
        assert body["response"].startswith(
            "Physical AI refers to systems whose decisions become motion in the real world, "
            "through wheels, arms, grippers, or legs. [1]"
        )
        first = next(c for c in body["citations"] if c["index"] == 1)
        assert first["cited"] is True
        assert first["page_url"].startswith("https://example.org/book/foundations/")

    async def test_a_how_to_question_gets_a_whole_code_block(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url, SAMPLE_BOOK)
        async with app_factory(settings) as client:
            body = await ask(client, "How do I write a publisher in rclpy?")

        code = body["response"].split("```python\n", 1)[1].split("\n```", 1)[0]
        talker = (SAMPLE_BOOK / "02-ros2" / "01-nodes-topics-services.md").read_text()
        assert code.startswith("import rclpy")
        assert "class Talker(Node):" in code
        assert f"```python\n{code}\n```" in talker  # the book's block, whole

    async def test_a_selection_that_does_not_answer_says_so(
        self, sqlite_url: str, app_factory: AppFactory
    ) -> None:
        settings = await book_settings(sqlite_url, SAMPLE_BOOK)
        selection = (
            "Physical AI operates in real-time environments. A walking robot whose balance "
            "controller pauses for a tenth of a second may fall."
        )
        async with app_factory(settings) as client:
            body = await ask(client, "What is quantum computing?", selected_text=selection)

        assert body["mode"] == "selected_text"
        assert body["response"].startswith("The selected text does not answer this")
        assert "Physical AI operates" not in body["response"]
        assert [c["cited"] for c in body["citations"]] == [False]
