"""Rewriting chapters piece by piece with a model: retrying, bounded concurrency, timeouts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bookchat.chapters.generation import Rewriter
from bookchat.chapters.pieces import plan
from bookchat.content.markdown import estimate_tokens
from bookchat.core.errors import LLMError, LLMTimeout
from bookchat.providers.openai import OpenAIChatModel
from tests.chapters.fakes import (
    BODY,
    CHAPTER,
    FENCE,
    KEPT,
    broken_first_then,
    dropping_reply,
    sent_text,
    shouting_reply,
)
from tests.fakes.openai_server import FakeOpenAIServer


@pytest.fixture
async def model(fake_openai: FakeOpenAIServer) -> AsyncIterator[OpenAIChatModel]:
    chat = OpenAIChatModel(
        model="gpt-4o-mini", api_key="sk-test", base_url=fake_openai.base_url, max_retries=0
    )
    yield chat
    await chat.aclose()


def rewriter(model: OpenAIChatModel, **overrides: Any) -> Rewriter:
    options: dict[str, Any] = {
        "concurrency": 4,
        "section_tokens": 1200,
        "timeout_seconds": 10.0,
        **overrides,
    }
    return Rewriter(model, **options)


class TestRewriter:
    async def test_rewrites_each_piece_and_keeps_the_markdown(
        self, fake_openai: FakeOpenAIServer, model: OpenAIChatModel
    ) -> None:
        fake_openai.reply = shouting_reply
        result = await rewriter(model, section_tokens=100).rewrite(CHAPTER, "Shout.")
        assert result.upper() == CHAPTER.upper()
        for kept in KEPT:
            assert kept in result
        assert result.startswith("---\ntitle: Simulation on a GPU\n")  # frontmatter kept
        requests = fake_openai.chat_requests()
        assert len(requests) == len(plan(CHAPTER, 100))
        assert all(r["messages"][0]["content"].startswith("Shout.") for r in requests)
        assert all(r["temperature"] == 0.3 and r["max_tokens"] > 256 for r in requests)

    async def test_retries_a_broken_piece_once(
        self, fake_openai: FakeOpenAIServer, model: OpenAIChatModel
    ) -> None:
        fake_openai.reply = broken_first_then(shouting_reply)
        result = await rewriter(model).rewrite(BODY, "Shout.")
        assert result.upper() == BODY.upper()
        assert len(fake_openai.chat_requests()) == 2

    async def test_a_piece_broken_twice_fails_the_whole_chapter(
        self, fake_openai: FakeOpenAIServer, model: OpenAIChatModel
    ) -> None:
        def reply(request: dict[str, Any]) -> str:
            # Only the piece with the code block breaks; the others are fine.
            broken = "⟦P6⟧" in sent_text(request)
            return dropping_reply(request) if broken else shouting_reply(request)

        fake_openai.reply = reply
        with pytest.raises(LLMError, match="twice"):
            await rewriter(model, section_tokens=100).rewrite(BODY, "Shout.")

    async def test_concurrency_is_bounded(
        self, fake_openai: FakeOpenAIServer, model: OpenAIChatModel
    ) -> None:
        started: list[float] = []

        def reply(request: dict[str, Any]) -> str:
            started.append(time.monotonic())
            return shouting_reply(request)

        fake_openai.reply = reply
        fake_openai.ttft = 0.3
        sections = [f"## Part {n}\n\nSome words about part {n}." for n in range(4)]
        text = "\n\n".join(sections)
        budget = max(estimate_tokens(section) for section in sections)
        assert len(plan(text, budget)) == 4
        result = await rewriter(model, section_tokens=budget, concurrency=2).rewrite(text, "x")
        assert result == text.upper()
        assert len(started) == 4
        # Two calls at once, then the next two once those have answered.
        first_wave = [t for t in started if t - started[0] < 0.15]
        assert len(first_wave) == 2
        assert max(started) - started[0] >= 0.25

    async def test_pieces_without_prose_need_no_model(
        self, fake_openai: FakeOpenAIServer, model: OpenAIChatModel
    ) -> None:
        text = f"{FENCE}\n\n[bridge]: https://docs.ros.org/en/humble/\n"
        assert await rewriter(model).rewrite(text, "Shout.") == text
        assert fake_openai.chat_requests() == []

    async def test_deadline(self, fake_openai: FakeOpenAIServer, model: OpenAIChatModel) -> None:
        fake_openai.reply = shouting_reply
        fake_openai.ttft = 1.0
        with pytest.raises(LLMTimeout, match="GENERATION_TIMEOUT_SECONDS"):
            await rewriter(model, timeout_seconds=0.2).rewrite(BODY, "Shout.")

    async def test_closing_the_stream_cancels_the_calls_in_flight(
        self, fake_openai: FakeOpenAIServer, model: OpenAIChatModel
    ) -> None:
        fake_openai.reply = shouting_reply
        text = "## A\n\nFirst.\n\n## B\n\nSecond."
        pieces = plan(text, 10)
        fake_openai.hang_next(5.0, times=2)
        stream = rewriter(model, section_tokens=10).pieces(pieces, "Shout.")
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.3)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await stream.aclose()
        tasks = [t for t in asyncio.all_tasks() if "_rewrite_piece" in repr(t.get_coro())]
        assert tasks == []
