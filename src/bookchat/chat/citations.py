"""Citation markers as the reader sees them (DESIGN.md section 7, "Citations").

The model cites its numbered sources with `[n]`, `[2][3]` or `[2, 3]`. The reader sees the cited
sources numbered `[1]..[n]` in the order the answer first uses them, never a gap; a marker that
names no source disappears; code (inline spans and fences) is left exactly as written, so
`data[0]` stays `data[0]`. The citations list the cited sources under their new numbers, then
the others (`cited: false`) numbered after them.

`Renumbering` does this as the text arrives, for the stream's tokens, and `resolve_citations`
runs the same code over a whole answer, so a streamed answer and a stored one are the same
text. It holds back only what the next piece could change: an unfinished `[...` that can still
become a marker (at most `MARKER_MAX_CHARS`), a run of backticks (or of tildes opening a line)
that may go on, and whitespace, which is invisible until something follows it (and goes with
a removed marker, or ends the answer). Renumbering a renumbered answer with its renumbered
sources changes nothing, which is what lets the answer cache replay an answer exactly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bookchat.chat.schemas import Citation, Passage
from bookchat.providers.base import CITATION_MARKER, Source

SNIPPET_CHARS = 300
# Longer than any marker a model writes (`[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]` is 31): a `[` that
# is still open after this many characters is text, so the stream never holds more.
MARKER_MAX_CHARS = 64
# What can still grow into a `CITATION_MARKER`: every prefix of one, and nothing else.
_MARKER_START = re.compile(r"\[(?:\d{1,3}(?:[ \t]*,[ \t]*\d{1,3})*(?:[ \t]*(?:,[ \t]*)?)?)?")
_FENCE_MIN = 3


@dataclass(frozen=True, slots=True)
class CitedAnswer:
    """An answer as the reader sees it, its citations, and its sources renumbered to match
    (what the answer cache keeps, so a replay shows the same numbers)."""

    text: str
    citations: list[Citation]
    sources: list[Source]


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + "…"


def passages(sources: Sequence[Source]) -> list[Passage]:
    """The sources as the stream announces them before the answer: unnumbered, because numbers
    are given in order of first use and are only complete once the answer is."""
    return [
        Passage(
            title=source.title,
            section=source.section,
            page_url=source.page_url,
            source_path=source.source_path,
            snippet=snippet(source.text),
            score=source.score,
        )
        for source in sources
    ]


def resolve_citations(answer: str, sources: Sequence[Source]) -> CitedAnswer:
    """The whole answer renumbered, as a stream of it would have shown it."""
    renumbering = Renumbering(sources)
    renumbering.feed(answer)
    renumbering.close()
    return renumbering.answer()


class Renumbering:
    """Rewrites an answer's markers as its text arrives: `feed` each piece and show what it
    returns, then `close` once the text is complete (or cut off) and show that too."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self._sources = list(sources)
        self._known = {source.index for source in sources}
        self._numbers: dict[int, int] = {}  # the model's number -> the reader's, in order of use
        self._pending = ""  # arrived, not yet decided
        self._space = ""  # whitespace shown only once something visible follows it
        self._shown: list[str] = []
        self._out: list[str] = []
        self._started = False
        self._line_start = True
        self._eat_space = False  # a marker removed at the start of a line takes the space after it
        self._fence: str | None = None  # the run that opened the fenced block we are in
        self._span: str | None = None  # the run of backticks that opened the inline code

    def feed(self, text: str) -> str:
        """Take the next piece of the model's text; return what can be shown now."""
        self._pending += text
        return self._scan(final=False)

    def close(self, *, complete: bool = True) -> str:
        """No more text will come: return the rest. In a complete answer an unfinished `[...` is
        text after all; in one cut off (`complete=False`) it is a fragment nobody has seen, and
        is dropped, so what is stored is what the reader was shown."""
        if complete:
            shown = self._scan(final=True)
        else:
            shown, self._pending = "", ""
        self._space = ""  # trailing whitespace
        return shown

    def answer(self) -> CitedAnswer:
        """What has been shown, with the citations under the reader's numbers."""
        by_index = {source.index: source for source in self._sources}
        cited = [by_index[index] for index in self._numbers]
        others = [source for source in self._sources if source.index not in self._numbers]
        sources = [replace(source, index=number) for number, source in enumerate(cited + others, 1)]
        citations = [
            Citation(
                index=source.index,
                cited=source.index <= len(cited),
                **passage.model_dump(),
            )
            for source, passage in zip(sources, passages(sources), strict=True)
        ]
        return CitedAnswer(text="".join(self._shown), citations=citations, sources=sources)

    def _scan(self, *, final: bool) -> str:
        text, at = self._pending, 0
        while at < len(text):
            char = text[at]
            if char.isspace():
                self._whitespace(char)
                at += 1
                continue
            if char == "`" or (char == "~" and self._line_start):
                end = at
                while end < len(text) and text[end] == char:
                    end += 1
                if end == len(text) and not final:
                    break  # the run may go on in the next piece
                self._code_run(text[at:end])
                at = end
                continue
            if char == "[" and self._fence is None and self._span is None:
                marker = CITATION_MARKER.match(text, at)
                if marker is not None and marker.end() - at <= MARKER_MAX_CHARS:
                    self._marker(marker.group(1))
                    at = marker.end()
                    continue
                if (
                    not final
                    and len(text) - at < MARKER_MAX_CHARS
                    and _MARKER_START.fullmatch(text, at)
                ):
                    break  # may still become a marker
            self._show(char)
            at += 1
        self._pending = text[at:]
        shown, self._out = "".join(self._out), []
        return shown

    def _whitespace(self, char: str) -> None:
        if self._eat_space and char in " \t":
            self._eat_space = False
            return
        self._eat_space = False
        self._space += char
        if char == "\n":
            self._line_start = True
            self._span = None  # inline code ends with its line, as the widget reads it

    def _code_run(self, run: str) -> None:
        """Backticks or tildes: they open or close code, where markers are left alone."""
        if self._fence is not None:
            if self._line_start and run[0] == self._fence[0] and len(run) >= len(self._fence):
                self._fence = None
        elif self._span is not None:
            if run == self._span:
                self._span = None
        elif self._line_start and len(run) >= _FENCE_MIN:
            self._fence = run
        elif run[0] == "`":
            self._span = run
        self._show(run)

    def _marker(self, numbers: str) -> None:
        reader_numbers: list[int] = []
        for number in map(int, re.findall(r"\d+", numbers)):
            if number in self._known:
                new = self._numbers.setdefault(number, len(self._numbers) + 1)
                if new not in reader_numbers:
                    reader_numbers.append(new)
        if reader_numbers:
            self._show("".join(f"[{n}]" for n in reader_numbers))
        elif self._space.endswith((" ", "\t")):
            self._space = self._space[:-1]  # "word [9]." reads "word.", not "word ."
        elif self._line_start:
            self._eat_space = True  # "[9] Next" on a line of its own reads "Next"

    def _show(self, text: str) -> None:
        shown = self._space + text if self._started else text  # no leading whitespace
        self._out.append(shown)
        self._shown.append(shown)
        self._space = ""
        self._started = True
        self._line_start = False
        self._eat_space = False
