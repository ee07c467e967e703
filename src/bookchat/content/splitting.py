"""Splitting what is too big for one chunk into valid Markdown pieces.

A line is cut at sentence ends, then spaces, then anywhere; a code fence is re-opened and
closed around each piece; a table repeats its header row; an admonition repeats its opening
and closing markers; anything else is cut between lines.
"""

from __future__ import annotations

import re

from bookchat.content.markdown import (
    Block,
    estimate_tokens,
    fence_end,
    fence_opening,
    is_fence_close,
    lines_tokens,
    make_block,
    parse_blocks,
)

SENTENCE_END_RE = re.compile(r"(?<=[.!?。！？۔])\s+")
_TABLE_DELIMITER_RE = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_CODE_PART_RE = re.compile(r" \(part (?P<number>\d+) of (?P<total>\d+)\)$")


def _split_chars(text: str, budget: int) -> list[str]:
    pieces: list[str] = []
    while text:
        # estimate_tokens never decreases as a prefix grows, so binary search is sound.
        low, high = 1, len(text)
        while low < high:
            middle = (low + high + 1) // 2
            if estimate_tokens(text[:middle]) <= budget:
                low = middle
            else:
                high = middle - 1
        pieces.append(text[:low])
        text = text[low:]
    return pieces


def _split_text(text: str, budget: int, depth: int = 0) -> list[str]:
    """Split one line into parts under budget: at sentence ends, then spaces, then anywhere."""
    if estimate_tokens(text) <= budget:
        return [text]
    if depth >= 2:
        return _split_chars(text, budget)
    parts = SENTENCE_END_RE.split(text.strip()) if depth == 0 else text.split()
    if len(parts) <= 1:
        return _split_text(text, budget, depth + 1)
    pieces: list[str] = []
    current: list[str] = []
    used = 0
    for part in parts:
        tokens = estimate_tokens(part)
        if tokens > budget:
            if current:
                pieces.append(" ".join(current))
                current, used = [], 0
            pieces.extend(_split_text(part, budget, depth + 1))
            continue
        if current and used + tokens > budget:
            pieces.append(" ".join(current))
            current, used = [], 0
        current.append(part)
        used += tokens
    if current:
        pieces.append(" ".join(current))
    return pieces


def _line_blocks(lines: list[str], *, fence_aware: bool) -> list[Block]:
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        fence = fence_opening(lines[index]) if fence_aware else None
        if fence is not None:
            end = fence_end(lines, index, fence)
            blocks.append(make_block("fence", lines[index:end]))
            index = end
        else:
            blocks.append(make_block("line", [lines[index]]))
            index += 1
    return blocks


