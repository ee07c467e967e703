"""Bodies of the translated chapter API."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from bookchat.accounts.schemas import LanguageTag
from bookchat.content.chapter_schemas import ONE_SOURCE, ChapterSource, GeneratedRead
from bookchat.translation.languages import Direction


class TranslateCreate(ChapterSource):
    """A chapter to translate, and the language to translate it into."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": ONE_SOURCE,
            "examples": [
                {"source_path": "module-1-ros2/nodes.md", "target_language": "ur"},
                {"content": "# Nodes\n\nA node is a process.", "target_language": "pt-BR"},
            ],
        }
    )

    target_language: LanguageTag = Field(
        default="ur", description="A BCP 47 language tag: `ur` (default), `ar`, `es`, `pt-BR`..."
    )


class TranslationRead(GeneratedRead):
    """The chapter translated; code, commands, URLs and identifiers are unchanged."""

    language: str = Field(description="The normalized target language tag.")
    direction: Direction = Field(description="How the front end should lay the text out.")
