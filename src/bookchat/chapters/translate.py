"""A chapter translated: the instructions for the model and the direction for the page."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from bookchat.chapters.languages import direction, language_name
from bookchat.chapters.models import GeneratedKind
from bookchat.chapters.schemas import TranslateCreate
from bookchat.chapters.service import (
    ChapterService,
    GeneratedChapter,
    Generation,
    Variant,
)
from bookchat.core.config import Settings
from bookchat.core.sse import StreamEvent


def instructions(tag: str, book_title: str) -> str:
    """The system prompt that translates a chapter into the language `tag` names."""
    name = language_name(tag)
    lines = [
        f'You translate one part of a chapter of the textbook "{book_title}" into {name} '
        f"(language tag {tag}).",
        "",
        "- Translate all the prose: headings, paragraphs, list items, table cells, "
        "admonition titles, link texts and image descriptions.",
        "- Keep technical identifiers exactly as written, in their original script: names of "
        "APIs, classes, functions, packages, commands, files, topics and message types, "
        "product names, units and numbers. On the first use of a key technical term you may "
        "add the English term in parentheses.",
        "- Keep the meaning, the facts and the tone: do not summarize, add or drop content.",
        f"- Write natural, fluent {name}, as a good textbook for students would, in the script "
        "normally used for it.",
    ]
    if direction(tag) == "rtl":
        lines.append(
            "- Do not add bidirectional control characters: the page sets the text direction."
        )
    return "\n".join(lines)


@dataclass(slots=True)
class TranslationService:
    chapters: ChapterService
    settings: Settings

    async def translate(self, db: AsyncSession, request: TranslateCreate) -> GeneratedChapter:
        """The chapter in the target language, from the cache or newly translated."""
        return await self.chapters.generate(await self._prepare(db, request))

    async def stream(
        self, db: AsyncSession, request: TranslateCreate
    ) -> AsyncGenerator[StreamEvent]:
        """Check everything (errors are plain responses), then the stream of events."""
        return self.chapters.stream(await self._prepare(db, request))

    async def _prepare(self, db: AsyncSession, request: TranslateCreate) -> Generation:
        tag = request.target_language
        variant = Variant(
            kind=GeneratedKind.TRANSLATED,
            key=tag,
            instructions=instructions(tag, self.settings.book_title),
            extra={"language": tag, "direction": direction(tag)},
        )
        return await self.chapters.prepare(db, request, variant)
