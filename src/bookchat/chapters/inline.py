"""Where the inline spans a language model must not touch are in a line of prose: comments,
code spans, math, URLs, HTML/MDX/JSX tags, and the targets of links, images and footnotes.

Each kind has a finder: a function from a text to the (start, end) of its spans, in order and
not overlapping. chapters/protect.py runs them in the order of `INLINE_FINDERS`.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Callable, Iterable

_QUOTED = r"\"[^\"]*\"|'[^']*'"
_JSX_EXPRESSION = r"\{(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*\}"
_BACKTICKS_RE = re.compile(r"`+")
_BLANK_LINE_RE = re.compile(r"\n[ \t]*\n")

# Where the spans of one kind are in a text: (start, end) pairs, in order, not overlapping.
Finder = Callable[[str], Iterable[tuple[int, int]]]


def regex_finder(pattern: str) -> Finder:
    """The matches of `pattern`."""
    compiled = re.compile(pattern)
    return lambda text: (match.span() for match in compiled.finditer(text))


def _delimited(opener: str, closer: str) -> Finder:
    """Spans from `opener` to the next `closer` (a scan, not a lazy regex: an adversarial text
    full of openers would make `<!--.*?-->` quadratic)."""

    def find(text: str) -> list[tuple[int, int]]:
        spans = []
        start = text.find(opener)
        while start != -1:
            end = text.find(closer, start + len(opener))
            if end == -1:
                break  # no closer after this opener, so none after any later one either
            spans.append((start, end + len(closer)))
            start = text.find(opener, end + len(closer))
        return spans

    return find


def _code_spans(text: str) -> list[tuple[int, int]]:
    """Code spans as CommonMark finds them: a run of backticks up to the next run of the same
    length in the same paragraph; a run without one is literal. Linear in the number of runs."""
    runs = [match.span() for match in _BACKTICKS_RE.finditer(text)]
    blank_lines = [match.start() for match in _BLANK_LINE_RE.finditer(text)]
    same_length: dict[int, list[int]] = defaultdict(list)
    for number, (start, end) in enumerate(runs):
        same_length[end - start].append(number)
    spans = []
    number = 0
    while number < len(runs):
        start, end = runs[number]
        candidates = same_length[end - start]
        following = bisect.bisect_right(candidates, number)
        if following < len(candidates):
            closer = candidates[following]
            close_start, close_end = runs[closer]
            blank = bisect.bisect_left(blank_lines, end)
            if blank == len(blank_lines) or blank_lines[blank] >= close_start:
                spans.append((start, close_end))
                number = closer + 1
                continue
        number += 1
    return spans


# Inline spans, found in this order: each hides its spans from the finders after it.
INLINE_FINDERS: tuple[tuple[str, Finder], ...] = (
    ("comment", _delimited("<!--", "-->")),
    ("comment", _delimited("{/*", "*/}")),
    ("code", _code_spans),
    ("math", regex_finder(r"\$\$[^$]+?\$\$|(?<![\\\w$])\$(?=[^\s$])[^$\n]*?[^\s$\\]\$(?![\w$])")),
    ("url", regex_finder(r"<(?:https?|ftp|mailto):[^<>\s]+>")),
    (
        "tag",
        regex_finder(
            rf"</?[A-Za-z][\w.:-]*(?:\s(?:{_QUOTED}|{_JSX_EXPRESSION}|[^<>\"'{{}}])*)?/?>|</?>"
        ),
    ),
    # The target of a link or image, right after its `]`: `[text](target "title")`.
    ("target", regex_finder(r"(?<=\])\((?:[^()\n]|\([^()\n]*\))*\)")),
    # The label of a reference link: `[text][label]`.
    ("target", regex_finder(r"(?<=\])\[[^\[\]\n]*\]")),
    # Footnote references: `[^1]`.
    ("target", regex_finder(r"\[\^[^\[\]\s]+\]")),
    # Bare URLs; balanced parentheses belong to them, trailing punctuation does not.
    (
        "url",
        regex_finder(
            r"\b(?:https?|ftp)://(?:[^\s<>()\[\]⟦⟧\"'`]|\([^\s<>()]*\))*"
            r"(?:[^\s<>()\[\]⟦⟧\"'`.,;:!?*_]|\([^\s<>()]*\))"
        ),
    ),
)