def _trim_blank_edges(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _pack_blocks(
    blocks: list[Block], budget: int, limit: int, *, blank_between: bool
) -> list[list[str]]:
    """Pack blocks into pieces of about `budget` tokens; a block up to `limit` stays whole."""
    pieces: list[list[str]] = []
    current: list[str] = []
    used = 0
    for block in blocks:
        if block.tokens > budget:
            pieces.append(current)
            current, used = [], 0
            if block.tokens <= limit:
                pieces.append(block.lines)
            else:
                pieces.extend(split_block(block, budget, limit))
            continue
        if current and used + block.tokens > budget:
            pieces.append(current)
            current, used = [], 0
        if current and blank_between:
            current.append("")
        current.extend(block.lines)
        used += block.tokens
    pieces.append(current)
    trimmed = (_trim_blank_edges(piece) for piece in pieces)
    return [piece for piece in trimmed if piece]


def _wrapped(
    prefix: list[str],
    inner: list[Block],
    suffix: list[str],
    budget: int,
    limit: int,
    *,
    blank_between: bool,
) -> list[list[str]] | None:
    wrapper = lines_tokens(prefix) + lines_tokens(suffix)
    room = budget - wrapper
    if room < max(8, budget // 4):
        return None
    pieces = _pack_blocks(inner, room, limit - wrapper, blank_between=blank_between)
    return [[*prefix, *piece, *suffix] for piece in pieces] or None


def _pack_code(lines: list[str], budget: int) -> list[list[str]]:
    """Pack code lines, cutting at blank lines when that keeps pieces at least half full."""
    units: list[list[str]] = []
    for line in lines:
        if units and (not line.strip() or units[-1][-1].strip()):
            units[-1].append(line)
        else:
            units.append([line])
    pieces: list[list[str]] = []
    current: list[str] = []
    used = 0
    for unit in units:
        tokens = lines_tokens(unit)
        if used + tokens > budget and used >= budget // 2:
            pieces.append(current)
            current, used = [], 0
        if used + tokens <= budget:
            current.extend(unit)
            used += tokens
            continue
        for line in unit:
            line_tokens = estimate_tokens(line)
            if line_tokens > budget:
                pieces.append(current)
                pieces.extend([part] for part in _split_text(line, budget))
                current, used = [], 0
                continue
            if used + line_tokens > budget:
                pieces.append(current)
                current, used = [], 0
            current.append(line)
            used += line_tokens
    pieces.append(current)
    trimmed = (_trim_blank_edges(piece) for piece in pieces)
    return [piece for piece in trimmed if piece]


def _wrapped_code(
    opener: str, inner: list[str], closer: str, budget: int
) -> list[list[str]] | None:
    """The code in fenced pieces, each opener marked "(part i of n)": a piece is not the whole
    block, to a model reading it and to the offline answerer, which quotes whole blocks only."""
    widest = f"{opener}{code_part(99, 99)}"
    room = budget - estimate_tokens(widest) - estimate_tokens(closer)
    if room < max(8, budget // 4):
        return None
    pieces = _pack_code(inner, room)
    if len(pieces) < 2:
        return [[opener, *piece, closer] for piece in pieces] or None
    return [
        [f"{opener}{code_part(number, len(pieces))}", *piece, closer]
        for number, piece in enumerate(pieces, 1)
    ]


def code_part(number: int, total: int) -> str:
    """What follows a fence's info string on a piece of a split code block."""
    return f" (part {number} of {total})"


def code_part_of(opener: str) -> tuple[int, int] | None:
    """Which piece of a split code block a fence's opening line marks (part, of how many), or
    None for a whole block."""
    found = _CODE_PART_RE.search(opener)
    return (int(found.group("number")), int(found.group("total"))) if found else None


def without_code_part(line: str) -> str:
    """A fence's opening line as the book wrote it, without the mark of a piece."""
    return _CODE_PART_RE.sub("", line)


def split_block(block: Block, budget: int, limit: int) -> list[list[str]]:
    """Split a block over `limit` into valid Markdown pieces of about `budget` tokens.

    Every piece is at most `limit` tokens; nested blocks that fit under it stay whole.
    """
    lines = block.lines
    pieces: list[list[str]] | None = None
    if block.kind == "line":
        return [[part] for part in _split_text(lines[0], budget)]
    if block.kind == "fence" and len(lines) > 1:
        fence = fence_opening(lines[0]) or "```"
        closed = len(lines) > 1 and is_fence_close(lines[-1], fence)
        inner = lines[1:-1] if closed else lines[1:]
        indent = lines[0][: len(lines[0]) - len(lines[0].lstrip())]
        closer = lines[-1] if closed else indent + fence
        pieces = _wrapped_code(lines[0], inner, closer, budget)
    elif block.kind == "table" and len(lines) > 2 and _TABLE_DELIMITER_RE.match(lines[1]):
        rows = _line_blocks(lines[2:], fence_aware=False)
        pieces = _wrapped(lines[:2], rows, [], budget, limit, blank_between=False)
    elif block.kind == "admonition" and len(lines) > 2:
        inner_blocks = parse_blocks(lines[1:-1], None)
        pieces = _wrapped([lines[0]], inner_blocks, [lines[-1]], budget, limit, blank_between=True)
    if pieces is None:
        # No wrapper to repeat (or it is too big to repeat): split at line boundaries.
        units = _line_blocks(lines, fence_aware=block.kind in ("list", "admonition"))
        pieces = _pack_blocks(units, budget, limit, blank_between=False)
    return pieces
