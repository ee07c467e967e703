"""A chapter's Markdown as HTML, with the heading ids that citations link to."""

from __future__ import annotations

import html
from functools import cache

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore

from bookchat.content.docusaurus import HeadingSlugger, split_heading_id
from bookchat.content.markdown import ADMONITION_TITLE_RE, admonition_end, fence_end, fence_opening


@cache
def _parser() -> MarkdownIt:
    # Raw HTML off: the book's text is shown, never run (ingested pages come from uploads too).
    parser = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    parser.core.ruler.after("block", "heading_ids", _heading_ids)
    return parser


def _heading_ids(state: StateCore) -> None:
    """Give each heading the anchor the chunker gave it (Docusaurus's), and drop `{#id}`.

    Runs between block and inline parsing, so the inline parser sees the text without the
    explicit id. One `HeadingSlugger` per chapter (in `env`) numbers repeated headings.
    """
    slugger: HeadingSlugger = state.env["slugger"]
    tokens = state.tokens
    for index, token in enumerate(tokens[:-1]):
        inline = tokens[index + 1]
        if token.type != "heading_open" or inline.type != "inline":
            continue
        _, anchor = slugger.heading(inline.content)
        inline.content, _ = split_heading_id(inline.content)
        token.attrSet("id", anchor)


def _render_lines(lines: list[str], slugger: HeadingSlugger) -> str:
    """Render Markdown lines; admonitions become asides around their rendered content."""
    parts: list[str] = []
    plain: list[str] = []

    def flush() -> None:
        if any(line.strip() for line in plain):
            parts.append(_parser().render("\n".join(plain), {"slugger": slugger}))
        plain.clear()

    index = 0
    while index < len(lines):
        line = lines[index]
        fence = fence_opening(line)
        if fence is not None:
            end = fence_end(lines, index, fence)
            plain.extend(lines[index:end])
            index = end
            continue
        # A well-formed opening line gives the aside its kind and title; where it ends is found
        # the chunker's way (admonition_end), so the page shows the blocks citations point into.
        opening = ADMONITION_TITLE_RE.match(line)
        closing = admonition_end(lines, index) if opening else None
        if opening is None or closing is None:
            plain.append(line)
            index += 1
            continue
        flush()
        kind = opening.group("kind").lower()
        title = opening.group("bracketed") or opening.group("title") or kind.capitalize()
        inner = _render_lines(lines[index + 1 : closing - 1], slugger)
        parts.append(
            f'<aside class="admonition admonition-{html.escape(kind)}">'
            f'<p class="admonition-title">{html.escape(title)}</p>\n{inner}</aside>\n'
        )
        index = closing
    flush()
    return "".join(parts)


def render_chapter(title: str, body: str) -> str:
    """The chapter as HTML. Headings carry the same ids as the citations' `#anchor`s."""
    rendered = _render_lines(body.split("\n"), HeadingSlugger())
    if "<h1" not in rendered:
        # Docusaurus shows the front-matter title when the page has no H1 of its own.
        rendered = f"<h1>{html.escape(title)}</h1>\n{rendered}"
    return rendered
