"""Docusaurus URLs: doc routes, heading anchors and page URLs."""

from __future__ import annotations

import html
import posixpath
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

_INLINE_CODE_RE = re.compile(r"(?<!`)(`++)(.+?)(?<!`)\1(?!`)")
_IMAGE_RE = re.compile(r"!\[([^\[\]]*)\]\([^()]*\)")
_LINK_RE = re.compile(r"\[([^\[\]]*)\](?:\([^()]*\)|\[[^\[\]]*\])")
_AUTOLINK_RE = re.compile(r"<((?:https?|mailto|ftp):[^<>\s]*)>")
_TAG_RE = re.compile(r"</?[A-Za-z][\w.:-]*(?:\s[^<>]*)?/?>|</?>")
_EMPHASIS_RES = (
    re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*"),
    re.compile(r"(?<![^\W_])__(?=\S)(.+?)(?<=\S)__(?![^\W_])"),
    re.compile(r"\*(?=\S)(.+?)(?<=\S)\*"),
    re.compile(r"(?<![^\W_])_(?=\S)(.+?)(?<=\S)_(?![^\W_])"),
    re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"),
)
_ESCAPE_RE = re.compile(r"\\([!-/:-@\[-`{-~])")
_HEADING_ID_RE = re.compile(r"^(.*?)\s*\{#([^{}]+)\}\s*$")
_PLACEHOLDER_RE = re.compile("\x00(\\d+)\x00")

# Docusaurus leaves date-like ("2021-01-31") and version-like ("1.2") prefixes alone.
_IGNORED_PREFIX_RE = re.compile(r"^(?:(?:\d{2}|\d{4})[-_.]\d{2}|\d+[-_.]\d+)")
_NUMBER_PREFIX_RE = re.compile(r"^\d+\s*[-_.]+\s*(?P<rest>.+)$")
_DOC_EXTENSION_RE = re.compile(r"\.mdx?$", re.IGNORECASE)


def strip_inline_markdown(text: str) -> str:
    """Return the visible text of an inline Markdown fragment (as mdast-util-to-string does)."""
    codes: list[str] = []
    text = text.replace("\x00", "")

    def keep_code(match: re.Match[str]) -> str:
        content = match.group(2)
        if len(content) > 2 and content.startswith(" ") and content.endswith(" "):
            content = content[1:-1]
        codes.append(content)
        return f"\x00{len(codes) - 1}\x00"

    text = _INLINE_CODE_RE.sub(keep_code, text)
    text = _IMAGE_RE.sub(r"\1", text)
    text = _LINK_RE.sub(r"\1", text)
    text = _AUTOLINK_RE.sub(r"\1", text)
    text = _TAG_RE.sub("", text)
    for pattern in _EMPHASIS_RES:
        text = pattern.sub(r"\1", text)
    text = _ESCAPE_RE.sub(r"\1", text)
    text = html.unescape(text)
    text = _PLACEHOLDER_RE.sub(lambda m: codes[int(m.group(1))], text)
    return text.strip()


def _keeps(char: str) -> bool:
    # github-slugger keeps letters, combining marks, decimal/letter numbers and connector
    # punctuation; marks matter for scripts such as Urdu or Hindi.
    if char in " -":
        return True
    category = unicodedata.category(char)
    return category[0] in "LM" or category in ("Nd", "Nl", "Pc")


def slugify_heading(text: str) -> str:
    """Return the anchor Docusaurus (github-slugger) generates for a heading's text."""
    visible = strip_inline_markdown(text).lower()
    return "".join(char for char in visible if _keeps(char)).replace(" ", "-")


def split_heading_id(text: str) -> tuple[str, str | None]:
    """Split `Title {#id}` into ("Title", "id"); the id is None when there is none."""
    match = _HEADING_ID_RE.match(text)
    if match is None:
        return text.strip(), None
    return match.group(1).strip(), match.group(2).strip()


class HeadingSlugger:
    """Unique anchors for the headings of one document, the way Docusaurus assigns them."""

    def __init__(self) -> None:
        self._occurrences: dict[str, int] = {}

    def slug(self, heading: str) -> str:
        """Return the anchor of the next heading with this (raw Markdown) text."""
        return self.heading(heading)[1]

    def heading(self, heading: str) -> tuple[str, str]:
        """Return the heading's visible text (explicit id removed) and its unique anchor."""
        text, explicit_id = split_heading_id(heading)
        visible = strip_inline_markdown(text)
        if explicit_id is not None:
            # Docusaurus uses explicit ids verbatim and does not count them as occurrences.
            return visible, explicit_id
        original = slugify_heading(text)
        slug = original
        while slug in self._occurrences:
            self._occurrences[original] += 1
            slug = f"{original}-{self._occurrences[original]}"
        self._occurrences[slug] = 0
        return visible, slug


def link_anchor(level: int, anchor: str | None) -> str | None:
    """The anchor a link to a heading can land on: none for an h1.

    Docusaurus slugs every heading (so an h1 still counts for the numbering of repeated
    headings), but its theme renders an h1, the page title, without an id: a link to the
    title must be the page URL itself.
    """
    return None if level == 1 else anchor


def strip_number_prefix(segment: str) -> str:
    """Remove a Docusaurus number prefix: "01-intro" -> "intro", "2. Setup" -> "Setup"."""
    if _IGNORED_PREFIX_RE.match(segment):
        return segment
    match = _NUMBER_PREFIX_RE.match(segment)
    return match.group("rest") if match else segment


def _normalize_route(route: str) -> str:
    normalized = posixpath.normpath("/" + route.strip("/"))
    return normalized if normalized == "/" else normalized.rstrip("/")


def doc_route(source_path: str, frontmatter: Mapping[str, Any]) -> str:
    """Return the route Docusaurus serves a doc at, relative to the docs base URL."""
    parts = [part for part in source_path.replace("\\", "/").split("/") if part not in ("", ".")]
    file_name = _DOC_EXTENSION_RE.sub("", parts[-1]) if parts else ""
    raw_dirs = parts[:-1]
    dir_route = "/" + "/".join(strip_number_prefix(part) for part in raw_dirs)

    slug = frontmatter.get("slug")
    if isinstance(slug, str) and slug.strip():
        slug = slug.strip()
        if slug.startswith("/"):
            return _normalize_route(slug)
        return _normalize_route(posixpath.join(dir_route, slug))

    # Docusaurus compares the raw names (number prefixes included), case-insensitively.
    index_names = {"index", "readme"}
    if raw_dirs:
        index_names.add(raw_dirs[-1].lower())
    if file_name.lower() in index_names:
        return _normalize_route(dir_route)

    doc_id = frontmatter.get("id")
    if isinstance(doc_id, str | int) and not isinstance(doc_id, bool) and str(doc_id).strip():
        base = str(doc_id).strip()
    else:
        base = strip_number_prefix(file_name)
    return _normalize_route(posixpath.join(dir_route, base))


def page_url(base_url: str, route: str, anchor: str | None = None) -> str:
    """Join the site's docs base URL and a route, plus `#anchor` when given."""
    url = base_url.rstrip("/") + "/" + route.lstrip("/")
    return f"{url}#{anchor}" if anchor else url
