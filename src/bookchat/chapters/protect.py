"""Markdown a language model must not touch, swapped for opaque placeholders and put back.

Before a chapter goes to a model to be rewritten or translated, every span that is not prose is
replaced by a placeholder such as `⟦P12⟧` that the model is told to keep: YAML frontmatter (keys
and values, whole), fenced code blocks and `$$` math blocks (whole), inline code and inline math,
URLs (bare, autolinks, and the `(target)` of links and images, whose text stays translatable),
reference-link labels and definitions, HTML/MDX/JSX tags and comments, MDX `import`/`export`
lines, heading markers (`## ` and closing hashes) and explicit `{#id}`s, admonition markers
(`:::tip`, whose title stays translatable, and the closing `:::`) and table delimiter rows.
`restore` puts every span back byte for byte.

Spans that carry the block structure (`line_start`) must begin a line in the model's answer;
those that fill their lines (`whole_line`: fences, frontmatter, delimiter rows...) must also
end it. `placeholder_problems` reports any placeholder that is missing, repeated, unknown or
moved out of place.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from bookchat.chapters.inline import INLINE_FINDERS, Finder, regex_finder
from bookchat.content.markdown import (
    ADMONITION_CLOSE_RE,
    ADMONITION_MARKER_RE,
    FRONTMATTER_FENCE_RE,
    HEADING_RE,
    fence_end,
    fence_opening,
)

OPEN, CLOSE = "⟦", "⟧"
PLACEHOLDER_RE = re.compile(r"⟦\s*P\s*(\d{1,6})\s*⟧")

_MATH_BLOCK_RE = re.compile(r"^[ \t]*\$\$[ \t]*$")
_DELIMITER_ROW_RE = re.compile(r"^[ \t]*\|?(?:[ \t]*:?-+:?[ \t]*\|)+(?:[ \t]*:?-+:?[ \t]*)?$")
_LINK_DEFINITION_RE = re.compile(r"^ {0,3}\[[^\[\]\n]+\]:[ \t]*\S")
_ESM_RE = re.compile(r"^(?:import|export)\s")
_HEADING_ID_RE = re.compile(r"[ \t]*\{#[^{}]+\}[ \t]*$")

# Inline spans, found in this order: each hides its spans from the finders after it. Literal
# placeholder brackets first, so that the text never holds a bracket the restore step misreads.
_INLINE_FINDERS: tuple[tuple[str, Finder], ...] = (
    ("literal", regex_finder(f"[{OPEN}{CLOSE}]")),
    *INLINE_FINDERS,
)


@dataclass(frozen=True, slots=True)
class Span:
    """One protected piece of the original text."""

    kind: str
    text: str
    line_start: bool = False
    whole_line: bool = False


@dataclass(slots=True)
class Protected:
    """Text with placeholders, and the spans they stand for (numbered from `first`)."""

    text: str
    spans: list[Span] = field(default_factory=list)
    first: int = 0
    # Placeholders inside another span (a literal `⟦` in inline code): restored with it.
    nested: set[int] = field(default_factory=set)

    @property
    def ids(self) -> range:
        return range(self.first, self.first + len(self.spans))

    @property
    def expected(self) -> list[int]:
        """The placeholders the model's answer must hold, each exactly once."""
        return [number for number in self.ids if number not in self.nested]

    def span(self, number: int) -> Span:
        return self.spans[number - self.first]

    @property
    def has_prose(self) -> bool:
        """Whether anything is left for a model to rewrite (letters outside placeholders)."""
        return bool(re.search(r"[^\W\d_]", PLACEHOLDER_RE.sub("", self.text)))


def placeholder(number: int) -> str:
    return f"{OPEN}P{number}{CLOSE}"


class _Protector:
    def __init__(self, first: int) -> None:
        self.result = Protected(text="", first=first)

    def hold(self, kind: str, text: str, *, line_start: bool = False, whole: bool = False) -> str:
        spans = self.result.spans
        self.result.nested.update(int(m.group(1)) for m in PLACEHOLDER_RE.finditer(text))
        spans.append(Span(kind, text, line_start=line_start or whole, whole_line=whole))
        return placeholder(self.result.first + len(spans) - 1)

    def inline(self, text: str) -> str:
        for kind, find in _INLINE_FINDERS:
            parts = []
            last = 0
            for start, end in find(text):
                parts += [text[last:start], self.hold(kind, text[start:end])]
                last = end
            parts.append(text[last:])
            text = "".join(parts)
        return text

    def heading(self, line: str, match: re.Match[str]) -> str:
        title = match.group("text")
        if title is None:
            return self.hold("heading", line, whole=True)
        start, end = match.span("text")
        heading_id = _HEADING_ID_RE.search(title)
        if heading_id is not None:
            end = start + heading_id.start()
            title = title[: heading_id.start()]
        marker = self.hold("heading", line[:start], line_start=True)
        suffix = line[end:]
        closing = self.hold("heading_suffix", suffix) if suffix.strip() else suffix
        return marker + self.inline(title) + closing


