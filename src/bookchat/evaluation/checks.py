"""What one answer shows the reader, checked: whether it is a refusal, whether its citations
hold, whether a selection answer stays inside the selection.

Text is compared after `normalise`: Markdown markup dropped, whitespace collapsed, case folded,
on both sides, so a quote that lost a `**` or a line break still counts as a quote.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bookchat.chat.refusals import cites_nothing
from bookchat.chat.schemas import ChatRead, Citation
from bookchat.providers.base import CITATION_MARKER
from bookchat.providers.extractive import quoted_passages
from bookchat.providers.quotable import plain_text

# `[1]`, `[2, 3]`: what the reader reads as a citation number.
# Markers with only spaces between them (`[1][2]`, `[1] [2]`) cite one stretch of text.
_MARKER_RUN = re.compile(rf"{CITATION_MARKER.pattern}(?:\s*{CITATION_MARKER.pattern})*")
_PIECE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# A sentence this long found in the book did not get there by chance.
BOOK_SENTENCE_WORDS = 8
# The shortest stretch of a passage that counts as a quote when several are joined.
MIN_QUOTE_WORDS = 3

_QUOTES = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"'})
# Code as the answer shows it: a `[0]` in there is code, not a citation number.
_CODE = re.compile(r"```.*?```|~~~.*?~~~|`[^`\n]*`", re.DOTALL)


def outside_code(text: str) -> str:
    """The text with its code blocks and code spans blanked out."""
    return _CODE.sub(" ", text)


def folded(text: str) -> str:
    """Whitespace collapsed, typographic quotes made plain, case folded."""
    return " ".join(text.translate(_QUOTES).split()).casefold()


def normalise(text: str) -> str:
    """`plain_text` (the offline answerer's own reading of Markdown, so both sides drop markup
    the same way), with whitespace collapsed, typographic quotes made plain and case folded."""
    return folded(plain_text(text))


def _collapsed(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True, slots=True)
class Passage:
    """A passage the chat path can hand to the answerer, in the two forms compared."""

    page_url: str | None
    collapsed: str
    normalised: str

    @classmethod
    def of(cls, text: str, page_url: str | None = None) -> Passage:
        return cls(page_url=page_url, collapsed=_collapsed(text), normalised=normalise(text))

    def holds_snippet(self, snippet: str) -> bool:
        """Whether a citation's snippet (the passage's start, maybe cut with "…") is from here."""
        core = snippet.strip().removesuffix("…").strip()
        return core in self.collapsed or normalise(core) in self.normalised

    def holds(self, normalised_text: str) -> bool:
        return normalised_text in self.normalised


@dataclass(frozen=True, slots=True)
class BookText:
    """The book's passages (its stored chunks) by source path."""

    pages: Mapping[str, Sequence[Passage]]

    def contains(self, normalised_text: str) -> bool:
        return any(p.holds(normalised_text) for page in self.pages.values() for p in page)

    def passages_for(self, citation: Citation) -> list[Passage]:
        """The passages of the book a citation can be: its page's, at its heading, holding its
        snippet. Empty when the citation is not a passage of the book."""
        page = self.pages.get(citation.source_path or "", ())
        at_heading = [p for p in page if citation.page_url in (None, p.page_url)]
        return [p for p in at_heading if p.holds_snippet(citation.snippet)]


@dataclass(frozen=True, slots=True)
class MarkerRun:
    """Numbers the reader sees together, and the text they close (since the previous run)."""

    numbers: tuple[int, ...]
    text: str


def marker_runs(response: str) -> list[MarkerRun]:
    """The answer cut at its citation markers (text after the last one is not in any run)."""
    runs = []
    start = 0
    for match in _MARKER_RUN.finditer(response):
        numbers = tuple(int(n) for n in re.findall(r"\d+", match.group(0)))
        runs.append(MarkerRun(numbers, response[start : match.start()]))
        start = match.end()
    return runs


def shown_numbers(response: str) -> list[int]:
    """The citation numbers in the answer, in order of first appearance (code is not read)."""
    shown: list[int] = []
    for run in marker_runs(outside_code(response)):
        for number in run.numbers:
            if number not in shown:
                shown.append(number)
    return shown


def pieces(text: str) -> list[str]:
    """Sentences (or smaller pieces of them), normalised; pieces without a word are dropped."""
    kept = (normalise(piece) for piece in _PIECE_END.split(text))
    return [piece for piece in kept if any(ch.isalnum() for ch in piece)]


def gap(shown: Iterable[int]) -> str | None:
    """What is wrong with the numbers a reader sees, when they are not 1..n."""
    numbers = sorted(set(shown))
    missing = sorted(set(range(1, max(numbers, default=0) + 1)) - set(numbers))
    if not missing:
        return None
    return f"shows [{numbers[-1]}] without [{missing[0]}]"


_SELECTION_WORD = re.compile(
    r"\b(?:selection|selected (?:text|passage|lines?|paragraphs?)|highlighted (?:text|passage)"
    r"|(?:text|passage) you (?:selected|highlighted)|(?:this|the) (?:passage|excerpt))\b",
    re.IGNORECASE,
)
_NEGATION = re.compile(
    r"\b(?:not|no|nothing|cannot|never|neither|nor|without)\b|n't\b", re.IGNORECASE
)


