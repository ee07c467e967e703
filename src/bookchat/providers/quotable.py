"""What of a Markdown passage the offline answerer may quote, read as a reader sees it.

`plain_text` is the passage's visible text, one line per heading, paragraph, list item, table row
and code line. Every sentence `read_passage` offers is a substring of one of those lines, every
code block it offers is a run of them, and every row of a table it offers is one of them, so
"is this quote in its source?" is a substring test on `plain_text(source)`.

Not quotable: headings, tables and code (except whole fenced blocks and tables with a header,
offered separately), questions that start with a question word, lead-ins ending with ":" (kept
only to introduce their code block or table), quiz options and answers, checklist items, lists of
bare links, and whole sections whose heading says they are a quiz, an exercise, a checklist or a
pointer elsewhere ("Next steps", "Further reading").
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from bookchat.content.docusaurus import HeadingSlugger, strip_inline_markdown
from bookchat.content.markdown import (
    ADMONITION_TITLE_RE,
    Block,
    fence_opening,
    is_fence_close,
    parse_blocks,
)
from bookchat.content.splitting import code_part_of, without_code_part
from bookchat.providers.base import CITATION_MARKER

# Headings of material that tests or sends the reader elsewhere instead of explaining.
_SKIPPED_SECTION = re.compile(
    r"^(?:(?:part|step|lab|module)?\s*\d+[.:)]?\s+)?(?:hands-on\s+)?"
    r"(?:quiz(?:zes)?|exercises?|self[- ]?checks?|self[- ]?assessment|assessment|"
    r"check your (?:understanding|knowledge)|knowledge check|review questions|"
    r"practice (?:questions|problems)|test (?:your knowledge|yourself)|questions?\s*\d*$|"
    r"answers?\s*(?:key)?$|"
    r"(?:lab\s+)?check\s?list|next steps?|further reading|(?:additional\s+)?resources|"
    r"references|see also|what's next)\b",
    re.IGNORECASE,
)
# Leading emoji, numbering and punctuation of a heading ("🧪 Lab 2: Exercises").
_HEADING_NOISE = re.compile(r"^[\W_]+")
_LIST_ITEM = re.compile(r"^(?P<indent>[ \t]*)(?:[-*+]|\d{1,9}[.)])(?:[ \t]+|$)")
_TASK_BOX = re.compile(r"^\[[ xX]\]\s")
_CHECK_MARK = re.compile(r"^[\u2610\u2611\u2612\u2705\u2713\u2714\u274c\u274e]")
# A quiz option: "A) ...", "(b) ...", "c. ..." at the start, or two options in one sentence.
_OPTION_START = re.compile(r"^\(?[A-Ea-e][).]\s")
_OPTIONS_INLINE = re.compile(r"(?:^|\s)\(?[A-Ea-e]\)\s.*\s\(?[B-Fb-f]\)\s")
_QUIZ_LABEL = re.compile(r"^(?:answer|solution|hint|correct answer)s?\b\s*[:.-]", re.IGNORECASE)
_BARE_LINK_ITEM = re.compile(r"^\s*(?:\[[^\]]*\]\([^)]*\)|<https?:[^>]*>|https?://\S+)\s*$")
# What the chat's citation resolver would read as a `[n]` marker in prose (it leaves code alone,
# but a quoted sentence has lost its backticks): never quoted, so a quote is never mistaken
# for a citation.
_IMAGE = re.compile(r"!\[[^\[\]]*\]\([^()]*\)")
_FOOTNOTE_REF = re.compile(r"\[\^[^\]]+\]")
# A paragraph that is one bold or italic phrase: a heading in all but name.
_PSEUDO_HEADING = re.compile(r"^\s*(\*\*|__)[^*_]+\1:?\s*$")
_MDX_STATEMENT = re.compile(r"^(?:import|export)\s")
# A list item that only names what its nested list holds: "Sensors:", "Key features:".
_LABEL = re.compile(r"^\w[\w .'/&-]{0,40}:$")
_TABLE_DELIMITER = re.compile(r"^[\s|:-]+$")

_INTERROGATIVE = re.compile(
    r"^(?:what|which|who|whom|whose|why|how|when|where|is|are|was|were|do|does|did|can|could|"
    r"should|would|will|shall|may|might|must|have|has|had)\b",
    re.IGNORECASE,
)
_SENTENCE_GAP = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[A-Z0-9])")
# fmt: off
_ABBREVIATIONS = frozenset([
    "e.g.", "i.e.", "etc.", "vs.", "approx.", "fig.", "no.", "cf.", "al.", "dr.", "mr.", "ms.",
    "mrs.", "st.", "inc.", "ltd.", "jr.", "sr.", "ca.",
])
# fmt: on
MIN_WORDS = 3
# A lead-in is offered with the list it introduces when the list has at most this many items.
MAX_LIST_ITEMS = 8


@dataclass(frozen=True, slots=True)
class Sentence:
    """A quotable sentence, verbatim from the passage's plain text."""

    text: str
    position: int
    section: str | None
    section_start: bool = False  # the first sentence under its heading
    # The headings it is under, outermost first ("Unitree Go2 Specifications" for a spec
    # line under a bold "Specifications:" under "### Unitree Go2").
    headings: str = ""
    lead_in: bool = False  # ends with ":": it introduces what follows, it does not say it
    item: bool = False  # a list item
    # A lead-in's list, when one follows it directly: each item's visible text (a line of
    # `plain_text`), all of them quotable.
    items: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CodeBlock:
    """A whole fenced code block, and the paragraph just before it that introduces it (its
    first and last quotable sentences)."""

    code: str
    language: str
    position: int
    section: str | None
    lead: tuple[Sentence, ...] = ()
    # (part, of how many) for a piece of a block the chunker split; None for a whole block.
    part: tuple[int, int] | None = None

    @property
    def markdown(self) -> str:
        fence = "~~~" if "```" in self.code else "```"
        return f"{fence}{self.language}\n{self.code}\n{fence}"


