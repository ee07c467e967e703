"""A chapter as the pieces a model rewrites, and the checks a rewritten piece must pass.

A chapter is cut on its headings into pieces under a token budget (a long section is cut
between blocks, never inside a code fence, table or admonition: content/markdown.py says where
blocks start and end). Each piece's non-prose parts are protected (chapters/protect.py). An
answer is accepted when every placeholder is there exactly once and in place, and the restored
text keeps the original's headings, code blocks, links and table rows.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

from bookchat.chapters.protect import (
    Protected,
    frontmatter_end,
    placeholder_problems,
    protect,
    restore,
)
from bookchat.content.docusaurus import HeadingSlugger
from bookchat.content.markdown import estimate_tokens, parse_blocks

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
    start = frontmatter_end(lines) or 0
    units = [(0, start)] if start else []
    blocks = _located_blocks(lines, start)
    headings = [line for line, kind in blocks if kind == "heading" and line > start]
    for begin, end in itertools.pairwise([start, *headings, len(lines)]):
        if begin >= end:
            continue
        if weight(begin, end) <= budget:
            units.append((begin, end))
        else:
            inside = [(line, kind) for line, kind in blocks if begin <= line < end]
            units.extend(_block_units(inside, begin, end))
    return units


def _located_blocks(lines: list[str], start: int) -> list[tuple[int, str]]:
    """The first line and the kind of each Markdown block from `start` on (section headings
    are blocks of their own; headings inside admonitions and fences are not)."""
    located: list[tuple[int, str]] = []
    line = start
    for block in parse_blocks(lines[start:], HeadingSlugger()):
        while not lines[line].strip():  # blank lines between blocks belong to none
            line += 1
        located.append((line, block.kind))
        line += len(block.lines)
    return located


def _block_units(blocks: list[tuple[int, str]], begin: int, end: int) -> list[tuple[int, int]]:
    starts: list[int] = []
    after_heading = False
    for line, kind in blocks:
        if not after_heading:
            starts.append(line)
        after_heading = kind == "heading"
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


# --- pieces -----------------------------------------------------------------------------------


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
