"""Rewriting a chapter with a language model without breaking it.

Shared by personalized and translated chapters. A chapter is cut into pieces on its headings
(a piece stays under `GENERATION_SECTION_TOKENS`; a long section is cut between blocks, never
inside a code fence, table or admonition), the non-prose parts of each piece are protected
(`content/protect.py`), the pieces are rewritten concurrently (at most `GENERATION_CONCURRENCY`
model calls at a time) and put back in order. Every answer is checked: each placeholder exactly
once and in place, then the same headings, code blocks, links and table rows as the original.
A piece that fails is asked for once more, with the reasons; failing twice is an `LLMError`
(502), so a broken chapter is never returned.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

import structlog

from bookchat.chapters.protect import (
    Protected,
    frontmatter_end,
    placeholder_problems,
    protect,
    restore,
)
from bookchat.content.docusaurus import HeadingSlugger
from bookchat.content.markdown import (
    ADMONITION_CLOSE_RE,
    ADMONITION_OPEN_RE,
    HEADING_RE,
    estimate_tokens,
    fence_end,
    fence_opening,
    parse_blocks,
)
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

_WRAPPED_RE = re.compile(r"\A\s*```[ \t]*(?:markdown|md|mdx)?[ \t]*\n(?P<body>.*)\n```\s*\Z", re.S)
_LEADING_BLANK_LINES_RE = re.compile(r"\A(?:[ \t]*\n)*")


# --- cutting a chapter into pieces -----------------------------------------------------------


def split_sections(text: str, budget: int) -> list[str]:
    """Cut Markdown into consecutive pieces of at most `budget` estimated tokens (a single block
    over the budget stays whole); `"\\n".join(pieces) == text`."""
    lines = text.split("\n")
    totals = [0]
    for line in lines:
        totals.append(totals[-1] + estimate_tokens(line))

    def weight(start: int, end: int) -> int:
        return totals[end] - totals[start]

    pieces: list[tuple[int, int]] = []
    for start, end in _units(lines, weight, budget):
        if pieces and weight(pieces[-1][0], end) <= budget:
            pieces[-1] = (pieces[-1][0], end)
        else:
            pieces.append((start, end))
    return ["\n".join(lines[start:end]) for start, end in pieces]


def _units(
    lines: list[str], weight: Callable[[int, int], int], budget: int
) -> list[tuple[int, int]]:
    """Line ranges that must not be cut: the frontmatter, whole sections that fit the budget,
    and the blocks of those that do not (a heading stays with the block after it)."""
    units: list[tuple[int, int]] = []
    start = frontmatter_end(lines) or 0
    if start:
        units.append((0, start))
    bounds = [start, *_section_starts(lines, start), len(lines)]
    for begin, end in itertools.pairwise(bounds):
        if begin >= end:
            continue
        if weight(begin, end) <= budget:
            units.append((begin, end))
        else:
            units.extend(_block_units(lines, begin, end))
    return units


def _section_starts(lines: list[str], start: int) -> list[int]:
    """Lines of the headings outside code fences and admonitions."""
    starts: list[int] = []
    depth = 0
    index = start
    while index < len(lines):
        line = lines[index]
        fence = fence_opening(line)
        if fence is not None:
            index = fence_end(lines, index, fence)
            continue
        if ADMONITION_OPEN_RE.match(line):
            depth += 1
        elif ADMONITION_CLOSE_RE.match(line):
            depth = max(0, depth - 1)
        elif depth == 0 and HEADING_RE.match(line) and index > start:
            starts.append(index)
        index += 1
    return starts


def _block_units(lines: list[str], begin: int, end: int) -> list[tuple[int, int]]:
    blocks = parse_blocks(lines[begin:end], HeadingSlugger())
    starts: list[int] = []
    position = begin
    after_heading = False
    for block in blocks:
        while not lines[position].strip():
            position += 1
        if not after_heading:
            starts.append(position)
        after_heading = block.kind == "heading"
        position += len(block.lines)
    if not starts:
        return [(begin, end)]
    starts[0] = begin  # leading blank lines stay with the first unit
    return list(zip(starts, [*starts[1:], end], strict=True))


# --- checking an answer -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shape:
    """What a rewrite must keep: heading levels, code blocks, link targets, table rows."""

    headings: tuple[int, ...]
    blocks: tuple[str, ...]
    links: tuple[str, ...]
    table_rows: int


def shape_of(text: str) -> Shape:
    protected = protect(text)
    spans = protected.spans
    rows = sum(1 for line in protected.text.split("\n") if line.lstrip().startswith("|"))
    return Shape(
        headings=tuple(s.text.count("#") for s in spans if s.kind == "heading"),
        blocks=tuple(s.text for s in spans if s.kind in ("fence", "math")),
        links=tuple(sorted(s.text for s in spans if s.kind in ("url", "target"))),
        table_rows=rows + sum(1 for s in spans if s.kind == "table"),
    )


def structure_problems(expected: Shape, text: str) -> list[str]:
    """How a restored answer's structure differs from the original's (empty when it does not)."""
    found = shape_of(text)
    problems = []
    if found.headings != expected.headings:
        problems.append(
            f"the headings changed: {len(found.headings)} instead of {len(expected.headings)},"
            " or at other levels"
        )
    if found.blocks != expected.blocks:
        problems.append("code blocks were added, removed or changed")
    if found.links != expected.links:
        problems.append("links or URLs were added, removed or changed")
    if found.table_rows != expected.table_rows:
        problems.append(f"{found.table_rows} table rows instead of {expected.table_rows}")
    return problems


def unwrap(answer: str) -> str:
    """The answer without the code fence some models put around a whole Markdown reply."""
    answer = answer.replace("\r\n", "\n")
    wrapped = _WRAPPED_RE.match(answer)
    return wrapped.group("body") if wrapped else answer


def keep_edges(source: str, text: str) -> str:
    """`text` with the blank lines around `source` (pieces are joined back line by line)."""
    lead = _LEADING_BLANK_LINES_RE.match(source)
    core = _LEADING_BLANK_LINES_RE.sub("", text).rstrip()
    return (lead.group() if lead else "") + core + source[len(source.rstrip()) :]


# --- rewriting --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Piece:
    """One piece of a chapter: its original text, what the model sees, what it must keep."""

    number: int
    source: str
    protected: Protected
    shape: Shape


def plan(text: str, budget: int) -> list[Piece]:
    """The pieces a chapter is rewritten in; placeholders are numbered across the chapter."""
    pieces: list[Piece] = []
    first = 0
    for number, source in enumerate(split_sections(text, budget)):
        protected = protect(source, first)
        first += len(protected.spans)
        pieces.append(Piece(number, source, protected, shape_of(source)))
    return pieces


def accept(piece: Piece, answer: str) -> tuple[str, list[str]]:
    """The model's answer for `piece` restored, and what is wrong with it (nothing: accepted)."""
    answer = unwrap(answer)
    problems = placeholder_problems(answer, piece.protected)
    if problems:
        return answer, problems
    restored = keep_edges(piece.source, restore(answer, piece.protected))
    return restored, structure_problems(piece.shape, restored)


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