@dataclass(frozen=True, slots=True)
class Table:
    """A whole table with a header row (its cells' visible text), and the paragraph just before
    it that introduces it. Each row's plain-text line is its cells joined by " | "."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    position: int
    section: str | None
    lead: tuple[Sentence, ...] = ()

    def markdown(self, rows: Sequence[tuple[str, ...]] | None = None) -> str:
        """The header and `rows` (all of them by default) as a Markdown table."""
        shown = [self.header, tuple("---" for _ in self.header), *(rows or self.rows)]
        return "\n".join(f"| {' | '.join(cells)} |" for cells in shown)


@dataclass(slots=True)
class Passage:
    """What `read_passage` found in a passage, in reading order."""

    sentences: list[Sentence] = field(default_factory=list)
    code_blocks: list[CodeBlock] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def visible(markdown: str) -> str:
    """The visible text of one line or paragraph of inline Markdown, whitespace collapsed."""
    text = _FOOTNOTE_REF.sub("", _IMAGE.sub("", markdown))
    return " ".join(strip_inline_markdown(text).split())


def split_sentences(text: str) -> list[str]:
    """Sentences of one line of plain text (abbreviations such as "e.g." do not end one)."""
    sentences: list[str] = []
    start = 0
    for gap in _SENTENCE_GAP.finditer(text):
        before = text[start : gap.start()].rsplit(" ", 1)[-1].lower()
        if before in _ABBREVIATIONS or re.fullmatch(r"[a-z]\.", before):
            continue
        end = gap.start() + len(gap.group().rstrip())
        sentences.append(text[start:end].strip())
        start = gap.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def plain_text(markdown: str) -> str:
    """The passage as a reader sees it: Markdown markup removed, one line per heading, paragraph,
    list item, table row and code line (code verbatim, prose with its whitespace collapsed).

    A quote of the offline answerer is always a substring of its source's `plain_text`.
    """
    return "\n".join(read_passage(markdown).lines)


def read_passage(markdown: str, section: str | None = None) -> Passage:
    """The quotable sentences and whole code blocks of a passage (`section` is the heading it
    sits under when it does not start with one)."""
    reader = _Reader(section)
    reader.read(markdown.splitlines())
    return reader.passage


class _Reader:
    def __init__(self, section: str | None) -> None:
        self.passage = Passage()
        # (level, title, skipped) of the headings above the current line.
        self.headings: list[tuple[int, str, bool]] = (
            [(7, section, _is_skipped(section))] if section else []
        )
        self.section_start = True
        # The quotable sentences of the block just read, when it was a paragraph.
        self.paragraph: list[Sentence] = []

    @property
    def section(self) -> str | None:
        return self.headings[-1][1] if self.headings else None

    @property
    def heading_path(self) -> str:
        return " ".join(title for _, title, _ in self.headings)

    @property
    def skipped(self) -> bool:
        return any(skip for _, _, skip in self.headings)

    def read(self, lines: list[str]) -> None:
        for block in parse_blocks(lines, HeadingSlugger()):
            self._block(block)

    def _block(self, block: Block) -> None:
        paragraph = self.paragraph
        self.paragraph = []
        if block.kind == "heading":
            self._heading(block.level, visible(block.title))
        elif block.kind == "fence":
            self._fence(block.lines, lead=(*paragraph[:1], *paragraph[1:][-1:]))
        elif block.kind == "table":
            self._table(block.lines, lead=(*paragraph[:1], *paragraph[1:][-1:]))
        elif block.kind == "admonition":
            opening = ADMONITION_TITLE_RE.match(block.lines[0])
            title = opening and (opening.group("bracketed") or opening.group("title"))
            if title:
                self.passage.lines.append(visible(title))
            self.read(block.lines[1:-1])
        elif block.kind == "list":
            items = self._list(block.lines)
            if items and paragraph and paragraph[-1].lead_in:
                lead = paragraph[-1]
                self.passage.sentences[lead.position] = replace(lead, items=items)
        elif _PSEUDO_HEADING.match(" ".join(block.lines)):
            self._heading(7, visible(" ".join(block.lines)).rstrip(":"))
        elif not _MDX_STATEMENT.match(block.lines[0]):
            self.paragraph = self._prose(visible(" ".join(block.lines)), item=False)

    def _heading(self, level: int, title: str) -> None:
        while self.headings and self.headings[-1][0] >= level:
            self.headings.pop()
        self.headings.append((level, title, _is_skipped(title)))
        self.passage.lines.append(title)
        self.section_start = True

    def _fence(self, lines: list[str], lead: tuple[Sentence, ...] = ()) -> None:
        fence = fence_opening(lines[0]) or "```"
        closed = len(lines) > 1 and is_fence_close(lines[-1], fence)
        code = textwrap.dedent("\n".join(lines[1:-1] if closed else lines[1:]))
        self.passage.lines.extend(code.splitlines())
        if closed and _has_code(code) and not self.skipped:
            opener = without_code_part(lines[0]).strip()
            language = opener[len(fence) :].strip().split(" ")[0]
            # A piece of a block the chunker split is known as one (`part`), never as the block.
            part = code_part_of(lines[0])
            self.passage.code_blocks.append(
                CodeBlock(code, language, len(self.passage.code_blocks), self.section, lead, part)
            )

    def _table(self, lines: list[str], lead: tuple[Sentence, ...] = ()) -> None:
        rows = [
            tuple(visible(cell) for cell in _cells(row))
            for row in lines
            if not _TABLE_DELIMITER.match(row)
        ]
        self.passage.lines.extend(" | ".join(cells) for cells in rows)
        # A table is offered when it has a header (its second line is the delimiter), every
        # row has the header's cells, and nothing in it reads as a citation marker.
        headed = len(lines) > 2 and "-" in lines[1] and bool(_TABLE_DELIMITER.match(lines[1]))
        even = len({len(cells) for cells in rows}) == 1
        marked = any(CITATION_MARKER.search(cell) for cells in rows for cell in cells)
        if headed and even and not marked and not self.skipped:
            header, *body = rows
            self.passage.tables.append(
                Table(header, tuple(body), len(self.passage.tables), self.section, lead)
            )

    def _list(self, lines: list[str]) -> tuple[str, ...]:
        """Read a list; return its items' texts when it can be quoted whole after its lead-in:
        every item quotable, no code block inside, at most `MAX_LIST_ITEMS` items."""
        items: list[tuple[int, list[str]]] = []  # each item's indent and lines
        whole: list[str | None] = []
        index = 0
        while index < len(lines):
            line = lines[index]
            fence = fence_opening(line)
            if fence is not None:  # a code block inside an item: a block of its own
                end = index + 1
                while end < len(lines) and not is_fence_close(lines[end], fence):
                    end += 1
                whole.extend(self._items(items, cut=True))
                whole.append(None)
                items = []
                self._fence(lines[index : end + 1])
                index = end + 1
                continue
            marker = _LIST_ITEM.match(line)
            if marker:
                indent = len(marker.group("indent").expandtabs(4))
                items.append((indent, [_LIST_ITEM.sub("", line, count=1)]))
            elif items and line.strip():
                items[-1][1].append(line)
            index += 1
        whole.extend(self._items(items))
        if len(whole) > MAX_LIST_ITEMS or None in whole:
            return ()
        return tuple(text for text in whole if text is not None)

    def _items(self, items: list[tuple[int, list[str]]], *, cut: bool = False) -> list[str | None]:
        """Read list items; return each one's text, or None for one not quotable whole. `cut`:
        a code block follows them inside the list, so the last ones' nested list goes on."""
        texts = [_item_text(lines) for _, lines in items]
        whole: list[str | None] = []
        for number, (indent, _) in enumerate(items):
            text, quotable = texts[number]
            found = self._prose(text, item=True, quotable=quotable)
            if quotable and not found and _LABEL.match(text) and not _QUIZ_LABEL.match(text):
                # A label over its own nested list ("Sensors:" over the cameras and LiDAR of a
                # spec sheet) says nothing alone: it is offered with its list.
                end = number + 1
                while end < len(items) and items[end][0] > indent:
                    end += 1
                if not (cut and end == len(items)):  # a nested list the code block cuts
                    self._label(text, texts[number + 1 : end])
            whole.append(text if text and " ".join(s.text for s in found) == text else None)
        return whole

    def _label(self, label: str, nested: list[tuple[str, bool]]) -> None:
        if not nested or len(nested) > MAX_LIST_ITEMS or self.skipped:
            return
        if not all(text and quotable for text, quotable in nested):
            return
        self._sentence(label, lead_in=True, item=True, items=tuple(text for text, _ in nested))

    def _sentence(
        self, text: str, *, lead_in: bool, item: bool, items: tuple[str, ...] = ()
    ) -> Sentence:
        """Add a quotable sentence at this point of the passage."""
        sentence = Sentence(
            text=text,
            position=len(self.passage.sentences),
            section=self.section,
            section_start=self.section_start,
            headings=self.heading_path,
            lead_in=lead_in,
            item=item,
            items=items,
        )
        self.passage.sentences.append(sentence)
        self.section_start = False
        return sentence

    def _prose(self, text: str, *, item: bool, quotable: bool = True) -> list[Sentence]:
        """Read one paragraph or list item; return its quotable sentences."""
        found: list[Sentence] = []
        if not text:
            return found
        self.passage.lines.append(text)
        quotable = quotable and not self.skipped
        for piece in split_sentences(text):
            if not (quotable and _quotable(piece)):
                continue
            found.append(self._sentence(piece, lead_in=piece.endswith(":"), item=item))
        return found


