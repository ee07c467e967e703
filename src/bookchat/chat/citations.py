"""Turning `[n]` markers in an answer into citations, and dropping markers that point nowhere."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bookchat.chat.schemas import Citation
from bookchat.providers.base import Source

SNIPPET_CHARS = 300
# `[1]`, `[2, 3]` and `[2,3]`; a leading space goes with a marker that is removed.
_MARKER = re.compile(r"(\s?)\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + "…"


def resolve_citations(answer: str, sources: Sequence[Source]) -> tuple[str, list[Citation]]:
    """Return the answer without markers to unknown sources, and one citation per source."""
    known = {source.index for source in sources}
    cited: set[int] = set()

    def keep_known(match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.findall(r"\d+", match.group(2))]
        valid = [n for n in numbers if n in known]
        cited.update(valid)
        if not valid:
            return ""
        return match.group(1) + "".join(f"[{n}]" for n in valid)

    cleaned = _MARKER.sub(keep_known, answer).strip()
    citations = [
        Citation(
            index=source.index,
            title=source.title,
            section=source.section,
            page_url=source.page_url,
            source_path=source.source_path,
            snippet=snippet(source.text),
            score=source.score,
            cited=source.index in cited,
        )
        for source in sources
    ]
    return cleaned, citations
