"""The retriever's nearest section for a question it refuses (HybridRetriever.nearest)."""

from __future__ import annotations

from asgi_lifespan import LifespanManager

from bookchat.main import create_app
from tests.factories import book_settings


async def test_the_nearest_section_holds_enough_of_the_question(sqlite_url: str) -> None:
    settings = await book_settings(sqlite_url)
    app = create_app(settings)
    async with LifespanManager(app):
        retriever = app.state.container.retriever
        near = await retriever.nearest("Which walking gait do penguins use on ice?")
        # One shared word of little weight is not near: "walk" alone in a question about
        # ostriches and penguins.
        far = await retriever.nearest("How does an ostrich walk compared with a penguin?")
        nothing = await retriever.nearest("What is the capital of France?")
        stop_words = await retriever.nearest("why?")
        refused = await retriever.covers("Which walking gait do penguins use on ice?")
    assert refused is False
    assert near is not None
    # The section about gaits, not the one before it (small sibling sections keep their own
    # links: content/chunker.py).
    assert (near.title, near.section, near.page_url) == (
        "Walking",
        "Gait cycle",
        "https://example.org/book/motion/walking#gait-cycle",
    )
    assert far is None
    assert nothing is None
    assert stop_words is None