def _item_text(lines: list[str]) -> tuple[str, bool]:
    """A list item's visible text, and whether it may be quoted (not a checklist box, a quiz
    option or a bare link)."""
    raw = " ".join(part.strip() for part in lines)
    text = visible(_TASK_BOX.sub("", raw))
    checklist = bool(_TASK_BOX.match(raw) or _CHECK_MARK.match(text))
    quiz = bool(_OPTION_START.match(text))
    return text, not (checklist or quiz or _bare_link(raw))


def table_lines(table: str) -> list[str]:
    """The rows of a Markdown table (as `Table.markdown` writes one) as `plain_text` has them:
    its cells joined by " | "."""
    return [
        " | ".join(_cells(line))
        for line in table.splitlines()
        if line.strip() and not _TABLE_DELIMITER.match(line)
    ]


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def code_lines(code: str) -> list[str]:
    """A block's lines that hold code: not blank, not a whole-line comment."""
    return [
        line
        for line in code.splitlines()
        if line.strip() and not line.strip().startswith(("#", "//", "--", "<!--", "/*", "*"))
    ]


def _has_code(code: str) -> bool:
    """Whether a block holds more than blank lines and comments."""
    return bool(code_lines(code))


def _is_skipped(heading: str | None) -> bool:
    return bool(heading and _SKIPPED_SECTION.match(_HEADING_NOISE.sub("", heading)))


def _bare_link(raw: str) -> bool:
    return bool(_BARE_LINK_ITEM.match(raw))


def _quotable(sentence: str) -> bool:
    # "Inverse kinematics asks the reverse: which joint angles...?" says what it is; a question
    # that starts with its question word asks, and answers nothing.
    if (sentence.endswith("?") and _INTERROGATIVE.match(sentence)) or len(
        sentence.split()
    ) < MIN_WORDS:
        return False
    if _OPTION_START.match(sentence) or _OPTIONS_INLINE.search(sentence):
        return False
    return not (_QUIZ_LABEL.match(sentence) or CITATION_MARKER.search(sentence))
