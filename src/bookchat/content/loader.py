"""Load a Docusaurus docs folder (or one Markdown text) into cleaned documents."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from bookchat.content.docusaurus import (
    doc_route,
    page_url,
    split_heading_id,
    strip_inline_markdown,
    strip_number_prefix,
)
from bookchat.content.markdown import (
    FRONTMATTER_FENCE_RE,
    HEADING_RE,
    is_table_line,
    split_fenced,
)
from bookchat.core.errors import ValidationFailed

_DOC_SUFFIXES = (".md", ".mdx")
_BACKUP_SUFFIXES = (".backup", ".bak", ".orig", "~")
_CATEGORY_FILES = ("_category_.json", "_category_.yml", "_category_.yaml")
_IMPORT_RE = re.compile(r"^import(?:\s*['\"{*]|\s+[\w$]+\s*(?:,|from\b)|\s+type\s)")
_EXPORT_RE = re.compile(
    r"^export\s+(?:const|let|var|function|default|class|async|type|interface|\{|\*)"
)
_INLINE_CODE_RE = re.compile(r"(?<!`)(`++)[^`\n]+?\1(?!`)")
_COMMENT_RE = re.compile(r"<!--.*?-->|\{/\*.*?\*/\}", re.DOTALL)
_QUOTED = r"\"[^\"]*\"|'[^']*'"
_JSX_EXPRESSION = r"\{(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*\}"
_TAG_RE = re.compile(
    rf"</?[A-Za-z][\w.:-]*(?:\s(?:{_QUOTED}|{_JSX_EXPRESSION}|[^<>\"'{{}}])*)?/?>|</?>"
)
_BLANK_RUN_RE = re.compile(r"\n(?:[ \t]*\n){3,}")
_MARKER = "\x00"
_PLACEHOLDER_RE = re.compile("\x01(\\d+)\x01")


class LoaderError(ValidationFailed):
    """A document that cannot be loaded (malformed frontmatter, undecodable text...)."""


@dataclass(frozen=True, slots=True)
class LoadedDocument:
    """One doc page: its metadata, its Docusaurus URL and its cleaned Markdown body."""

    source_path: str
    title: str
    route: str
    page_url: str
    module: str | None
    description: str | None
    keywords: list[str]
    sidebar_position: float | None
    frontmatter: dict[str, Any]
    body: str
    content_hash: str


def _normalise_text(text: str) -> str:
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _split_frontmatter(text: str, source_path: str) -> tuple[dict[str, Any], str]:
    lines = text.split("\n")
    if not lines or not FRONTMATTER_FENCE_RE.match(lines[0]):
        return {}, text
    for index in range(1, len(lines)):
        if FRONTMATTER_FENCE_RE.match(lines[index]):
            raw = "\n".join(lines[1:index])
            body = "\n".join(lines[index + 1 :])
            break
    else:
        raise LoaderError(f"{source_path}: frontmatter has no closing '---' line")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise LoaderError(f"{source_path}: invalid YAML frontmatter: {exc}") from exc
    if data is None:
        return {}, body
    if not isinstance(data, dict):
        raise LoaderError(
            f"{source_path}: frontmatter must be a mapping, got {type(data).__name__}"
        )
    return {str(key): value for key, value in data.items()}, body


def _balance(line: str) -> int:
    return sum(line.count(c) for c in "{[(") - sum(line.count(c) for c in "}])")


def _drop_esm(lines: list[str]) -> list[str]:
    kept: list[str] = []
    depth = 0
    in_statement = False
    for line in lines:
        if in_statement and not HEADING_RE.match(line):
            depth += _balance(line)
            in_statement = depth > 0
            continue
        in_statement = False
        if _IMPORT_RE.match(line) or _EXPORT_RE.match(line):
            depth = _balance(line)
            in_statement = depth > 0
            continue
        kept.append(line)
    return kept


def _strip_markup(text: str) -> str:
    codes: list[str] = []

    def protect(match: re.Match[str]) -> str:
        codes.append(match.group())
        return f"\x01{len(codes) - 1}\x01"

    # The placeholder characters must not occur in the text itself.
    lines = text.replace(_MARKER, "").replace("\x01", "").split("\n")
    # Tables are kept exactly: only prose lines lose comments and tags.
    table = [is_table_line(line) for line in lines]
    prose = "\n".join("" if is_table else line for line, is_table in zip(lines, table, strict=True))
    prose = _INLINE_CODE_RE.sub(protect, prose)
    prose = _COMMENT_RE.sub(lambda m: _MARKER + "\n" * m.group().count("\n"), prose)
    prose = _TAG_RE.sub(lambda m: _MARKER + "\n" * m.group().count("\n"), prose)
    prose = _PLACEHOLDER_RE.sub(lambda m: codes[int(m.group(1))], prose)

    result: list[str] = []
    for original, cleaned, is_table in zip(lines, prose.split("\n"), table, strict=True):
        if is_table:
            result.append(original)
        elif _MARKER in cleaned:
            # A line that held only tags or comments vanishes instead of leaving a blank.
            cleaned = cleaned.replace(_MARKER, "")
            if cleaned.strip():
                result.append(cleaned)
        elif original.strip() and not cleaned.strip():
            continue  # inner line of a multi-line tag or comment
        else:
            result.append(cleaned)
    return "\n".join(result)


def clean_body(body: str) -> str:
    """Drop MDX imports/exports, JSX/HTML tags and comments outside code fences."""
    parts: list[str] = []
    for in_fence, lines in split_fenced(body.split("\n")):
        if in_fence:
            parts.append("\n".join(lines))
        else:
            cleaned = _strip_markup("\n".join(_drop_esm(lines)))
            parts.append(_BLANK_RUN_RE.sub("\n\n\n", cleaned))
    return "\n".join(parts).strip("\n")


def _first_h1(body: str) -> str | None:
    for in_fence, lines in split_fenced(body.split("\n")):
        if in_fence:
            continue
        for line in lines:
            match = HEADING_RE.match(line)
            if match and len(match.group("hashes")) == 1 and match.group("text"):
                text, _ = split_heading_id(match.group("text"))
                return strip_inline_markdown(text) or None
    return None


def prettify_name(name: str) -> str:
    """Turn a file or folder name into a label: "01-getting-started" -> "Getting Started"."""
    stem = strip_number_prefix(re.sub(r"\.mdx?$", "", name, flags=re.IGNORECASE))
    words = re.split(r"[-_\s]+", stem)
    return " ".join(word[:1].upper() + word[1:] for word in words if word)


def _text_or_none(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def _keywords(value: Any) -> list[str]:
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        return []
    return [str(item).strip() for item in items if item is not None and str(item).strip()]


def _position(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def parse_markdown(
    text: str, source_path: str, base_url: str, module: str | None = None
) -> LoadedDocument | None:
    """Parse one Markdown/MDX text into a document; None when it is a draft."""
    source_path = source_path.replace("\\", "/").lstrip("/")
    frontmatter, raw_body = _split_frontmatter(_normalise_text(text), source_path)
    if frontmatter.get("draft") is True:
        return None
    body = clean_body(raw_body)
    title = (
        _text_or_none(frontmatter.get("title"))
        or _first_h1(body)
        or prettify_name(PurePosixPath(source_path).name)
    )
    route = doc_route(source_path, frontmatter)
    url = page_url(base_url, route)
    return LoadedDocument(
        source_path=source_path,
        title=title,
        route=route,
        page_url=url,
        module=module,
        description=_text_or_none(frontmatter.get("description")),
        keywords=_keywords(frontmatter.get("keywords")),
        sidebar_position=_position(frontmatter.get("sidebar_position")),
        frontmatter=frontmatter,
        body=body,
        content_hash=hashlib.sha256(f"{url}\n{body}".encode()).hexdigest(),
    )


def _skipped_dir(name: str) -> bool:
    return name.startswith(("_", ".")) or name == "node_modules"


def is_doc_file(path: Path) -> bool:
    """Tell whether a path (relative to the docs root) is a Markdown page Docusaurus serves."""
    name = path.name
    if name.startswith(("_", ".")) or name.endswith(_BACKUP_SUFFIXES):
        return False
    if path.suffix.lower() not in _DOC_SUFFIXES:
        return False
    return not any(_skipped_dir(part) for part in path.parts[:-1] if part not in (".", ".."))


def _category_label(folder: Path) -> str | None:
    for name in _CATEGORY_FILES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            raw = _normalise_text(path.read_text(encoding="utf-8"))
            data = json.loads(raw) if name.endswith(".json") else yaml.safe_load(raw)
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
            return None
        label = data.get("label") if isinstance(data, dict) else None
        return label.strip() if isinstance(label, str) and label.strip() else None
    return None


def _doc_paths(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _skipped_dir(d))
        for name in sorted(files):
            relative = (Path(folder) / name).relative_to(root)
            if is_doc_file(relative):
                yield relative


def load_folder(root: Path, base_url: str) -> list[LoadedDocument]:
    """Load every doc page under a Docusaurus docs folder, sorted by source path."""
    modules: dict[str, str | None] = {}
    documents: list[LoadedDocument] = []
    for relative in _doc_paths(root):
        source_path = relative.as_posix()
        module: str | None = None
        if len(relative.parts) > 1:
            top = relative.parts[0]
            if top not in modules:
                modules[top] = _category_label(root / top) or prettify_name(top)
            module = modules[top]
        try:
            text = (root / relative).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise LoaderError(f"{source_path}: not valid UTF-8 ({exc.reason})") from exc
        document = parse_markdown(text, source_path, base_url, module)
        if document is not None:
            documents.append(document)
    return sorted(documents, key=lambda document: document.source_path)