def says_selection_does_not_answer(response: str, selection: str) -> bool:
    """Whether the answer tells the reader the selection does not answer: a sentence of its
    own (not a quote of the selection) that names the selection and negates."""
    quoted = normalise(selection)
    for sentence in _PIECE_END.split(CITATION_MARKER.sub("", response)):
        if normalise(sentence) in quoted:
            continue
        if _SELECTION_WORD.search(sentence) and _NEGATION.search(sentence):
            return True
    return False


@dataclass(frozen=True, slots=True)
class AnswerCheck:
    """What the checks found in one answer."""

    refused: bool
    shown: tuple[int, ...]
    citation_problems: tuple[str, ...]
    gap: str | None
    isolation_problems: tuple[str, ...]


def check_answer(read: ChatRead, book: BookText, *, selection: str | None) -> AnswerCheck:
    """Check one answer as the reader got it. `selection` is the text the reader selected."""
    by_number = {citation.index: citation for citation in read.citations}
    shown = shown_numbers(read.response)
    problems: list[str] = []
    for number in shown:
        citation = by_number.get(number)
        if citation is None:
            problems.append(f"[{number}] names no citation")
        elif not citation.cited:
            problems.append(f"[{number}] is shown but its citation is not marked cited")
    for citation in read.citations:
        if citation.cited and citation.index not in shown:
            problems.append(f"citation {citation.index} is marked cited but [n] is never shown")

    given = _given_passages(read, book, selection)
    for citation in read.citations:
        if citation.cited and not given.get(citation.index):
            problems.append(f"[{citation.index}] ({citation.title}) is not a source that was given")
    if read.model == "extractive":
        problems.extend(_unquoted(read.response, given))

    # Refused by the gate, or given passages and citing none of them: either way the reader
    # got no answer from the book.
    refused = read.mode == "no_context" or cites_nothing(read.mode, read.status, read.citations)
    isolation: list[str] = []
    if selection is not None:
        refused = refused or says_selection_does_not_answer(read.response, selection)
        isolation = _isolation_problems(read, book, selection)
    return AnswerCheck(
        refused=refused,
        shown=tuple(shown),
        citation_problems=tuple(problems),
        gap=gap(shown),
        isolation_problems=tuple(isolation),
    )


def _given_passages(
    read: ChatRead, book: BookText, selection: str | None
) -> dict[int, list[Passage]]:
    """For each citation, the passages it can stand for among those the answerer was given:
    the selection in a selection answer, the book's passages in a book answer."""
    if read.mode == "no_context":
        return {}
    if read.mode == "selected_text" and selection is not None:
        passage = Passage.of(selection)
        return {
            c.index: [passage]
            for c in read.citations
            if c.source_path is None and passage.holds_snippet(c.snippet)
        }
    return {c.index: book.passages_for(c) for c in read.citations}


def _unquoted(response: str, given: Mapping[int, Sequence[Passage]]) -> list[str]:
    """The offline answerer only quotes: each of its quotes must be in a passage its marker
    names (its own words, such as "nothing quotable here", quote nothing)."""
    problems = []
    for quote, number in quoted_passages(response):
        passages = given.get(number, ())
        if not passages:
            continue  # reported already: the citation is not a given source
        # A quote is already plain text (code keeps its underscores): only fold it.
        for piece in (folded(p) for p in _PIECE_END.split(quote) if p.strip()):
            if not quoted_from(piece, passages):
                problems.append(f"quote not in its source [{number}]: {_short(piece)!r}")
    return problems


def quoted_from(piece: str, passages: Sequence[Passage]) -> bool:
    """Whether a normalised piece of an answer is quoted from the passages: one stretch of
    them, or stretches of at least `MIN_QUOTE_WORDS` words each put side by side (the offline
    answerer joins list items and lines without punctuation, so their boundaries are lost)."""
    if any(p.holds(piece) for p in passages):
        return True
    words = piece.split()
    start = 0
    while start < len(words):
        shortest = min(MIN_QUOTE_WORDS, len(words) - start)
        end = next(
            (
                end
                for end in range(len(words), start + shortest - 1, -1)
                if any(p.holds(" ".join(words[start:end])) for p in passages)
            ),
            None,
        )
        if end is None:
            return False
        start = end
    return True


def _isolation_problems(read: ChatRead, book: BookText, selection: str) -> list[str]:
    """A selection answer cites only the selection, quotes only from it, shows no book text."""
    problems = []
    if read.mode == "rag":
        problems.append("answered from the book, not from the selection")
    quoted = Passage.of(selection)
    for citation in read.citations:
        if citation.source_path is not None or not quoted.holds_snippet(citation.snippet):
            problems.append(f"citation {citation.index} ({citation.title}) is not the selection")
    for piece in pieces(CITATION_MARKER.sub("", read.response)):
        if len(piece.split()) < BOOK_SENTENCE_WORDS or quoted.holds(piece):
            continue
        if book.contains(piece):
            problems.append(f"shows a book passage: {_short(piece)!r}")
    return problems


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
