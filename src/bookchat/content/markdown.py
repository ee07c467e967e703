"""Markdown syntax, defined once for the whole book: code fences, headings, frontmatter and
admonitions, how far each block runs, and the blocks the chunker cuts a body into, plus a
conservative token estimate.

The loader, the chunker, the chapter renderer (web/render.py) and the chapter rewriter
(chapters/generation.py, chapters/protect.py) all read these definitions, so they see the same
blocks: a fence or an admonition one of them keeps whole is whole for the others too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from bookchat.content.docusaurus import HeadingSlugger

# MDX has no indented code blocks and fences inside list items are indented, so a fence may
# start at any indentation (CommonMark alone would allow only 0-3 spaces).
FENCE_OPEN_RE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
HEADING_RE = re.compile(r"^ {0,3}(?P<hashes>#{1,6})(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*$")
# The `---` lines around a page's YAML frontmatter (only at the very top of the text).
FRONTMATTER_FENCE_RE = re.compile(r"^---[ \t]*$")

# Admonitions are Docusaurus's `:::tip`, `:::note[Title]`, `:::warning Real hardware` ... `:::`.
# An opening line is read in three ways, each with its own pattern:
# - ADMONITION_OPEN_RE: does the line open a `:::` block at all? Lenient (`::: tip` counts, and
#   anything may follow the kind's first letter): block structure (chunking, cutting a chapter
#   into pieces, finding where an admonition ends) uses it, so no block is ever cut in two.
# - ADMONITION_TITLE_RE: the kind and the title of a well-formed opening line, as Docusaurus
#   shows them (the renderer's aside: `:::note[Title]` or `:::note Title`, default "Note").
# - ADMONITION_MARKER_RE: the `:::kind` marker written tight, as Docusaurus writes it, and its
#   indent: the part a model rewriting the chapter must copy untouched (the title is prose).
# ADMONITION_CLOSE_RE is the bare `:::` line that closes any of them.
ADMONITION_OPEN_RE = re.compile(r"^[ \t]*:{3,}[ \t]*[A-Za-z]")
ADMONITION_TITLE_RE = re.compile(
    r"^[ \t]*:{3,}[ \t]*(?P<kind>[A-Za-z][\w-]*)"
    r"(?:\[(?P<bracketed>[^\]]*)\]|[ \t]+(?P<title>.*?))?[ \t]*$"
)
ADMONITION_MARKER_RE = re.compile(r"^(?P<indent>[ \t]*)(?P<marker>:{3,}[A-Za-z][\w-]*)")
ADMONITION_CLOSE_RE = re.compile(r"^[ \t]*:{3,}[ \t]*$")

_TOKEN_RE = re.compile(r"[^\W_]+|\S")
_WIDE_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_LIST_ITEM_RE = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])(?:[ \t]+|$)")


# --- fences, tables and admonitions -----------------------------------------------------------


def is_fence_close(line: str, fence: str) -> bool:
    """Tell whether `line` closes a fence opened with `fence` (same char, at least as long)."""
    stripped = line.strip()
    return len(stripped) >= len(fence) and stripped == fence[0] * len(stripped)


def fence_opening(line: str) -> str | None:
    """Return the fence marker (e.g. "```") when `line` opens a code fence, else None."""
    match = FENCE_OPEN_RE.match(line)
    if match is None:
        return None
    fence = match.group("fence")
    if fence[0] == "`" and "`" in match.group("info"):
        return None
    return fence


def fence_end(lines: list[str], start: int, fence: str) -> int:
    """The index after the line closing the fence opened at `start` (or the end of the text)."""
    for index in range(start + 1, len(lines)):
        if is_fence_close(lines[index], fence):
            return index + 1
    return len(lines)


def split_fenced(lines: list[str]) -> Iterator[tuple[bool, list[str]]]:
    """Yield (inside_fence, lines) runs; an unclosed fence runs to the end of the text."""
    run: list[str] = []
    fence: str | None = None
    for line in lines:
        if fence is None:
            opening = fence_opening(line)
            if opening is None:
                run.append(line)
                continue
            if run:
                yield False, run
            run, fence = [line], opening
        else:
            run.append(line)
            if is_fence_close(line, fence):
                yield True, run
                run, fence = [], None
    if run:
        yield fence is not None, run


def admonition_end(lines: list[str], start: int) -> int | None:
    """The index after the `:::` closing the admonition opened at `start`, or None."""
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
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return None


def is_table_line(line: str) -> bool:
    """Tell whether `line` is a table row (pipe tables: it starts with `|`)."""
    return line.lstrip().startswith("|")


# --- blocks and tokens ------------------------------------------------------------------------


def estimate_tokens(text: str) -> int:
    """Estimate WordPiece/BPE tokens conservatively, without a tokenizer model.

    Each punctuation or symbol character counts 1 (BERT-style tokenizers split every one).
    A run of ASCII letters counts 1 per started 6 characters, so long or rare identifiers
    count as several pieces. Runs that mix in digits count 1 per 2 characters (numbers,
    versions and hashes split into small pieces), and runs of other scripts count 1 per
    2 characters, CJK/kana/hangul 1 per character, because English vocabularies hold few
    whole words in them. Whitespace is free. The result is additive over whitespace-separated
    parts, which the chunker relies on.
    """
    total = 0
    for piece in _TOKEN_RE.findall(text):
        size = len(piece)
        if size == 1:
            total += 1
        elif piece.isascii():
            total += (size + 5) // 6 if piece.isalpha() else (size + 1) // 2
        else:
            wide = len(_WIDE_RE.findall(piece))
            total += wide + (size - wide + 1) // 2
    return total


def lines_tokens(lines: list[str]) -> int:
    return sum(estimate_tokens(line) for line in lines)


@dataclass(slots=True)
class Block:
    kind: str  # heading, fence, table, admonition, list, paragraph, line
    lines: list[str]
    tokens: int
    level: int = 0
    title: str = ""
    anchor: str | None = None


def make_block(kind: str, lines: list[str]) -> Block:
    return Block(kind, lines, lines_tokens(lines))


def _starts_block(line: str) -> bool:
    return bool(
        fence_opening(line)
        or HEADING_RE.match(line)
        or ADMONITION_OPEN_RE.match(line)
        or ADMONITION_CLOSE_RE.match(line)
        or is_table_line(line)
    )


def _list_end(lines: list[str], start: int) -> int:
    index = start + 1
    while index < len(lines):
        line = lines[index]
        if not line.strip():
            following = index + 1
            while following < len(lines) and not lines[following].strip():
                following += 1
            if following < len(lines) and (
                lines[following][0] in " \t" or _LIST_ITEM_RE.match(lines[following])
            ):
                index = following
                continue
            return index
        fence = fence_opening(line)
        if fence is not None and line[0] in " \t":
            index = fence_end(lines, index, fence)
            continue
        if line[0] not in " \t" and not _LIST_ITEM_RE.match(line) and _starts_block(line):
            return index
        index += 1
    return index


def _paragraph_end(lines: list[str], start: int) -> int:
    index = start + 1
    while index < len(lines):
        line = lines[index]
        if not line.strip() or _starts_block(line) or _LIST_ITEM_RE.match(line):
            return index
        index += 1
    return index


def parse_blocks(lines: list[str], slugger: HeadingSlugger | None) -> list[Block]:
    """Split lines into blocks; headings are section headings only when a slugger is given."""
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.strip():
            index += 1
            continue
        fence = fence_opening(line)
        heading = HEADING_RE.match(line)
        block_end = admonition_end(lines, index) if ADMONITION_OPEN_RE.match(line) else None
        if fence is not None:
            end = fence_end(lines, index, fence)
            blocks.append(make_block("fence", lines[index:end]))
        elif heading is not None and slugger is not None:
            title, anchor = slugger.heading(heading.group("text") or "")
            block = make_block("heading", [line])
            block.level, block.title, block.anchor = len(heading.group("hashes")), title, anchor
            blocks.append(block)
            end = index + 1
        elif block_end is not None:
            end = block_end
            blocks.append(make_block("admonition", lines[index:end]))
            if slugger is not None:
                _count_inner_headings(lines[index + 1 : end - 1], slugger)
        elif is_table_line(line):
            end = index + 1
            while end < len(lines) and is_table_line(lines[end]):
                end += 1
            blocks.append(make_block("table", lines[index:end]))
        elif _LIST_ITEM_RE.match(line):
            end = _list_end(lines, index)
            blocks.append(make_block("list", lines[index:end]))
        else:
            end = _paragraph_end(lines, index)
            blocks.append(make_block("paragraph", lines[index:end]))
        index = end
    return blocks


def _count_inner_headings(lines: list[str], slugger: HeadingSlugger) -> None:
    # Docusaurus gives headings inside admonitions ids too, so later duplicates shift.
    index = 0
    while index < len(lines):
        fence = fence_opening(lines[index])
        if fence is not None:
            index = fence_end(lines, index, fence)
            continue
        heading = HEADING_RE.match(lines[index])
        if heading is not None:
            slugger.slug(heading.group("text") or "")
        index += 1
