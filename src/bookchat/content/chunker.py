"""Heading-aware chunking of a document's Markdown body for embedding and retrieval."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bookchat.content.docusaurus import HeadingSlugger, link_anchor
from bookchat.content.markdown import (
    Block,
    estimate_tokens,
    lines_tokens,
    parse_blocks,
)
from bookchat.content.splitting import SENTENCE_END_RE, split_block

SMALL_SECTION_TOKENS = 80
MIN_MAX_TOKENS = 64
HEADING_PATH_SEPARATOR = " > "


def embedding_text(heading_path: Sequence[str], text: str) -> str:
    """What is embedded and indexed for a chunk, and hashed into its id: the heading path, a
    blank line, the chunk's text.

    Changing it changes every stored chunk id (`content.models.chunk_id_for`), so every point
    is re-embedded on the next ingestion.
    """
    return HEADING_PATH_SEPARATOR.join(heading_path) + "\n\n" + text


@dataclass(frozen=True, slots=True)
class TextChunk:
    """A piece of a document's body small enough to embed, with the headings it sits under:
    what the chunker plans, before ingestion stores it as a `content.models.Chunk` row."""

    ordinal: int
    heading_path: tuple[str, ...]
    # Where a link to the chunk lands on the page; None for the page's top (the title).
    anchor: str | None
    text: str
    token_count: int

    @property
    def embedding_text(self) -> str:
        """The text that gets embedded and indexed (the module's `embedding_text`)."""
        return embedding_text(self.heading_path, self.text)


@dataclass(slots=True)
class _Section:
    level: int
    path: tuple[str, ...]
    anchor: str | None
    blocks: list[Block] = field(default_factory=list)


@dataclass(slots=True)
class _Item:
    lines: list[str]
    tokens: int
    prose: bool = False
    sticky: bool = False
    overlap: bool = False


def _fit_path(path: tuple[str, ...], limit: int) -> tuple[str, ...]:
    """Shorten absurdly long headings so the heading path never eats the chunk's budget."""
    parts = list(path)
    while estimate_tokens(HEADING_PATH_SEPARATOR.join(parts)) > limit:
        longest = max(range(len(parts)), key=lambda i: (estimate_tokens(parts[i]), -i))
        words = parts[longest].split()
        if len(words) > 1:
            parts[longest] = " ".join(words[: len(words) // 2])
        else:
            parts[longest] = parts[longest][: len(parts[longest]) // 2]
    return tuple(parts)


def _sections(body: str, title: str, path_limit: int) -> list[_Section]:
    slugger = HeadingSlugger()
    blocks = parse_blocks(body.split("\n"), slugger)
    sections: list[_Section] = []
    stack: list[tuple[int, str]] = []
    current = _Section(0, _fit_path((title,), path_limit), None)
    for block in blocks:
        if block.kind != "heading":
            current.blocks.append(block)
            continue
        if current.blocks:
            sections.append(current)
        while stack and stack[-1][0] >= block.level:
            stack.pop()
        stack.append((block.level, block.title))
        path = tuple(text for _, text in stack)
        if stack[0][0] != 1:
            path = (title, *path)
        anchor = link_anchor(block.level, block.anchor)
        current = _Section(block.level, _fit_path(path, path_limit), anchor, [block])
    if current.blocks:
        sections.append(current)
    return sections


def _overlap_item(chunk: list[_Item], overlap_tokens: int) -> _Item | None:
    """The last whole sentences (at most overlap_tokens) of the chunk's last prose block."""
    source = next((item for item in reversed(chunk) if item.prose), None)
    if source is None or overlap_tokens <= 0:
        return None
    text = " ".join(line.strip() for line in source.lines if line.strip())
    chosen: list[str] = []
    used = 0
    for sentence in reversed(SENTENCE_END_RE.split(text)):
        tokens = estimate_tokens(sentence)
        if used + tokens > overlap_tokens:
            break
        chosen.insert(0, sentence)
        used += tokens
    if not chosen:
        return None
    return _Item([" ".join(chosen)], used, overlap=True)


def _section_items(section: _Section, room: int, piece_budget: int) -> list[_Item]:
    items: list[_Item] = []
    for block in section.blocks:
        prose = block.kind == "paragraph"
        if block.tokens <= room:
            lead_in = prose and block.lines[-1].rstrip().endswith(":")
            sticky = block.kind == "heading" or lead_in
            items.append(_Item(block.lines, block.tokens, prose=prose, sticky=sticky))
        else:
            for piece in split_block(block, piece_budget, room):
                items.append(_Item(piece, lines_tokens(piece), prose=prose))
    return items


def _pack_section(
    section: _Section, *, target_tokens: int, overlap_tokens: int, max_tokens: int
) -> list[list[_Item]]:
    prefix = estimate_tokens(HEADING_PATH_SEPARATOR.join(section.path))
    room = max_tokens - prefix
    target = target_tokens - prefix
    piece_budget = min(room, max(target, room // 2))
    chunks: list[list[_Item]] = []
    current: list[_Item] = []
    used = 0
    for item in _section_items(section, room, piece_budget):
        if current and used + item.tokens > target:
            if all(i.sticky or i.overlap for i in current) and used + item.tokens <= room:
                current.append(item)
                used += item.tokens
                continue
            carried: list[_Item] = []
            while (
                current[-1].sticky
                and sum(1 for i in current if not i.overlap) > 1
                and _items_tokens(carried) + current[-1].tokens + item.tokens <= room
            ):
                carried.insert(0, current.pop())
            chunks.append(current)
            overlap = _overlap_item(current, overlap_tokens)
            current, used = carried, _items_tokens(carried)
            if overlap is not None and overlap.tokens + used + item.tokens <= room:
                current.insert(0, overlap)
                used += overlap.tokens
        current.append(item)
        used += item.tokens
    if current:
        chunks.append(current)
    return chunks


def _items_tokens(items: list[_Item]) -> int:
    return sum(item.tokens for item in items)


def _items_text(items: list[_Item]) -> str:
    return "\n\n".join("\n".join(item.lines) for item in items)


def chunk_document(
    body: str,
    *,
    title: str,
    target_tokens: int = 350,
    overlap_tokens: int = 50,
    max_tokens: int = 480,
) -> list[TextChunk]:
    """Split a Markdown body into heading-aware chunks of about `target_tokens` tokens, as
    `markdown.estimate_tokens` counts them (`planning.ChunkPlanner` fits them to an embedder).

    Blocks (code fences, tables, admonitions) stay whole unless one alone exceeds
    `max_tokens`; then it is split at line boundaries into valid Markdown pieces (fences
    reopened and marked "(part i of n)", table header repeated, admonition reopened).
    Over-long prose splits at lines, then sentence ends, then spaces. Every chunk's
    embedding_text is at most `max_tokens`.

    Merge rule: a section that fits in one chunk and is under 80 tokens absorbs the
    following sections while the merged chunk is still under 80 tokens and stays within
    `target_tokens`; an absorbed section must fit in one chunk and sit deeper than the
    section labelling the chunk (its subsections, never a sibling or a shallower section:
    the chunk's link is its label's heading, and everything in it lies under that heading).
    The chunk takes the heading path and anchor of its first section, except that bare
    headings (sections with no text of their own) hand the label to the first absorbed
    section with content, whose heading path already includes them when they are its
    parents. Bare headings that cannot be absorbed whole lead the next section's first chunk
    instead (within `max_tokens`), never form a chunk of their own unless the document ends
    or a shallower section follows.
    """
    if max_tokens < MIN_MAX_TOKENS:
        raise ValueError(f"max_tokens must be at least {MIN_MAX_TOKENS}")
    if not 0 < target_tokens <= max_tokens:
        raise ValueError("target_tokens must be positive and at most max_tokens")
    if not 0 <= overlap_tokens < target_tokens:
        raise ValueError("overlap_tokens must be non-negative and below target_tokens")

    sections = _sections(body, title, max_tokens // 4)
    packed = [
        _pack_section(
            section,
            target_tokens=target_tokens,
            overlap_tokens=overlap_tokens,
            max_tokens=max_tokens,
        )
        for section in sections
    ]
    merged = _merge(sections, packed, target_tokens=target_tokens, max_tokens=max_tokens)
    return [
        TextChunk(ordinal, section.path, section.anchor, text, _prefix_tokens(section) + tokens)
        for ordinal, (section, text, tokens) in enumerate(merged)
    ]


def _prefix_tokens(section: _Section) -> int:
    return estimate_tokens(HEADING_PATH_SEPARATOR.join(section.path))


def _heading_only(section: _Section) -> bool:
    return all(block.kind == "heading" for block in section.blocks)


def _merge(
    sections: list[_Section],
    packed: list[list[list[_Item]]],
    *,
    target_tokens: int,
    max_tokens: int,
) -> list[tuple[_Section, str, int]]:
    """Apply the small-section merge rule; return (labelling section, text, text tokens)."""
    merged: list[tuple[_Section, str, int]] = []
    index = 0
    while index < len(sections):
        first, parts = sections[index], packed[index]
        used = _items_tokens(parts[0])
        if len(parts) > 1 or _prefix_tokens(first) + used >= SMALL_SECTION_TOKENS:
            merged.extend((first, _items_text(part), _items_tokens(part)) for part in parts)
            index += 1
            continue
        label = None if _heading_only(first) else first
        texts = [_items_text(parts[0])]
        following = index + 1
        rest: list[list[_Item]] = []
        while following < len(sections):
            owner = label or first
            candidate, candidate_parts = sections[following], packed[following]
            if (
                candidate.level < owner.level
                # A sibling keeps its own link: a citation of it must land on its heading.
                or (label is not None and candidate.level <= label.level)
                or _prefix_tokens(owner) + used >= SMALL_SECTION_TOKENS
            ):
                break
            new_label = label or (None if _heading_only(candidate) else candidate)
            extra = _items_tokens(candidate_parts[0])
            total = _prefix_tokens(new_label or first) + used + extra
            if len(candidate_parts) == 1 and total <= target_tokens:
                texts.append(_items_text(candidate_parts[0]))
                used += extra
                label = new_label
                following += 1
                continue
            if label is None and new_label is not None and total <= max_tokens:
                # Bare headings are useless alone: they lead this section's first chunk.
                texts.append(_items_text(candidate_parts[0]))
                used += extra
                label = new_label
                rest = candidate_parts[1:]
                following += 1
            break
        merged.append((label or first, "\n\n".join(texts), used))
        merged.extend((label or first, _items_text(part), _items_tokens(part)) for part in rest)
        index = following
    return merged
