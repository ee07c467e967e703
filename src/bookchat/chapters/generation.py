"""Rewriting a chapter with a language model without breaking it.

Shared by personalized and translated chapters. The chapter is cut into pieces
(chapters/pieces.py: under `GENERATION_SECTION_TOKENS` each, never inside a code fence, table or
admonition) whose non-prose parts are protected; the pieces are rewritten concurrently (at most
`GENERATION_CONCURRENCY` model calls at a time) and put back in order. Every answer is checked
(`pieces.accept`). A piece that fails is asked for once more, with the reasons; failing twice is
an `LLMError` (502), so a broken chapter is never returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import structlog

from bookchat.chapters.pieces import Piece, accept, plan
from bookchat.content.markdown import estimate_tokens
from bookchat.core.errors import LLMError, LLMTimeout
from bookchat.providers.base import ChatMessage, ChatModel, ChatPrompt

logger = structlog.get_logger(__name__)

TEMPERATURE = 0.3
MAX_ANSWER_TOKENS = 16_384
ATTEMPTS = 2

RULES = """\
How to handle the text you receive:
- It is Markdown in which tokens written like ⟦P12⟧ stand for code, links, markup and other \
parts that must not change. Copy every such token exactly as written, each exactly once, and \
keep it where it belongs in the sentence. A token that starts a line must still start a line; \
a token alone on its line must stay alone on its line.
- Keep every heading (same number, same order, none added), every list item, every table row \
and the paragraph breaks. Do not add code blocks, links, URLs or images.
- Answer with the rewritten Markdown only: no preamble, no notes, no code block around it."""


class Rewriter:
    """Rewrites chapters piece by piece with a chat model, checked, in bounded parallel."""

    def __init__(
        self,
        model: ChatModel,
        *,
        concurrency: int,
        section_tokens: int,
        timeout_seconds: float,
    ) -> None:
        self.model = model
        self.concurrency = concurrency
        self.section_tokens = section_tokens
        self.timeout_seconds = timeout_seconds

    def plan(self, text: str) -> list[Piece]:
        return plan(text, self.section_tokens)

    async def plan_off_loop(self, text: str) -> list[Piece]:
        """`plan` in a worker thread: a long chapter takes tens of milliseconds."""
        return await asyncio.to_thread(self.plan, text)

    async def rewrite(self, text: str, instructions: str) -> str:
        """The whole chapter rewritten following `instructions` (a system prompt)."""
        pieces = await self.plan_off_loop(text)
        return "\n".join([part async for part in self.pieces(pieces, instructions)])

    async def pieces(self, pieces: list[Piece], instructions: str) -> AsyncGenerator[str]:
        """The rewritten pieces in order, each as soon as it and those before it are done.

        All pieces start at once behind a semaphore. A piece that failed (reached in order)
        or the deadline of `GENERATION_TIMEOUT_SECONDS` cancels the others, and so does
        closing this generator.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_seconds
        semaphore = asyncio.Semaphore(self.concurrency)
        tasks = [
            asyncio.create_task(self._rewrite_piece(piece, instructions, semaphore))
            for piece in pieces
        ]
        try:
            for task in tasks:
                try:
                    text = await asyncio.wait_for(task, max(0.0, deadline - loop.time()))
                except TimeoutError:
                    raise LLMTimeout(
                        f"Rewriting the chapter took longer than {self.timeout_seconds:g} seconds"
                        " (GENERATION_TIMEOUT_SECONDS)."
                    ) from None
                yield text
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _rewrite_piece(
        self, piece: Piece, instructions: str, semaphore: asyncio.Semaphore
    ) -> str:
        if not piece.protected.has_prose:
            return piece.source  # only code, links and markup: nothing to rewrite
        problems: list[str] = []
        async with semaphore:
            for attempt in range(1, ATTEMPTS + 1):
                completion = await self.model.complete(self._prompt(piece, instructions, problems))
                restored, problems = await asyncio.to_thread(accept, piece, completion.text)
                if not problems:
                    return restored
                logger.warning(
                    "generation.answer_rejected",
                    piece=piece.number,
                    attempt=attempt,
                    problems=problems[:5],
                )
        raise LLMError(
            "The language model's answer broke the chapter's structure twice ("
            + "; ".join(problems[:3])
            + "), so it was not used. Try again."
        )

    def _prompt(self, piece: Piece, instructions: str, problems: list[str]) -> ChatPrompt:
        system = f"{instructions}\n\n{RULES}"
        if problems:
            system += (
                "\n\nA previous answer for this text was rejected because: "
                + "; ".join(problems[:10])
                + ". Follow the rules exactly this time."
            )
        text = piece.protected.text
        return ChatPrompt(
            messages=[
                ChatMessage(role="system", content=system),
                ChatMessage(role="user", content=text),
            ],
            question=text,
            temperature=TEMPERATURE,
            # Room for a longer answer than the text (translations grow); estimates run high.
            max_tokens=min(MAX_ANSWER_TOKENS, 4 * estimate_tokens(text) + 256),
        )
