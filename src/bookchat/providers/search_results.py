"""Passages as Claude's search results, and Claude's citations of them checked and placed in
the answer as the `[n]` markers the chat renumbers (see `providers/anthropic.py`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from anthropic.types import CitationsSearchResultLocation, TextCitation

from bookchat.providers.base import Source

# Called with "kept" or "dropped" for every citation the model made.
CitationCounter = Callable[[str], None]

_FENCES = ("```", "~~~")


def _squeezed(text: str) -> str:
    """`text` without whitespace: a quote matches its passage however the lines were joined."""
    return "".join(text.split())


def paragraphs(text: str) -> list[str]:
    """A passage's paragraphs (a code fence stays whole): the units Claude's citations quote,
    so a citation points at a paragraph rather than at the whole passage."""
    blocks: list[str] = []
    lines: list[str] = []
    fence: str | None = None
    for line in text.strip().splitlines():
        marker = line.lstrip()[:3]
        if marker in _FENCES:
            fence = None if fence == marker else fence or marker
        if not line.strip() and fence is None:
            if lines:
                blocks.append("\n".join(lines))
                lines = []
            continue
        lines.append(line)
    if lines:
        blocks.append("\n".join(lines))
    return blocks or [text]


def _heading(source: Source) -> str:
    return source.title if not source.section else f"{source.title} > {source.section}"


class CitationCheck:
    """The passages sent as search results, and the check of the model's citations of them."""

    def __init__(self, sources: Sequence[Source], counter: CitationCounter | None) -> None:
        self.sources = list(sources)
        self.names = [s.page_url or s.source_path or _heading(s) for s in self.sources]
        self._texts = [_squeezed(s.text) for s in self.sources]
        self._counter = counter
        self.kept = 0
        self.dropped = 0

    def search_results(self) -> list[dict[str, Any]]:
        """The passages as `search_result` blocks, in the order their indexes refer to."""
        return [
            {
                "type": "search_result",
                "source": name,
                "title": _heading(source),
                "content": [{"type": "text", "text": p} for p in paragraphs(source.text)],
                "citations": {"enabled": True},
            }
            for source, name in zip(self.sources, self.names, strict=True)
        ]

    def numbers(self, citations: Sequence[TextCitation] | None) -> list[int]:
        """The numbers of the passages a text block's citations cite, those that check out."""
        numbers: list[int] = []
        for citation in citations or ():
            number = self._number(citation)
            if number is None:
                self._count("dropped")
            else:
                self._count("kept")
                if number not in numbers:
                    numbers.append(number)
        return numbers

    def _number(self, citation: TextCitation) -> int | None:
        """The cited passage's number, or None when the citation does not hold: it is not of a
        search result, names none we sent, or quotes text that is not in the one it names."""
        if not isinstance(citation, CitationsSearchResultLocation):
            return None
        at = citation.search_result_index
        if not 0 <= at < len(self.sources) or citation.source != self.names[at]:
            return None
        quoted = _squeezed(citation.cited_text)
        if not quoted or quoted not in self._texts[at]:
            return None
        return self.sources[at].index

    def _count(self, outcome: str) -> None:
        if outcome == "kept":
            self.kept += 1
        else:
            self.dropped += 1
        if self._counter is not None:
            self._counter(outcome)


def _in_fence(text: str) -> bool:
    """Whether `text` ends inside a fenced code block."""
    fence: str | None = None
    for line in text.splitlines():
        run = line.lstrip()[:3]
        if run in _FENCES:
            fence = None if fence == run else fence or run
    return fence is not None


class Markers:
    """Places the markers of each cited text block after the block, as the answer's text goes
    by: `green [1]`. Never inside a code fence, where the chat leaves `[n]` as written (it
    would show the model's numbering), nor on a fence's closing line, which must stay bare to
    close it: markers of a block that ends in code wait for the fence to close."""

    def __init__(self, check: CitationCheck) -> None:
        self._check = check
        self._text = ""
        self._pending: list[int] = []

    def text(self, piece: str) -> str:
        """Take a piece of the model's text; return it, to be shown."""
        self._text += piece
        return piece

    def block_end(self, citations: Sequence[TextCitation] | None) -> str:
        """A text block ended with these citations: the markers to show now (may be "")."""
        for number in self._check.numbers(citations):
            if number not in self._pending:
                self._pending.append(number)
        if not self._pending or _in_fence(self._text):
            return ""
        return self.end()

    def end(self) -> str:
        """The answer is over: the markers still waiting (may be "")."""
        if not self._pending:
            return ""
        markers = "".join(f"[{n}]" for n in self._pending)
        self._pending = []
        last_line = self._text.rsplit("\n", 1)[-1]
        if not self._text or self._text[-1].isspace():
            shown = markers
        elif last_line.lstrip()[:3] in _FENCES:
            shown = "\n" + markers
        else:
            shown = " " + markers
        self._text += shown
        return shown