def frontmatter_end(lines: list[str]) -> int | None:
    if not lines or not FRONTMATTER_FENCE_RE.match(lines[0]):
        return None
    for index in range(1, len(lines)):
        if FRONTMATTER_FENCE_RE.match(lines[index]):
            return index + 1
    return None


def _math_end(lines: list[str], start: int) -> int:
    for index in range(start + 1, len(lines)):
        if _MATH_BLOCK_RE.match(lines[index]):
            return index + 1
    return start + 1  # an unclosed `$$` is just text


def _block_span(protector: _Protector, kind: str, lines: list[str]) -> str:
    """A multi-line block as one placeholder, its first line's indentation kept outside."""
    first = lines[0]
    indent = first[: len(first) - len(first.lstrip(" \t"))]
    text = "\n".join(lines)[len(indent) :]
    return indent + protector.hold(kind, text, whole=True)


def protect(text: str, first: int = 0) -> Protected:
    """Replace everything but prose with placeholders numbered from `first`."""
    protector = _Protector(first)
    lines = text.split("\n")
    out: list[str] = []
    prose: list[str] = []

    def flush() -> None:
        if prose:
            out.append(protector.inline("\n".join(prose)))
            prose.clear()

    index = 0
    header_end = frontmatter_end(lines)
    if header_end is not None:
        out.append(protector.hold("frontmatter", "\n".join(lines[:header_end]), whole=True))
        index = header_end
    while index < len(lines):
        line = lines[index]
        fence = fence_opening(line)
        heading = HEADING_RE.match(line)
        admonition = ADMONITION_MARKER_RE.match(line)
        if fence is not None or _MATH_BLOCK_RE.match(line):
            end = fence_end(lines, index, fence) if fence else _math_end(lines, index)
            if end > index + 1 or fence is not None:
                flush()
                out.append(_block_span(protector, "fence" if fence else "math", lines[index:end]))
                index = end
                continue
            prose.append(line)
        elif heading is not None:
            flush()
            out.append(protector.heading(line, heading))
        elif admonition is not None:
            flush()
            marker_end = admonition.end("marker")
            marker = line[admonition.end("indent") : marker_end]
            out.append(
                admonition.group("indent")
                + protector.hold("admonition", marker, line_start=True)
                + protector.inline(line[marker_end:])
            )
        elif ADMONITION_CLOSE_RE.match(line):
            flush()
            out.append(_block_span(protector, "admonition", [line]))
        elif (_DELIMITER_ROW_RE.match(line) and "-" in line) or _LINK_DEFINITION_RE.match(line):
            flush()
            kind = "target" if _LINK_DEFINITION_RE.match(line) else "table"
            out.append(_block_span(protector, kind, [line]))
        elif _ESM_RE.match(line):
            flush()
            out.append(protector.hold("esm", line, whole=True))
        else:
            prose.append(line)
        index += 1
    flush()
    protector.result.text = "\n".join(out)
    return protector.result


def restore(text: str, protected: Protected) -> str:
    """Put the original spans back in place of their placeholders."""

    def original(match: re.Match[str]) -> str:
        number = int(match.group(1))
        if number in protected.ids:
            # A span holds only placeholders made before it: this recursion ends.
            return PLACEHOLDER_RE.sub(original, protected.span(number).text)
        return match.group()

    return PLACEHOLDER_RE.sub(original, text)


def placeholder_problems(text: str, protected: Protected) -> list[str]:
    """What is wrong with the placeholders of a model's answer (empty when nothing is)."""
    found = Counter(int(m.group(1)) for m in PLACEHOLDER_RE.finditer(text))
    problems = [
        f"{placeholder(n)} is missing"
        if found[n] == 0
        else f"{placeholder(n)} appears {found[n]} times"
        for n in protected.expected
        if found[n] != 1
    ]
    expected = set(protected.expected)
    problems += [f"{placeholder(n)} is not in the original" for n in found if n not in expected]
    if problems:
        return problems
    for line in text.split("\n"):
        for match in PLACEHOLDER_RE.finditer(line):
            span = protected.span(int(match.group(1)))
            if span.line_start and line[: match.start()].strip():
                problems.append(f"{match.group()} must start its line")
            elif span.whole_line and line[match.end() :].strip():
                problems.append(f"{match.group()} must stand alone on its line")
    return problems
